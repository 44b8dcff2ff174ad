"""Key rules and lookup fallbacks at size (issue 13 items 2-3): what they add to a fact load, and what a mapping costs.

Loads a 规模明细 CSV of --rows rows (0.1% junk or pattern-breaking plan keys, 1% on a branch name nobody knows, 0.5%
on an unknown 业务类型) into a database of its own, with ``key_patterns`` set, and prints the load's time and the time
of the three steps these items add (retiring superseded quarantined rows, setting aside the bad rows, recording the
unmapped values); then maps the unknown branch name and prints the re-point time.

Usage: .venv/bin/python bench/key_rules.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = "refgov_bench_key_rules"
PLANS, PORTFOLIOS = 3_000, 6_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="refgov_bench_key_rules_"))
    try:
        run(work, args.rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, rows: int) -> None:
    subprocess.run(
        f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB} && createdb -h 127.0.0.1 -U postgres {BENCH_DB}",
        shell=True,
        check=True,
    )
    config_dir = work / "config"
    shutil.copytree(ROOT / "config", config_dir)
    main_cfg = config_dir / "reference_management.yml"
    main_cfg.write_text(
        main_cfg.read_text(encoding="utf-8").replace(
            "key_patterns: {}", "key_patterns: {年金计划: '^[PZN][0-9]{4,6}$'}"
        ),
        encoding="utf-8",
    )
    os.environ.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        REFGOV_CONFIG_DIR=str(config_dir),
        DJANGO_SETTINGS_MODULE="refgov.settings.dev",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User

    from pipeline.config import load_config
    from pipeline.facts import lookups, service
    from pipeline.facts.service import process_fact_file
    from pipeline.models import UnmappedValue

    create_references()
    path = write_facts(work / "202411_规模明细.csv", rows)
    timings: dict[str, float] = {}
    for module, name in [
        (service, "supersede_quarantined"),
        (service, "set_aside_invalid_keys"),
        (service, "record_unmapped"),
    ]:
        setattr(module, name, timed(getattr(module, name), name, timings))
    start = time.perf_counter()
    result = process_fact_file(domain="annuity_performance", path=path, config=load_config())
    total = time.perf_counter() - start
    batch = result.batch
    print(f"load of {rows:,} rows: {total:.1f} s ({batch.rows_loaded:,} loaded, {result.quarantined:,} quarantined)")
    for name, seconds in timings.items():
        print(f"  {name}: {seconds:.3f} s ({seconds / total:.1%} of the load)")
    for u in UnmappedValue.objects.filter(batch=batch):
        print(f"  unmapped: {u.source_column} {u.value} → {u.column} {u.fallback or 'NULL'} ({u.rows:,} rows)")
    steward = User.objects.create_user("bench-steward")
    start = time.perf_counter()
    mapped = lookups.map_value(table="组织架构", match="机构", value="火星分公司", key="G05", user=steward)
    print(
        f"map 火星分公司 → G05: {time.perf_counter() - start:.1f} s "
        f"({sum(mapped.fact_rows.values()):,} fact rows, {sum(mapped.reference_rows.values()):,} reference rows)"
    )


def timed(function: Callable[..., Any], name: str, timings: dict[str, float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start

    return wrapper


def create_references() -> None:
    import yaml
    from django.conf import settings

    from pipeline.demo.legacy import branches, plan_code, portfolio_code
    from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine

    lines = yaml.safe_load((settings.BASE_DIR / "config/reference_data/product_lines.yml").read_text(encoding="utf-8"))
    ProductLine.objects.bulk_create(ProductLine(code=r["产品线代码"], name=r["产品线"]) for r in lines["rows"])
    Organization.objects.bulk_create(Organization(code=code, name=name) for code, name in branches())
    AnnuityPlan.objects.bulk_create(AnnuityPlan(plan_code=plan_code(i)) for i in range(1, PLANS + 1))
    PortfolioPlan.objects.bulk_create(
        PortfolioPlan(portfolio_code=portfolio_code(i), plan_id=plan_code(1 + (i - 1) % PLANS))
        for i in range(1, PORTFOLIOS + 1)
    )


def write_facts(path: Path, rows: int) -> Path:
    from pipeline.demo.facts import SCALE_COLUMNS
    from pipeline.demo.legacy import branches, plan_code, portfolio_code

    names = [name for _, name in branches()]
    junk = ["P 0002", "'P0003'", "1P0290", "计划号 待确认"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SCALE_COLUMNS)
        for i in range(rows):
            p = 1 + (i * 7919) % PORTFOLIOS
            values = {
                "月度": "202411",
                "业务类型": "企年新业务" if i % 200 == 3 else "企年投资",
                "计划类型": "单一计划",
                "计划号": junk[i % 4] if i % 1000 == 7 else plan_code(1 + (p - 1) % PLANS),
                "计划名称": "计划",
                "组合代码": portfolio_code(p),
                "组合名称": "组合",
                "客户名称": "客户",
                "期末资产规模": 1000 + i,
                "机构": "火星分公司" if i % 100 == 5 else names[i % len(names)],
            }
            writer.writerow([values.get(c, "") for c in SCALE_COLUMNS])
    return path


if __name__ == "__main__":
    main()
