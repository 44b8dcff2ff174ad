"""ETL API benchmark (issue 14): ``refgov_api.load_facts`` of a 1M-row DataFrame.

Against (a) ``process_fact_file`` of the same rows written as a CSV file (the ``process_facts`` path, in process) and
(b) a raw COPY of the frame (Arrow → CSV text in chunks → one COPY) into an unconstrained typed table. Targets:
≤ 3× the raw COPY, no slower than the CSV path, peak RSS beyond the frame itself ≤ 300 MB.

Each measurement runs in a fresh child process that builds the frame first (seeded: the same rows every time), then
resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) so that the peak it reports is what the load itself
adds to the frame. Every run loads into an empty fact table (the reference tables hold the authoritative rows only)
after a CHECKPOINT; the three kinds of run alternate.

Usage: .venv/bin/python bench/api.py [--rows 1000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from child import DROP_PARTITIONS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refgov.settings.dev")

PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
BENCH_DB = "refgov_bench_api"
NAME = "202411_规模明细.csv"
NUMBERS = {
    "期初资产规模",
    "期末资产规模",
    "供款",
    "流失（含待遇支付）",
    "流失",
    "待遇支付",
    "投资收益",
    "当期收益率",
    "年化收益率",
}


def sh(cmd: list[str], env: dict | None = None) -> None:
    subprocess.run(cmd, check=True, env=env)


def psql(command: str) -> None:
    sh(PG + ["-d", BENCH_DB, "-c", command])


def frame(rows: int):
    """The benchmark's frame: 规模明细 rows with 3% of rows on 300 new plans and 600 new portfolios, empty values."""
    import numpy as np
    import pandas as pd

    from pipeline.demo.facts import SCALE_COLUMNS
    from pipeline.demo.legacy import branches, plan_code, portfolio_code

    rng = np.random.default_rng(14)

    def pick(values: list) -> np.ndarray:
        return np.asarray(values, dtype=object)[rng.integers(0, len(values), rows)]

    def money() -> np.ndarray:
        return np.where(rng.random(rows) < 0.03, np.nan, np.round(rng.random(rows) * 1e7, 2))

    known = rng.random(rows) >= 0.03
    plan = np.where(known, pick([plan_code(i) for i in range(1, 30)]), pick([f"N{i:05d}" for i in range(300)]))
    portfolio = np.where(
        known, pick([portfolio_code(i) for i in range(1, 40)]), pick([f"XN{i:05d}" for i in range(600)])
    )
    return pd.DataFrame(
        {
            "月度": pick(["202411"]),
            "业务类型": pick(["企年投资", "企年受托", "职年受托", "职年投资"]),
            "计划类型": pick(["单一计划", "集合计划"]),
            "计划号": plan,
            "计划名称": pick([f"计划{i}" for i in range(1, 900)] + [None]),
            "组合类型": pick(["固定收益型", "权益型", None]),
            "组合代码": portfolio,
            "组合名称": pick([f"组合{i}" for i in range(1, 1500)]),
            "客户名称": pick([f"客户{i}有限公司" for i in range(1, 5000)] + [None]),
            "期初资产规模": money(),
            "期末资产规模": money(),
            "供款": money(),
            "流失（含待遇支付）": money(),
            "流失": money(),
            "待遇支付": money(),
            "投资收益": money(),
            "当期收益率": rng.random(rows) / 7,
            "年化收益率": np.where(rng.random(rows) < 0.1, np.nan, rng.random(rows) / 3),
            "机构": pick([name for _, name in branches()] + [None]),
            "年金账户号": pick([f"9{i:08d}" for i in range(20000)]),
            "年金账户名": pick([f"账户{i}" for i in range(20000)]),
            "company_id": pick([f"6{i:08d}" for i in range(3000)] + [None]),
        },
        columns=SCALE_COLUMNS,
    )


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def child(kind: str, rows: int, csv_path: str) -> None:
    """One measured run: build the frame, reset the peak mark, run ``kind``; print seconds and MB as JSON."""
    import django

    django.setup()
    from django.db import connection

    data = frame(rows)
    if kind == "arrow":
        import pyarrow as pa

        data = pa.Table.from_pandas(data, preserve_index=False)
    base = rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the current RSS
    start = time.perf_counter()
    if kind in {"pandas", "arrow"}:
        import refgov_api

        result = refgov_api.load_facts(data, domain="annuity_performance", source=NAME)
        assert result.rows_loaded == rows, result
    elif kind == "csv":
        from pipeline.facts.service import process_fact_file

        assert process_fact_file(domain="annuity_performance", path=csv_path).batch.rows_loaded == rows
    else:
        raw_copy(connection, data)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "frame_mb": base, "beyond_mb": rss_mb("VmHWM") - base}))


def raw_copy(connection, data) -> None:
    """The frame into an unconstrained typed table: Arrow → CSV text in chunks → one COPY."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    connection.ensure_connection()
    pg = connection.connection
    columns = ", ".join(f'"{c}" {"numeric" if c in NUMBERS else "text"}' for c in data.columns)
    with pg.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS raw_scale; CREATE TABLE raw_scale ({columns})")
        names = ", ".join(f'"{c}"' for c in data.columns)
        with cur.copy(f"COPY raw_scale ({names}) FROM STDIN (FORMAT csv)") as copy:
            options = pacsv.WriteOptions(include_header=False)
            for start in range(0, len(data), 65_536):
                buffer = io.BytesIO()
                chunk = pa.Table.from_pandas(data.iloc[start : start + 65_536], preserve_index=False)
                pacsv.write_csv(chunk, buffer, options)
                copy.write(buffer.getvalue())
    pg.commit()


def run(kind: str, rows: int, csv_path: Path, env: dict) -> dict:
    psql(DROP_PARTITIONS.format(only=""))  # the month is new to the table, as in bench-facts' case a
    psql(
        'TRUNCATE business."规模明细", business."收入明细", pipeline_derivedreference, pipeline_factbatch CASCADE; '
        "DELETE FROM business.\"组合计划\" WHERE _source = 'auto_derived'; "
        "DELETE FROM business.\"年金计划\" WHERE _source = 'auto_derived'; DROP TABLE IF EXISTS raw_scale; CHECKPOINT"
    )
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--rows", str(rows), "--csv", str(csv_path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=["pandas", "arrow", "csv", "copy"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.csv)
        return

    work = Path(tempfile.mkdtemp(prefix="refgov-bench-api-"))
    try:
        measure(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, args) -> None:
    sh(
        [
            "bash",
            "-c",
            f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB}; createdb -h 127.0.0.1 -U postgres {BENCH_DB}",
        ]
    )
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"}
    sh([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env)
    sh(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from tests.facts_support import create_references; create_references()",
        ],
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    import django

    django.setup()
    csv_path = work / NAME
    frame(args.rows).to_csv(csv_path, index=False)
    print(f"{args.rows:,} rows; CSV {csv_path.stat().st_size / 2**20:.0f} MB", flush=True)

    results: dict[str, list[dict]] = {k: [] for k in ("copy", "pandas", "arrow", "csv")}
    for _ in range(args.repeat):
        for kind in results:
            measured = run(kind, args.rows, csv_path, env)
            results[kind].append(measured)
            print(f"  {kind:7} {measured['seconds']:6.1f} s  +{measured['beyond_mb']:.0f} MB", flush=True)
    best = {k: min(r["seconds"] for r in v) for k, v in results.items()}
    peak = {k: max(r["beyond_mb"] for r in v) for k, v in results.items()}
    frame_mb = statistics.median(r["frame_mb"] for r in results["pandas"])
    print(f"raw COPY of the frame:        {best['copy']:6.1f} s")
    print(f"process_facts of the CSV:     {best['csv']:6.1f} s  peak +{peak['csv']:.0f} MB")
    for kind in ("pandas", "arrow"):
        print(
            f"load_facts ({kind:6}):        {best[kind]:6.1f} s  = {best[kind] / best['copy']:.2f}× raw COPY "
            f"(target ≤ 3×), {best[kind] / best['csv']:.2f}× the CSV path (target ≤ 1×); "
            f"peak RSS beyond the frame +{peak[kind]:.0f} MB (target ≤ 300; the pandas frame itself ~{frame_mb:.0f} MB)"
        )
    # the best runs above; the same ratios taken round by round (each round runs the four kinds in turn)
    for kind in ("pandas", "arrow"):
        rounds = list(zip(results[kind], results["copy"], results["csv"], strict=True))
        to_copy = statistics.median(k["seconds"] / c["seconds"] for k, c, _ in rounds)
        to_csv = statistics.median(k["seconds"] / f["seconds"] for k, _, f in rounds)
        print(f"  median of the {len(rounds)} rounds ({kind}): {to_copy:.2f}× raw COPY, {to_csv:.2f}× the CSV path")


if __name__ == "__main__":
    main()
