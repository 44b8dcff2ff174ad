"""Typo-suggestion benchmark (issue 13, item 1).

组合计划 with 1M authoritative rows (names as the demo writes them) under 200k plans; then 3,000 new auto-derived
portfolios as a load leaves them — 1,000 genuine typos of existing codes (a stray or doubled character, two digits
swapped, a digit dropped, a wrong digit; under their right plan with the right name) and 2,000 genuinely new codes
under existing plans — and ``suggest_for_new_keys`` for the 3,000 keys, timed (target ≤ 2 s), with how many typos
got the right key first and how many new keys got a suggestion at all. The same for 300 new plans against the 200k
plans (the trigram name search), and for 10 new portfolios (a typical monthly load).

Usage: .venv/bin/python bench/suggestions.py [--portfolios 1000000] [--new 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "refgov_bench_suggestions"
os.environ["DJANGO_SETTINGS_MODULE"] = "refgov.settings.dev"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-d", BENCH_DB]
KINDS = "ARRAY['固定收益型','含权益型','货币型','存款型']"


def sql(statement: str) -> None:
    subprocess.run(PG + ["-c", statement], check=True)


def build(portfolios: int) -> None:
    plans = max(portfolios // 5, 1)
    print(f"data: {plans:,} plans, {portfolios:,} portfolios ...", flush=True)
    start = time.perf_counter()
    sql(f"""
        SET search_path = business, public;
        INSERT INTO "年金计划" ("年金计划号", "计划简称", "客户名称", "计划类型", _source, _needs_review)
        SELECT 'P' || lpad(i::text, 6, '0'),
               (ARRAY['北京','上海','广东','江苏','浙江','四川','湖北','山东'])[1 + i % 8]
                 || (ARRAY['电力','石化','建设','交通','钢铁','银行','证券','烟草','航空','电信'])[1 + (i / 8) % 10]
                 || i || '企业年金计划',
               (ARRAY['北京','上海','广东','江苏','浙江','四川','湖北','山东'])[1 + i % 8] || '客户' || i || '有限公司',
               '单一计划', 'authoritative', false
        FROM generate_series(1, {plans}) i;
        INSERT INTO "组合计划" ("组合代码", "年金计划号", "组合名称", "组合类型", _source, _needs_review)
        SELECT 'QTAN' || lpad(i::text, 7, '0'), 'P' || lpad((1 + (i - 1) % {plans})::text, 6, '0'),
               'P' || lpad((1 + (i - 1) % {plans})::text, 6, '0') || ({KINDS})[1 + i % 4] || '组合' || i,
               ({KINDS})[1 + i % 4], 'authoritative', false
        FROM generate_series(1, {portfolios}) i;
    """)
    sql("VACUUM ANALYZE")
    print(f"  built in {time.perf_counter() - start:.1f} s", flush=True)


def derive_new(table: str, portfolios: int, new: int, typos: int, seed: int) -> tuple[list[str], dict[str, str]]:
    """Insert ``new`` auto-derived rows of ``table`` (``typos`` of them mistyped existing keys, each with the name
    and parent of the row it means); returns the new keys and typo → right key."""
    from django.db import connection

    from pipeline.demo.facts import typo

    plans = max(portfolios // 5, 1)
    rnd = random.Random(seed)
    rows: list[tuple[str, str, str | None]] = []
    truth: dict[str, str] = {}
    with connection.cursor() as cur:
        for j in range(new - typos):
            if table == "组合计划":
                plan = f"P{rnd.randrange(1, plans + 1):06d}"
                rows.append((f"QTAN{portfolios + 1 + j:07d}", f"{plan}含权益型组合{portfolios + 1 + j}", plan))
            else:
                rows.append((f"P{plans + 1 + j:06d}", f"新设{j}号职业年金计划", f"新客户{j}股份公司"))
        existing = {r[0] for r in rows}
        while len(truth) < typos:
            if table == "组合计划":
                i = rnd.randrange(1, portfolios + 1)
                right = f"QTAN{i:07d}"
                plan = f"P{1 + (i - 1) % plans:06d}"
                cur.execute('SELECT "组合名称" FROM "组合计划" WHERE "组合代码" = %s', [right])
            else:
                right = f"P{rnd.randrange(1, plans + 1):06d}"
                plan = None
                cur.execute('SELECT "计划简称", "客户名称" FROM "年金计划" WHERE "年金计划号" = %s', [right])
            names = cur.fetchone()
            wrong = typo(right, rnd)
            cur.execute(
                f'SELECT 1 FROM "{table}" WHERE {"组合代码" if table == "组合计划" else "年金计划号"} = %s', [wrong]
            )
            if cur.fetchone() or wrong in truth or wrong in existing:
                continue
            existing.add(wrong)
            truth[wrong] = right
            rows.append((wrong, names[0], plan if table == "组合计划" else names[1]))
        if table == "组合计划":
            cur.executemany(
                'INSERT INTO "组合计划" ("组合代码", "组合名称", "年金计划号", _source, _needs_review, _derived_at) '
                "VALUES (%s, %s, %s, 'auto_derived', true, now())",
                rows,
            )
        else:
            cur.executemany(
                'INSERT INTO "年金计划" ("年金计划号", "计划简称", "客户名称", _source, _needs_review, _derived_at) '
                "VALUES (%s, %s, %s, 'auto_derived', true, now())",
                rows,
            )
    return [r[0] for r in rows], truth


def run(table: str, portfolios: int, new: int, typos: int, repeat: int) -> None:
    from django.db import connection, transaction

    from pipeline.bulk import skip_jit
    from pipeline.config import load_config
    from pipeline.facts.suggestions import suggest_for_new_keys
    from pipeline.models import KeySuggestion

    settings = load_config().config.stewardship.suggestions
    times = []
    for attempt in range(repeat):

        class Rollback(Exception):
            pass

        try:
            with transaction.atomic(), connection.cursor() as cur:
                keys, truth = derive_new(table, portfolios, new, typos, seed=attempt)
                skip_jit(cur)  # as the load's cursor
                cur.execute(f'ANALYZE "{table}"')
                start = time.perf_counter()
                stored = suggest_for_new_keys(cur, table=table, keys=keys, batch_id=None, settings=settings)
                times.append(time.perf_counter() - start)
                first = {s.key: s.candidate for s in KeySuggestion.objects.filter(table=table, rank=1)}
                right = sum(1 for wrong, key in truth.items() if first.get(wrong) == key)
                false = sum(1 for key in keys if key not in truth and key in first)
                raise Rollback
        except Rollback:
            pass
    rows = portfolios if table == "组合计划" else portfolios // 5
    print(
        f"{table}: {new:,} new keys ({typos:,} typos) against {rows:,}"
        f" rows: median {statistics.median(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)}); "
        f"{stored:,} suggestions; typos with the right key first: {right}/{len(truth)}; "
        f"new keys with a suggestion: {false}/{new - typos}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portfolios", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep the database of an earlier run")
    args = parser.parse_args()

    if not args.reuse:
        subprocess.run(
            f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB} && createdb -h 127.0.0.1 -U postgres {BENCH_DB}",
            shell=True,
            check=True,
        )
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], check=True)
        build(args.portfolios)

    import django

    django.setup()
    run("组合计划", args.portfolios, args.new, args.new // 3, args.repeat)
    run("组合计划", args.portfolios, 10, 3, args.repeat)
    run("年金计划", args.portfolios, 300, 100, args.repeat)


if __name__ == "__main__":
    main()
