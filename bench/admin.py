"""Steward workbench benchmark (issue 4).

组合计划 with 1M rows of which 100k are pending review (with business weights), 100k plans:

1. The review-queue changelist (``?needs_review__exact=1``, ordered by weight, first page) through the Django test
   client as a steward: median and p90 of the render time (target ≤ 300 ms median), and the number of queries for
   pages of 50, 100 and 200 rows (must not grow with the page size).
2. Promoting all 100k pending rows with the "select all" action: wall time (target ≤ 10 s) and history rows written.

Usage: .venv/bin/python bench/admin.py [--portfolios 1000000] [--pending 100000] [--renders 15]
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
BENCH_DB = "refgov_bench_admin"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portfolios", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--renders", type=int, default=15)
    args = parser.parse_args()

    subprocess.run(
        f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB} && createdb -h 127.0.0.1 -U postgres {BENCH_DB}",
        shell=True,
        check=True,
    )
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], check=True)
    build(args.portfolios, args.pending)

    import django

    django.setup()
    from django.conf import settings
    from django.contrib import admin
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from reference.history_models import ReferenceEvent
    from reference.models import PortfolioPlan
    from reference.permissions import STEWARD_GROUP

    setup_test_environment()
    settings.DEBUG = False
    user = User.objects.create_user("bench-steward", is_staff=True)
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

    times = []
    for i in range(args.renders + 3):
        start = time.perf_counter()
        response = client.get(queue)
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status_code == 200
        if i >= 3:  # warm-up renders are not counted
            times.append(elapsed)
    first = response.context["cl"].result_list[0]
    median, p90 = statistics.median(times), sorted(times)[int(len(times) * 0.9) - 1]
    print(
        f"review queue, first page of 100 (ordered by weight): median {median:.0f} ms, p90 {p90:.0f} ms "
        f"(target ≤ 300 ms median); top row {first.pk} weight {first.usage.closing_assets:,.0f}"
    )
    print(f"queries per render: {queries} (must not grow with the page size)")

    pending = PortfolioPlan.objects.filter(needs_review=True).count()
    events_before = ReferenceEvent.objects.count()
    start = time.perf_counter()
    response = client.post(
        queue, {"action": "promote_selected", "_selected_action": [first.pk], "select_across": "1", "index": "0"}
    )
    seconds = time.perf_counter() - start
    assert response.status_code == 302, response.status_code
    left = PortfolioPlan.objects.filter(needs_review=True).count()
    written = ReferenceEvent.objects.count() - events_before
    print(
        f"promote all {pending:,} pending (select all): {seconds:.2f} s (target ≤ 10 s); "
        f"still pending {left:,}; history rows written {written:,}"
    )


if __name__ == "__main__":
    main()
