"""Steward workbench benchmark (issues 4 and 12).

组合计划 with 1M rows of which 100k are pending review (with business weights), 100k plans, and 12M 规模明细 rows
(12 months × 1M, built with INSERT … SELECT; monthly partitions are created first when the table is partitioned):

1. The review-queue changelist (``?needs_review__exact=1``, ordered by weight, first page) through the Django test
   client as a steward: median and p90 of the render time (target ≤ 150 ms median with the facts present), the
   number of queries for pages of 50, 100 and 200 rows (must not grow with the page size), and the slowest queries
   of one render (``--explain`` also prints the plan of the page's main query).
2. The dashboard: the ``dashboard()`` query and the admin index page that shows it (median).
3. Promoting all 100k pending rows with the "select all" action: wall time (target ≤ 10 s) and history rows written
   (rolled back afterwards, so ``--reuse`` can measure the same data again).

Usage: .venv/bin/python bench/admin.py [--portfolios 1000000] [--pending 100000] [--facts 12000000] [--renders 15]
       [--reuse] [--explain]
The database is ``REFGOV_BENCH_ADMIN_DB`` (default refgov_bench_admin); ``--reuse`` keeps the one an earlier run built.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("REFGOV_BENCH_ADMIN_DB", "refgov_bench_admin")
os.environ["DJANGO_SETTINGS_MODULE"] = "refgov.settings.dev"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-d", BENCH_DB]


def sql(statement: str) -> None:
    subprocess.run(PG + ["-c", statement], check=True)


def build(portfolios: int, pending: int) -> None:
    plans = max(portfolios // 10, 1)
    every = max(portfolios // pending, 1)
    print(f"data: {plans:,} plans, {portfolios:,} portfolios, {pending:,} pending review ...", flush=True)
    start = time.perf_counter()
    sql(f"""
        SET search_path = business, public;
        INSERT INTO "年金计划" ("年金计划号", "计划简称", _source, _needs_review)
        SELECT 'P' || lpad(i::text, 7, '0'), '计划' || i, 'authoritative', false FROM generate_series(1, {plans}) i;
        INSERT INTO "组合计划" ("组合代码", "年金计划号", "组合名称", "组合类型", _source, _needs_review,
                               _derived_from_domain, _derived_at)
        SELECT 'Q' || lpad(i::text, 8, '0'), 'P' || lpad((1 + i % {plans})::text, 7, '0'), '组合' || i, '固定收益型',
               CASE WHEN i % {every} = 0 THEN 'auto_derived' ELSE 'authoritative' END, i % {every} = 0,
               CASE WHEN i % {every} = 0 THEN 'annuity_performance' END,
               CASE WHEN i % {every} = 0 THEN now() - (i % 90) * interval '1 day' END
        FROM generate_series(1, {portfolios}) i;
        INSERT INTO reference_portfolioplanusage (row_id, fact_rows, closing_assets, months, refreshed_at)
        SELECT "组合代码", (hashtext("组合代码") & 1023), (hashtext("组合代码") & 1048575) * 1000.0, 1, now()
        FROM "组合计划" WHERE _needs_review;
    """)
    sql("VACUUM ANALYZE")  # as autovacuum leaves a table that was loaded a while ago
    print(f"  built in {time.perf_counter() - start:.1f} s")


FACT_TABLE = "规模明细"


def partitioned(cur) -> bool:
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'business' AND c.relname = %s)",
        [FACT_TABLE],
    )
    return cur.fetchone()[0]


def load_facts(total: int, months: int, portfolios: int) -> None:
    """``total`` 规模明细 rows over ``months`` months (one recorded batch each) referencing the existing keys.

    The keys exist by construction, so the foreign-key triggers are skipped (``session_replication_role``) as a bulk
    load would validate them once; the indexes are maintained as usual."""
    from django.db import connection

    plans = max(portfolios // 10, 1)
    per_month = total // months
    print(f"facts: {total:,} {FACT_TABLE} rows over {months} months ...", flush=True)
    start = time.perf_counter()
    with connection.cursor() as cur:
        is_partitioned = partitioned(cur)
        for m in range(months):
            month = f"2025-{m % 12 + 1:02d}-01" if m < 12 else f"{2025 + m // 12}-{m % 12 + 1:02d}-01"
            if is_partitioned:
                cur.execute(
                    f'CREATE TABLE IF NOT EXISTS business."{FACT_TABLE}_bench_{m:03d}" '
                    f'PARTITION OF business."{FACT_TABLE}" '
                    f"FOR VALUES FROM ('{month}') TO (('{month}'::date + interval '1 month')::date)"
                )
            cur.execute(
                "INSERT INTO pipeline_factbatch (domain, file_name, file_path, sheet, checksum, size_bytes, periods, "
                "status, kind, degraded, rows_read, rows_loaded, rows_replaced, new_references, filled_references, "
                "message, started_at, finished_at) VALUES ('annuity_performance', %s, %s, '', md5(%s), 0, "
                "jsonb_build_array(%s), 'loaded', 'facts', false, %s, %s, 0, '{}', '{}', '', now(), now()) "
                "RETURNING id",
                [f"bench-{month}.csv", f"/bench/{month}.csv", month, month[:7], per_month, per_month],
            )
            batch = cur.fetchone()[0]
            cur.execute("SET session_replication_role = replica")
            cur.execute(
                f"""
                INSERT INTO business."{FACT_TABLE}" ("月度", "业务类型", "计划类型", "组合代码", "计划代码",
                    "期初资产规模", "期末资产规模", "供款", "投资收益", _batch_id, _source_row)
                SELECT %(month)s::date, CASE WHEN k %% 3 = 0 THEN '企年投资' ELSE '企年受托' END, '单一计划',
                       'Q' || lpad(k::text, 8, '0'), 'P' || lpad((1 + k %% {plans})::text, 7, '0'),
                       (k %% 100000) * 1000.0, (k %% 100000) * 1010.0 + %(m)s, k %% 1000, k %% 77, %(batch)s, i + 1
                FROM (SELECT i, 1 + (i::bigint * 7919 + %(m)s) %% {portfolios} AS k
                      FROM generate_series(1, {per_month}) i) g
                """,
                {"month": month, "m": m, "batch": batch},
            )
            cur.execute("SET session_replication_role = DEFAULT")
            print(f"  {month}: {per_month:,} rows ({time.perf_counter() - start:.0f} s)", flush=True)
        cur.execute(f'ANALYZE business."{FACT_TABLE}"')
    print(f"  facts built in {time.perf_counter() - start:.1f} s (partitioned: {is_partitioned})")


def median_ms(fn, runs: int, warmup: int = 3) -> tuple[float, float]:
    times = []
    for i in range(runs + warmup):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), sorted(times)[max(int(len(times) * 0.9) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portfolios", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--facts", type=int, default=12_000_000, help="规模明细 rows (0: none)")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--renders", type=int, default=15)
    parser.add_argument("--reuse", action="store_true", help="measure the database an earlier run built")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the queue's main query")
    args = parser.parse_args()

    if not args.reuse:
        subprocess.run(
            f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB} && createdb -h 127.0.0.1 -U postgres {BENCH_DB}",
            shell=True,
            check=True,
        )
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], check=True)
    if not args.reuse:
        build(args.portfolios, args.pending)
    else:  # the promote of an earlier run was rolled back: leave the tables as autovacuum would
        sql("VACUUM ANALYZE")

    import django

    django.setup()
    from django.conf import settings
    from django.contrib import admin
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from operations.dashboard import dashboard
    from reference.history_models import ReferenceEvent
    from reference.models import PortfolioPlan
    from reference.permissions import STEWARD_GROUP

    if not args.reuse and args.facts:
        load_facts(args.facts, args.months, args.portfolios)
    with connection.cursor() as cur:
        cur.execute(f"SELECT reltuples::bigint FROM pg_class WHERE oid = 'business.\"{FACT_TABLE}\"'::regclass")
        estimated = cur.fetchone()[0]
        if estimated <= 0:  # a partitioned parent: the sum of its partitions
            cur.execute(
                "SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                f"WHERE i.inhparent = 'business.\"{FACT_TABLE}\"'::regclass"
            )
            estimated = cur.fetchone()[0]
        print(f"{FACT_TABLE}: ~{estimated:,} rows (estimate), partitioned: {partitioned(cur)}")

    setup_test_environment()
    settings.DEBUG = False
    user, _ = User.objects.get_or_create(username="bench-steward", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    client = Client()
    client.force_login(user)
    queue = "/admin/reference/portfolioplan/?needs_review__exact=1"

    import refgov.urls  # noqa: F401 — registers the admin classes (SimpleAdminConfig)

    model_admin = admin.site._registry[PortfolioPlan]
    queries = {}
    for per_page in (50, 100, 200):
        model_admin.list_per_page = per_page
        with CaptureQueriesContext(connection) as captured:
            response = client.get(queue)
        assert response.status_code == 200 and len(response.context["cl"].result_list) == per_page
        queries[per_page] = len(captured.captured_queries)
    model_admin.list_per_page = 100

    def render() -> None:
        nonlocal response
        response = client.get(queue)
        assert response.status_code == 200

    median, p90 = median_ms(render, args.renders)
    first = response.context["cl"].result_list[0]
    print(
        f"review queue, first page of 100 (ordered by weight): median {median:.0f} ms, p90 {p90:.0f} ms "
        f"(target ≤ 150 ms median); top row {first.pk} weight {first.usage.closing_assets:,.0f}"
    )
    print(f"queries per render: {queries} (must not grow with the page size)")
    connection.queries_log.clear()
    with CaptureQueriesContext(connection) as captured:
        start = time.perf_counter()
        render()
        total = (time.perf_counter() - start) * 1000
    in_db = sum(float(q["time"]) for q in captured.captured_queries) * 1000
    print(f"  one render: {total:.0f} ms, of which {in_db:.0f} ms in {len(captured.captured_queries)} queries:")
    for q in sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:5]:
        print(f"    {float(q['time']) * 1000:6.1f} ms  {q['sql'][:160]}")
    if args.explain:
        main_query = max(captured.captured_queries, key=lambda q: float(q["time"]))["sql"]
        with connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + main_query)
            print("\n".join(r[0] for r in cur.fetchall()))

    board_median, _ = median_ms(dashboard, args.renders)
    connection.queries_log.clear()  # a full log (9,000 entries) would capture nothing
    with CaptureQueriesContext(connection) as captured:
        dashboard()
    board_queries = len(captured.captured_queries)  # read now: the next request empties the log
    index_median, index_p90 = median_ms(lambda: client.get("/admin/"), args.renders)
    print(
        f"dashboard: dashboard() median {board_median:.0f} ms ({board_queries} queries); "
        f"admin index page median {index_median:.0f} ms, p90 {index_p90:.0f} ms"
    )

    pending = PortfolioPlan.objects.filter(needs_review=True).count()
    events_before = ReferenceEvent.objects.count()
    with transaction.atomic():
        start = time.perf_counter()
        response = client.post(
            queue, {"action": "promote_selected", "_selected_action": [first.pk], "select_across": "1", "index": "0"}
        )
        seconds = time.perf_counter() - start
        assert response.status_code == 302, response.status_code
        left = PortfolioPlan.objects.filter(needs_review=True).count()
        written = ReferenceEvent.objects.count() - events_before
        transaction.set_rollback(True)
    print(
        f"promote all {pending:,} pending (select all): {seconds:.2f} s (target ≤ 10 s); "
        f"still pending {left:,}; history rows written {written:,} (rolled back)"
    )


if __name__ == "__main__":
    main()
