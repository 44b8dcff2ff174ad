"""Fact-processing benchmark (issue 3).

1. A 1M-row 规模明细 CSV with 3% of rows on unknown keys: end-to-end `manage.py process_facts` (with the foreign
   keys in place) against a raw `psql \\copy` of the same file into an unconstrained typed table. Target ≤ 4×,
   peak RSS ≤ 1.5 GB.
2. A realistic 40k-row 规模明细 workbook: end-to-end `process_facts` against pandas + calamine only reading that
   sheet. Target ≤ 2×.

Each measured run alternates with its baseline and starts after a CHECKPOINT, so that both see the same machine.

Usage: .venv/bin/python bench/facts.py [--rows 1000000] [--xlsx-rows 40000] [--repeat 3] [--only csv|xlsx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from child import run_manage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refgov.settings.dev")

PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
BENCH_DB = "refgov_bench_facts"
HUB, ENT = "bench_facts_hub", "bench_facts_enterprise"

RAW_DDL = """
DROP TABLE IF EXISTS raw_scale;
CREATE TABLE raw_scale ("月度" text, "业务类型" text, "计划类型" text, "计划号" text, "计划名称" text,
  "组合类型" text, "组合代码" text, "组合名称" text, "客户名称" text, "期初资产规模" numeric, "期末资产规模" numeric,
  "供款" numeric, "流失（含待遇支付）" numeric, "流失" numeric, "待遇支付" numeric, "投资收益" numeric,
  "当期收益率" numeric, "年化收益率" numeric, "机构" text, "年金账户号" text, "年金账户名" text, company_id text);
"""


def sh(cmd: list[str], env: dict | None = None) -> None:
    subprocess.run(cmd, check=True, env=env)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def reset_facts() -> None:
    sh(
        PG
        + [
            "-d",
            BENCH_DB,
            "-c",
            'TRUNCATE business."规模明细", business."收入明细", pipeline_derivedreference, pipeline_factbatch CASCADE; '
            "DELETE FROM business.\"组合计划\" WHERE _source = 'auto_derived'; "
            "DELETE FROM business.\"年金计划\" WHERE _source = 'auto_derived'",
        ]
    )


def checkpoint() -> None:
    sh(PG + ["-d", BENCH_DB, "-c", "CHECKPOINT"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-rows", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["csv", "xlsx"], help="measure one file type only")
    args = parser.parse_args()

    import django

    django.setup()
    work = Path(tempfile.mkdtemp(prefix="refgov-bench-facts-"))
    try:
        measure(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a 250 MB CSV per run


def measure(work: Path, args) -> None:
    from pipeline.demo.legacy import LegacyDataset, create_legacy_databases
    from pipeline.sources.legacy_mysql import MySQLServer

    dataset = LegacyDataset()
    create_legacy_databases(MySQLServer.from_settings(), dataset, hub_db=HUB, enterprise_db=ENT)
    sh(
        [
            "bash",
            "-c",
            f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB} && createdb -h 127.0.0.1 -U postgres {BENCH_DB}",
        ]
    )
    config_dir = work / "config"
    subprocess.run(["cp", "-r", str(ROOT / "config"), str(config_dir)], check=True)
    main_cfg = (config_dir / "reference_management.yml").read_text(encoding="utf-8")
    main_cfg = main_cfg.replace("database: annuity_hub", f"database: {HUB}").replace(
        "database: enterprise", f"database: {ENT}"
    )
    (config_dir / "reference_management.yml").write_text(main_cfg, encoding="utf-8")
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "REFGOV_CONFIG_DIR": str(config_dir),
    }
    sh([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env)
    sh([sys.executable, str(ROOT / "manage.py"), "preload", "-v0"], env=env)
    sh(PG + ["-d", BENCH_DB, "-c", RAW_DDL])

    if args.only != "xlsx":
        csv_ratio = measure_csv(work, args, dataset, env)
    if args.only != "csv":
        xlsx_ratio = measure_xlsx(work, args, dataset, env)
    if args.only is None:
        print(f"ratios: csv {csv_ratio:.2f}× raw copy (≤ 4×), xlsx {xlsx_ratio:.2f}× pandas read (≤ 2×)")


def measure_csv(work: Path, args, dataset, env: dict) -> float:
    from pipeline.demo.facts import FactWorkbook

    print(f"writing a {args.rows:,}-row 规模明细 CSV with 3% of rows on unknown keys ...", flush=True)
    big = FactWorkbook(scale_rows=args.rows, new_plans=300, new_portfolios=600, new_share=0.03, legacy=dataset)
    csv_path = big.write_csv(work / "202411_规模明细.csv")
    print(f"  {csv_path.stat().st_size / 2**20:,.0f} MB")

    # Raw copies and loads alternate, each after a CHECKPOINT: neither inherits the other's dirty buffers and WAL.
    raws, runs = [], []
    for _ in range(args.repeat):
        sh(PG + ["-d", BENCH_DB, "-c", "TRUNCATE raw_scale"])
        checkpoint()
        raws.append(
            timed(
                lambda: sh(
                    PG + ["-d", BENCH_DB, "-c", f"\\copy raw_scale FROM '{csv_path}' WITH (FORMAT csv, HEADER true)"]
                )
            )
        )
        reset_facts()
        checkpoint()
        runs.append(run_manage(env, "process_facts", "--domain", "annuity_performance", str(csv_path), "--json"))
    raw = statistics.median(raws)
    seconds = statistics.median(r[0] for r in runs)
    summary = runs[-1][2]["files"][0]
    print(f"raw \\copy        {raw:7.2f} s  median of {', '.join(f'{r:.2f}' for r in raws)}")
    print(
        f"process_facts    {seconds:7.2f} s  median of {', '.join(f'{r[0]:.2f}' for r in runs)}  "
        f"→ {seconds / raw:.2f}× raw (target ≤ 4×); peak RSS {max(r[1] for r in runs):,.0f} MB (target ≤ 1,536 MB)"
    )
    print(f"    loaded {summary['rows_loaded']:,} rows; new references {summary['new_references']}")
    return seconds / raw


def measure_xlsx(work: Path, args, dataset, env: dict) -> float:
    import pandas as pd

    from pipeline.demo.facts import FactWorkbook

    print(f"writing a {args.xlsx_rows:,}-row workbook ...", flush=True)
    book = FactWorkbook(scale_rows=args.xlsx_rows, income_rows=14_000, legacy=dataset)
    xlsx_path = book.write(work / "202411_年金业务明细.xlsx")
    reads, xruns = [], []
    for _ in range(args.repeat):
        reads.append(timed(lambda: pd.read_excel(xlsx_path, sheet_name="规模明细", engine="calamine")))
        reset_facts()
        checkpoint()
        xruns.append(run_manage(env, "process_facts", "--domain", "annuity_performance", str(xlsx_path), "--json"))
    read = statistics.median(reads)
    xseconds = statistics.median(r[0] for r in xruns)
    print(f"pandas+calamine  {read:7.2f} s  median of {', '.join(f'{r:.2f}' for r in reads)}")
    print(
        f"process_facts    {xseconds:7.2f} s  median of {', '.join(f'{r[0]:.2f}' for r in xruns)}  "
        f"→ {xseconds / read:.2f}× the read (target ≤ 2×)"
    )
    return xseconds / read


if __name__ == "__main__":
    main()
