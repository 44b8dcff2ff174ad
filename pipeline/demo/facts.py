"""Demo monthly fact workbooks in the raw layout of DESIGN.md §5 (for the fact-processing phases).

Most rows reference keys of the demo legacy dataset, written the dirty ways real files write them (lower case,
surrounding spaces, full-width digits, a leading ``F`` on portfolio codes); a few rows bring keys nobody has seen,
and some carry placeholders (``(空白)``, ``0``, empty, temporary ``IN…`` company ids).
"""

from __future__ import annotations

import csv
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xlsxwriter

from .legacy import LegacyDataset, branches, plan_code, portfolio_code

SCALE_COLUMNS = [
    "月度",
    "业务类型",
    "计划类型",
    "计划号",
    "计划名称",
    "组合类型",
    "组合代码",
    "组合名称",
    "客户名称",
    "期初资产规模",
    "期末资产规模",
    "供款",
    "流失（含待遇支付）",
    "流失",
    "待遇支付",
    "投资收益",
    "当期收益率",
    "年化收益率",
    "机构",
    "年金账户号",
    "年金账户名",
    "company_id",
]
INCOME_COLUMNS = [
    "月度",
    "业务类型",
    "计划类型",
    "计划号",
    "计划名称",
    "组合类型",
    "组合代码",
    "组合名称",
    "客户名称",
    "固费",
    "浮费",
    "回补",
    "税",
    "机构",
    "年金账户号",
    "年金账户名",
    "company_id",
]
BUSINESS_TYPES = ["企年投资", "企年受托", "职年投资", "职年受托"]
FULL_WIDTH = str.maketrans(
    string.digits + string.ascii_uppercase, "０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ"
)
BASE32 = string.ascii_uppercase + "234567"


def dirty(code: str, rnd: random.Random, *, portfolio: bool) -> str:
    roll = rnd.random()
    if roll < 0.03:
        return code.lower()
    if roll < 0.06:
        return f" {code} "
    if roll < 0.08:
        return code.translate(FULL_WIDTH)
    if portfolio and roll < 0.12:
        return f"F{code}"
    return code


def typo(code: str, rnd: random.Random, *, strays: str = "19F") -> str:
    """``code`` mistyped the ways real files mistype keys: a stray character in front (one of ``strays``), a doubled,
    swapped, dropped or wrong digit."""
    digits = [i for i, c in enumerate(code) if c.isdigit()]
    kind = rnd.randrange(5)
    i = rnd.choice(digits)
    if kind == 0:
        return rnd.choice(strays) + code
    if kind == 1:
        return code[:i] + code[i] + code[i:]
    if kind == 2 and i + 1 < len(code) and code[i] != code[i + 1]:
        return code[:i] + code[i + 1] + code[i] + code[i + 2 :]
    if kind == 3:
        return code[:i] + code[i + 1 :]
    return code[:i] + str((int(code[i]) + 1 + rnd.randrange(8)) % 10) + code[i + 1 :]


@dataclass
class FactWorkbook:
    month: str = "202411"
    scale_rows: int = 5_000
    income_rows: int = 2_000
    new_plans: int = 8
    new_portfolios: int = 12
    new_share: float = 0.004
    seed: int = 202411
    legacy: LegacyDataset = field(default_factory=LegacyDataset)

    def _references(self, rnd: random.Random) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(plan, portfolio) pairs: known ones from the legacy dataset plus a few brand-new keys."""
        known = [
            (plan_code(1 + (i - 1) % self.legacy.plans), portfolio_code(i))
            for i in range(1, self.legacy.portfolios + 1)
        ]
        new_plans = [f"N{9000 + i:04d}" for i in range(self.new_plans)]
        new = [(rnd.choice(new_plans), f"XNP{7000 + i:04d}") for i in range(self.new_portfolios)]
        return known, new

    def rows(self, kind: str) -> list[list[Any]]:
        return list(self.iter_rows(kind))

    def iter_rows(self, kind: str) -> Iterator[list[Any]]:
        """Rows of one sheet, generated one at a time (a million-row CSV never sits in memory)."""
        rnd = random.Random(self.seed + (0 if kind == "规模明细" else 1))
        known, new = self._references(rnd)
        orgs = branches()
        count = self.scale_rows if kind == "规模明细" else self.income_rows
        month = self.month if kind == "规模明细" else f"{self.month[:4]}年{int(self.month[4:])}月"
        for i in range(count):
            plan, portfolio = rnd.choice(new) if rnd.random() < self.new_share else rnd.choice(known)
            org_code, org_name = orgs[rnd.randrange(len(orgs))]
            company = "".join(rnd.choice(BASE32) for _ in range(16))
            company_id = f"IN{company}" if rnd.random() < 0.05 else str(rnd.randrange(600_000_000, 699_999_999))
            portfolio_value = "(空白)" if rnd.random() < 0.01 else dirty(portfolio, rnd, portfolio=True)
            head = [
                month,
                rnd.choice(BUSINESS_TYPES),
                "单一计划" if plan.startswith("P") else "集合计划",
                dirty(plan, rnd, portfolio=False),
                f"{plan}年金计划",
                rnd.choice(["固定收益型", "含权益型"]),
                portfolio_value,
                f"{portfolio}组合",
                f"客户{plan}",
            ]
            if kind == "规模明细":
                opening = round(rnd.uniform(1e5, 5e8), 2)
                contribution = round(rnd.uniform(0, 1e7), 2)
                payout = round(rnd.uniform(0, 5e6), 2)
                income = round(opening * rnd.uniform(-0.01, 0.02), 2)
                closing = round(opening + contribution - payout + income, 2)
                measures = [
                    opening,
                    closing,
                    contribution,
                    payout,
                    round(payout * 0.7, 2),
                    round(payout * 0.3, 2),
                    income,
                    round(income / opening, 6),
                    round(income / opening * 12, 6),
                ]
            else:
                fixed = round(rnd.uniform(0, 2e5), 2)
                measures = [fixed, round(fixed * 0.3, 2), round(rnd.uniform(0, 1e4), 2), round(fixed * 0.06, 2)]
            tail = [org_name, f"{900000000 + i}", f"账户{i}", company_id]
            yield head + measures + tail

    def write_csv(self, path: Path, kind: str = "规模明细", *, encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding=encoding, newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(SCALE_COLUMNS if kind == "规模明细" else INCOME_COLUMNS)
            writer.writerows(self.iter_rows(kind))
        return path

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
        for kind, columns in (("规模明细", SCALE_COLUMNS), ("收入明细", INCOME_COLUMNS)):
            sheet = workbook.add_worksheet(kind)
            sheet.write_row(0, 0, columns)
            for r, row in enumerate(self.iter_rows(kind), start=1):
                sheet.write_row(r, 0, row)
        workbook.close()
        return path
