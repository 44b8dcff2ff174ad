"""Preload benchmark (issue 2): 200k plans + 1M portfolios from MariaDB into a fresh PostgreSQL database.

Prints, for the same legacy rows:
  raw      mariadb --batch | psql \\copy into unconstrained typed tables (the baseline)
  first    `manage.py preload` full first sync into the migrated, constrained tables
  second   an unchanged second sync (incremental, the default) — must write zero rows
  full2    an unchanged second sync with --full
with ratios against raw, rows written (pg_stat_user_tables) and peak RSS of the preload process.

Usage: .venv/bin/python bench/preload.py [--plans 200000] [--portfolios 1000000]
Databases: REFGOV_BENCH_PRELOAD_DB (default refgov_bench), REFGOV_BENCH_LEGACY_HUB / REFGOV_BENCH_LEGACY_ENTERPRISE
(MariaDB, default bench_annuity_hub / bench_enterprise).
Targets: first ≤ 2.5× raw, unchanged incremental second ≤ 0.3× raw with zero rows written, peak RSS ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from child import compile_bytecode, run_manage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refgov.settings.dev")

PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
# Database names (PostgreSQL; MariaDB) overridable, so that several checkouts can run the benchmark side by side.
BENCH_DB = os.environ.get("REFGOV_BENCH_PRELOAD_DB", "refgov_bench")
HUB = os.environ.get("REFGOV_BENCH_LEGACY_HUB", "bench_annuity_hub")
ENT = os.environ.get("REFGOV_BENCH_LEGACY_ENTERPRISE", "bench_enterprise")

RAW_DDL = """
DROP TABLE IF EXISTS raw_plans, raw_portfolios;
CREATE TABLE raw_plans ("年金计划号" varchar(50), "计划简称" varchar(255), "计划全称" varchar(255),
  "主拓代码" varchar(50), "计划类型" varchar(50), "客户名称" varchar(255), company_id varchar(50),
  "管理资格" varchar(255), "计划状态" varchar(50), "主拓机构" varchar(100), "组合数" int, "是否统括" int,
  "备注" text, updated_at timestamp);
CREATE TABLE raw_portfolios ("组合代码" varchar(50), "年金计划号" varchar(50), "组合名称" varchar(255),
  "组合简称" varchar(255), "组合状态" varchar(50), "运作开始日" text, "组合类型" varchar(50), "子分类" varchar(50),
  "受托人" varchar(255), "是否存款组合" int, "是否外部组合" int, "是否PK组合" int, "投资管理人" varchar(255),
  "受托管理人" varchar(255), "投资组合代码" varchar(50), "投资组合名称" varchar(255), "备注" text,
  updated_at timestamp);
"""


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, executable="/bin/bash")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_pipe() -> None:
    for table, target in (("年金计划", "raw_plans"), ("组合计划", "raw_portfolios")):
        sh(
            f"mariadb -h127.0.0.1 -uroot --batch -N -e 'SELECT * FROM {HUB}.{table}' "
            f"| {' '.join(PG)} -d {BENCH_DB} -c \"\\copy {target} FROM STDIN WITH (NULL 'NULL')\""
        )


def writes() -> int:
    out = subprocess.run(
        PG
        + [
            "-d",
            BENCH_DB,
            "-At",
            "-c",
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
            "WHERE schemaname = 'business'",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip())


def preload(env: dict, *extra: str) -> tuple[float, float, dict]:
    return run_manage(env, "preload", "--json", *extra)


def reset_targets() -> None:
    subprocess.run(
        PG
        + [
            "-d",
            BENCH_DB,
            "-c",
            'TRUNCATE business."组合计划", business."年金计划", business."产品线", business."组织架构", '
            "pipeline_syncwatermark, pipeline_syncrun CASCADE",
        ],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=200_000)
    parser.add_argument("--portfolios", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the raw pipe and of the first sync (median)")
    args = parser.parse_args()

    import django

    django.setup()
    compile_bytecode()
    from pipeline.demo.legacy import LegacyDataset, create_legacy_databases
    from pipeline.sources.legacy_mysql import MySQLServer

    print(f"legacy dataset: {args.plans:,} plans, {args.portfolios:,} portfolios ...", flush=True)
    t = timed(
        lambda: create_legacy_databases(
            MySQLServer.from_settings(),
            LegacyDataset(plans=args.plans, portfolios=args.portfolios),
            hub_db=HUB,
            enterprise_db=ENT,
        )
    )
    print(f"  generated in {t:.1f} s")

    sh(f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB} && createdb -h 127.0.0.1 -U postgres {BENCH_DB}")
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"}
    with tempfile.TemporaryDirectory() as config_dir:
        config = (ROOT / "config" / "reference_management.yml").read_text(encoding="utf-8")
        config = config.replace("database: annuity_hub", f"database: {HUB}").replace(
            "database: enterprise", f"database: {ENT}"
        )
        Path(config_dir, "reference_management.yml").write_text(config, encoding="utf-8")
        (Path(config_dir) / "reference_data").mkdir()
        (Path(config_dir) / "reference_data" / "product_lines.yml").write_text(
            (ROOT / "config" / "reference_data" / "product_lines.yml").read_text(encoding="utf-8"), encoding="utf-8"
        )
        env["REFGOV_CONFIG_DIR"] = config_dir
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, check=True)
        subprocess.run(PG + ["-d", BENCH_DB, "-c", RAW_DDL], check=True)

        raws = []
        for _ in range(args.repeat):
            subprocess.run(PG + ["-d", BENCH_DB, "-c", "TRUNCATE raw_plans, raw_portfolios"], check=True)
            raws.append(timed(raw_pipe))
        raw = statistics.median(raws)
        rows = args.plans + args.portfolios
        print(
            f"raw pipe        {raw:7.2f} s  median of {', '.join(f'{r:.2f}' for r in raws)} "
            f"({rows:,} rows, {rows / raw:,.0f} rows/s)"
        )

        firsts = []
        for i in range(args.repeat):
            if i:
                reset_targets()
            time.sleep(1)
            w0 = writes()
            firsts.append(preload(env))
            time.sleep(1)
            w1 = writes()
        first = statistics.median(f[0] for f in firsts)
        rss1 = max(f[1] for f in firsts)
        summary1 = firsts[-1][2]
        print(f"first syncs: {', '.join(f'{f[0]:.2f}' for f in firsts)} s")
        seconds = []
        for _ in range(args.repeat):  # an unchanged source is not read: the run is short, take the median
            second, rss2, summary2 = preload(env)
            seconds.append(second)
        second = statistics.median(seconds)
        print(f"unchanged incremental syncs: {', '.join(f'{s:.2f}' for s in seconds)} s")
        time.sleep(1)
        w2 = writes()
        full2, rss3, summary3 = preload(env, "--full")
        time.sleep(1)
        w3 = writes()

    def line(name: str, seconds: float, rss: float, summary: dict, written: int, target: str) -> None:
        counts = {
            t["table"]: (t["mode"], t["inserted"], t["updated"], t["unchanged"], t["timings_ms"])
            for t in summary["tables"]
        }
        print(
            f"{name:<15} {seconds:7.2f} s  {seconds / raw:5.2f}× raw (target {target})  "
            f"rows written {written:,}  peak RSS {rss:,.0f} MB"
        )
        for table, (mode, ins, upd, same, timings) in counts.items():
            phases = ", ".join(f"{k} {v / 1000:.2f}" for k, v in timings.items())
            print(f"    {table}: {mode}, inserted {ins:,}, updated {upd:,}, unchanged {same:,} — seconds: {phases}")

    line("first (full)", first, rss1, summary1, w1 - w0, "≤ 2.5×, median")
    line("second (incr.)", second, rss2, summary2, w2 - w1, "≤ 0.3×, 0 rows, median")
    line("second (--full)", full2, rss3, summary3, w3 - w2, "0 rows")
    print(f"peak RSS of any preload process: {max(rss1, rss2, rss3):,.0f} MB (target ≤ 500 MB)")
    print(
        f"ratios: first {first / raw:.2f}× (≤ 2.5×), unchanged incremental {second / raw:.2f}× (≤ 0.3×), "
        f"unchanged --full {full2 / raw:.2f}×; rows written by unchanged syncs: {w2 - w1:,} and {w3 - w2:,}"
    )


if __name__ == "__main__":
    main()
