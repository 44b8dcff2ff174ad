"""Reference rows and real fact files (xlsx, csv) for the fact-processing tests."""

from __future__ import annotations

import csv
from pathlib import Path

import xlsxwriter
import yaml
from django.conf import settings
from django.db import connection

from pipeline.demo.facts import INCOME_COLUMNS, SCALE_COLUMNS
from pipeline.demo.legacy import branches, plan_code, portfolio_code
from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine

PLANS, PORTFOLIOS = 30, 40


def month_partition(table: str, month) -> None:
    """The month's partition of the fact table ``table`` (loads create it; tests writing facts by the ORM need it)."""
    from pipeline.facts.partitions import create_partition, month_partitions

    with connection.cursor() as cur:
        if month.replace(day=1) not in month_partitions(cur, table):
            create_partition(cur, table, month.replace(day=1))


def create_references() -> None:
    """Authoritative rows as a preload leaves them: 12 product lines, 38 branches, 30 plans, 40 portfolios."""
    lines = yaml.safe_load((settings.BASE_DIR / "config/reference_data/product_lines.yml").read_text(encoding="utf-8"))
    ProductLine.objects.bulk_create(
        ProductLine(code=r["产品线代码"], name=r["产品线"], category=r["产品类别"]) for r in lines["rows"]
    )
    Organization.objects.bulk_create(Organization(code=code, name=name) for code, name in branches())
    AnnuityPlan.objects.bulk_create(
        AnnuityPlan(plan_code=plan_code(i), short_name=f"计划{i}") for i in range(1, PLANS + 1)
    )
    PortfolioPlan.objects.bulk_create(
        PortfolioPlan(portfolio_code=portfolio_code(i), plan_id=plan_code(1 + (i - 1) % PLANS), name=f"组合{i}")
        for i in range(1, PORTFOLIOS + 1)
    )


def scale_row(**values) -> dict:
    """One raw 规模明细 row (raw headers) with sensible defaults."""
    row = {
        "月度": "202411",
        "业务类型": "企年投资",
        "计划类型": "单一计划",
        "计划号": plan_code(1),
        "计划名称": "计划1",
        "组合类型": "固定收益型",
        "组合代码": portfolio_code(1),
        "组合名称": "组合1",
        "客户名称": "客户甲",
        "期初资产规模": 1000.0,
        "期末资产规模": 1100.0,
        "供款": 100.0,
        "流失（含待遇支付）": 10.0,
        "流失": 5.0,
        "待遇支付": 5.0,
        "投资收益": 10.0,
        "当期收益率": 0.01,
        "年化收益率": 0.12,
        "机构": "北京分公司",
        "年金账户号": "900000001",
        "年金账户名": "账户1",
        "company_id": "612345678",
    }
    row.update(values)
    return row


def write_xlsx(path: Path, sheets: dict[str, list[dict]], columns: dict[str, list[str]] | None = None) -> Path:
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    for name, rows in sheets.items():
        header = (columns or {}).get(name) or (SCALE_COLUMNS if name == "规模明细" else INCOME_COLUMNS)
        sheet = workbook.add_worksheet(name)
        sheet.write_row(0, 0, header)
        for r, row in enumerate(rows, start=1):
            sheet.write_row(r, 0, [row.get(c) for c in header])
    workbook.close()
    return path


def write_csv(path: Path, rows: list[dict], *, encoding: str = "utf-8", columns: list[str] | None = None) -> Path:
    header = columns or SCALE_COLUMNS
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in header])
    return path
