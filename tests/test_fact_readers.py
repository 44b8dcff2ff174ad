"""Fact-file readers against real files written here: xlsx (xlsxwriter/openpyxl), UTF-8/GBK csv, broken files."""

from __future__ import annotations

import csv
import datetime as dt
import os
import pickle
import tracemalloc
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from pipeline.facts.readers import FactFile, FactFileError, open_fact_file, parse_month, parse_number

SCALE = ["月度", "业务类型", "计划代码", "机构名称", "期末资产规模"]
INCOME = ["月度", "计划代码", "固费", "浮费"]
RAW_ALIASES = {"机构": "机构名称", "计划号": "计划代码", "流失（含待遇支付）": "流失_含待遇支付"}


def all_rows(fact: FactFile, size: int = 10_000) -> list[tuple[int, tuple]]:
    return [pair for chunk in fact.chunks_with_row_numbers(size) for pair in chunk]


def write_xlsx(path: Path, sheets: dict[str, list[list]], *, start_row: int = 0, start_col: int = 0) -> Path:
    workbook = xlsxwriter.Workbook(str(path))
    for name, rows in sheets.items():
        sheet = workbook.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.write(start_row + r, start_col + c, value)
    workbook.close()
    return path


def write_csv(path: Path, rows: list[list], *, encoding: str = "utf-8", delimiter: str = ",") -> Path:
    with open(path, "w", encoding=encoding, newline="") as stream:
        csv.writer(stream, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return path


# --- Excel ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_workbook(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("xlsx") / "2024年11月规模明细.xlsx"
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    scale = workbook.add_worksheet("收入明细")  # first sheet is the other one: the reader must pick by name
    for c, name in enumerate(INCOME):
        scale.write(0, c, name)
    for r in range(1, 501):
        scale.write_row(r, 0, ["202411", f"I{r:05d}", r * 10, r * 0.5])
    detail = workbook.add_worksheet("规模明细")
    detail.write_row(0, 0, SCALE)
    for r in range(1, 12_001):
        detail.write_row(r, 0, ["202411", "企年投资", f"P{r:05d}", f"分公司{r % 38}", r * 1000.25])
    workbook.close()
    return path


def test_xlsx_reads_the_named_sheet_in_order_with_counts_and_row_numbers(big_workbook):
    fact = open_fact_file(big_workbook, sheet="规模明细", required=SCALE)

    assert fact.path == big_workbook and fact.sheet == "规模明细" and fact.encoding is None
    assert fact.columns == SCALE and fact.header_row == 1
    chunks = list(fact.chunks(5_000))
    assert [len(chunk) for chunk in chunks] == [5_000, 5_000, 2_000]
    rows = [row for chunk in chunks for row in chunk]
    assert rows[0] == ("202411", "企年投资", "P00001", "分公司1", "1000.25")
    assert rows[-1] == ("202411", "企年投资", "P12000", "分公司30", "12003000")
    numbered = all_rows(fact)
    assert numbered[0][0] == 2 and numbered[-1][0] == 12_001
    assert [values for _, values in numbered] == rows  # chunks() is derived from chunks_with_row_numbers()


def test_xlsx_other_sheet_and_reiteration(big_workbook):
    fact = open_fact_file(big_workbook, sheet=" 收入明细\u3000")  # sheet names compared after trimming

    assert fact.sheet == "收入明细" and fact.columns == INCOME
    first = all_rows(fact)
    assert len(first) == 500
    assert first[0] == (2, ("202411", "I00001", "10", "0.5"))
    assert first[-1] == (501, ("202411", "I00500", "5000", "250"))
    assert all_rows(fact, size=7) == first  # chunks can be read again


def test_xlsx_headers_trimmed_and_aliased_after_leading_empty_rows(tmp_path):
    path = write_xlsx(
        tmp_path / "raw.xlsx",
        {
            "规模明细": [
                [" 机构 ", "\u3000计划号\u3000", "\ufeff流失（含待遇支付）", "备注 ", None],
                ["上海", "P1", 5, " x "],
            ]
        },
        start_row=2,
    )

    fact = open_fact_file(path, sheet="规模明细", aliases=RAW_ALIASES, required=["机构名称", "计划代码"])

    assert fact.columns == ["机构名称", "计划代码", "流失_含待遇支付", "备注"]
    assert fact.header_row == 3
    assert all_rows(fact) == [(4, ("上海", "P1", "5", " x "))]  # values are not trimmed


def test_xlsx_cell_values_become_text(tmp_path):
    path = tmp_path / "types.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("规模明细")
    date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
    time_format = workbook.add_format({"num_format": "hh:mm:ss"})
    sheet.write_row(0, 0, ["kind", "value"])
    cases = [
        ("int", lambda r: sheet.write_number(r, 1, 123)),
        ("whole float", lambda r: sheet.write_number(r, 1, 1234567.0)),
        ("big whole float", lambda r: sheet.write_number(r, 1, 1e20)),
        ("float", lambda r: sheet.write_number(r, 1, 0.1)),
        ("negative float", lambda r: sheet.write_number(r, 1, -1234.5678)),
        ("small float", lambda r: sheet.write_number(r, 1, 1.5e-05)),
        ("true", lambda r: sheet.write_boolean(r, 1, True)),
        ("false", lambda r: sheet.write_boolean(r, 1, False)),
        ("date", lambda r: sheet.write_datetime(r, 1, dt.date(2024, 11, 1), date_format)),
        ("midnight", lambda r: sheet.write_datetime(r, 1, dt.datetime(2024, 11, 30, 0, 0), date_format)),
        ("datetime", lambda r: sheet.write_datetime(r, 1, dt.datetime(2024, 11, 30, 13, 5, 7), date_format)),
        ("time", lambda r: sheet.write_datetime(r, 1, dt.time(8, 30), time_format)),
        ("empty string", lambda r: sheet.write_string(r, 1, "")),
        ("text number", lambda r: sheet.write_string(r, 1, "00123")),
        ("spaces", lambda r: sheet.write_string(r, 1, "  G01 ")),
        ("formula", lambda r: sheet.write_formula(r, 1, "=2*3", None, 6)),
    ]
    for r, (kind, write) in enumerate(cases, start=1):
        sheet.write_string(r, 0, kind)
        write(r)
    workbook.close()

    values = {kind: value for kind, value in (values for _, values in all_rows(open_fact_file(path, sheet="规模明细")))}

    assert values == {
        "int": "123",
        "whole float": "1234567",
        "big whole float": "100000000000000000000",
        "float": "0.1",
        "negative float": "-1234.5678",
        "small float": "1.5e-05",
        "true": "true",
        "false": "false",
        "date": "2024-11-01",
        "midnight": "2024-11-30",
        "datetime": "2024-11-30 13:05:07",
        "time": "08:30:00",
        "empty string": None,
        "text number": "00123",
        "spaces": "  G01 ",
        "formula": "6",
    }


def test_xlsx_written_by_openpyxl_with_dates(tmp_path):
    path = tmp_path / "openpyxl.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "规模明细"
    sheet.append(["月度", "期末资产规模"])
    sheet.append([dt.datetime(2024, 11, 1), 12.5])
    sheet.append([202411, 3])
    workbook.save(path)

    assert all_rows(open_fact_file(path, sheet="规模明细")) == [(2, ("2024-11-01", "12.5")), (3, ("202411", "3"))]


def test_xlsx_empty_rows_in_the_middle_and_at_the_end_are_skipped(tmp_path):
    path = write_xlsx(
        tmp_path / "gaps.xlsx",
        {"规模明细": [["a", "b", "c"], ["1", "2", "3"], [], [None, "  ", None], ["4", None], [], [""]]},
    )

    fact = open_fact_file(path, sheet="规模明细")

    assert all_rows(fact) == [(2, ("1", "2", "3")), (5, ("4", None, None))]


def test_xlsx_row_longer_than_header_names_the_row(tmp_path):
    path = write_xlsx(tmp_path / "long.xlsx", {"规模明细": [["a", "b"], ["1", "2"], ["3", "4", None, "extra"]]})
    fact = open_fact_file(path, sheet="规模明细")

    with pytest.raises(FactFileError) as caught:
        all_rows(fact)

    assert str(caught.value) == "long.xlsx, sheet 规模明细, row 3: row has 4 values but the header has 2 columns"
    assert (caught.value.row, caught.value.sheet, caught.value.column) == (3, "规模明细", None)


def test_xlsx_missing_sheet_lists_available_sheets(big_workbook):
    with pytest.raises(FactFileError) as caught:
        open_fact_file(big_workbook, sheet="规模")
    assert str(caught.value) == "2024年11月规模明细.xlsx: no sheet named '规模'; sheets: '收入明细', '规模明细'"

    with pytest.raises(FactFileError, match=r"a sheet name is required .*sheets: '收入明细', '规模明细'"):
        open_fact_file(big_workbook)


def test_missing_required_columns_are_all_named(tmp_path):
    path = write_xlsx(tmp_path / "cols.xlsx", {"规模明细": [["月度", "机构", "其他"], ["202411", "x", "y"]]})

    with pytest.raises(FactFileError) as caught:
        open_fact_file(
            path, sheet="规模明细", aliases=RAW_ALIASES, required=["月度", "计划代码", "机构名称", "期末资产规模"]
        )

    assert str(caught.value) == (
        "cols.xlsx, sheet 规模明细, row 1: missing required columns 计划代码, 期末资产规模; "
        "columns found: 月度, 机构名称, 其他"
    )
    assert caught.value.row == 1 and caught.value.file == path


def test_duplicate_column_after_alias_mapping(tmp_path):
    path = write_xlsx(tmp_path / "dup.xlsx", {"规模明细": [["机构名称", "计划号", " 机构 "]]}, start_row=1, start_col=1)

    with pytest.raises(FactFileError) as caught:
        open_fact_file(path, sheet="规模明细", aliases=RAW_ALIASES)

    assert caught.value.column == "机构名称" and caught.value.row == 2
    assert str(caught.value) == (
        "dup.xlsx, sheet 规模明细, row 2, column 机构名称: duplicate column: header cells '机构名称' in column B "
        "and '机构' in column D both mean '机构名称'"
    )


def test_empty_header_cell_between_columns(tmp_path):
    path = write_xlsx(tmp_path / "hole.xlsx", {"规模明细": [["a", " ", "c"], ["1", "2", "3"]]})
    with pytest.raises(
        FactFileError, match=r"^hole.xlsx, sheet 规模明细, row 1: the header cell in column B is empty$"
    ):
        open_fact_file(path, sheet="规模明细")

    text = tmp_path / "hole.csv"
    text.write_text("a,b,,d\n1,2,3,4\n", encoding="utf-8")
    with pytest.raises(FactFileError, match=r"^hole.csv, row 1: the header cell in column 3 is empty$"):
        open_fact_file(text)


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), "月度,计划代码\n202411,P1\n".encode(), b""],
    ids=["random bytes", "renamed text file", "empty file"],
)
def test_corrupt_xlsx(tmp_path, content):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(content)

    with pytest.raises(FactFileError, match=r"^broken.xlsx: not a readable Excel workbook: \S"):
        open_fact_file(path, sheet="规模明细")


def test_zip_that_is_not_a_workbook(tmp_path):
    path = tmp_path / "zip.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")

    with pytest.raises(FactFileError, match=r"^zip.xlsx: not a readable Excel workbook: "):
        open_fact_file(path, sheet="规模明细")


def test_empty_sheet_has_no_header(tmp_path):
    path = write_xlsx(tmp_path / "empty.xlsx", {"规模明细": []})

    with pytest.raises(FactFileError, match=r"^empty.xlsx, sheet 规模明细: no header row"):
        open_fact_file(path, sheet="规模明细")


def test_unsupported_suffix_and_missing_file(tmp_path):
    legacy = tmp_path / "old.xls"
    legacy.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(FactFileError, match=r"^old.xls: unsupported file type '.xls'"):
        open_fact_file(legacy, sheet="规模明细")
    with pytest.raises(FactFileError, match=r"^missing.csv: file not found$"):
        open_fact_file(tmp_path / "missing.csv")


# --- CSV -----------------------------------------------------------------------------------------------------------


def test_utf8_csv_with_bom(tmp_path):
    path = write_csv(
        tmp_path / "bom.csv",
        [["月度", "机构", "期末资产规模"], ["2024年11月", "上海分公司", "1,234.50"]],
        encoding="utf-8-sig",
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")

    fact = open_fact_file(path, aliases=RAW_ALIASES, required=["月度"])

    assert fact.encoding == "utf-8" and fact.sheet is None and fact.header_row == 1
    assert fact.columns == ["月度", "机构名称", "期末资产规模"]
    assert all_rows(fact) == [(2, ("2024年11月", "上海分公司", "1,234.50"))]


def test_gbk_csv_detected_automatically(tmp_path):
    path = write_csv(
        tmp_path / "gbk.csv",
        [
            ["月度", "计划号", "机构", "客户名称"],
            ["202411", "P001", "北京分公司", "中国石油天然气集团"],
            ["202411", "", "总部", ""],
        ],
        encoding="gbk",
    )
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")

    fact = open_fact_file(path, aliases=RAW_ALIASES)

    assert fact.encoding == "gb18030"
    assert fact.columns == ["月度", "计划代码", "机构名称", "客户名称"]
    assert list(fact.chunks()) == [
        [("202411", "P001", "北京分公司", "中国石油天然气集团"), ("202411", None, "总部", None)]
    ]


def test_gbk_csv_read_as_utf8_names_the_row(tmp_path):
    header_gbk = write_csv(tmp_path / "gbk.csv", [["月度", "机构"], ["202411", "上海"]], encoding="gbk")
    with pytest.raises(FactFileError) as caught:
        open_fact_file(header_gbk, encoding="utf-8")
    assert caught.value.row == 1
    assert str(caught.value).startswith("gbk.csv, row 1: cannot decode byte(s) b'\\xd4' as utf-8: invalid")

    values_gbk = write_csv(
        tmp_path / "values.csv", [["month", "branch"], ["202411", "ok"], ["202411", "上海"]], encoding="gbk"
    )
    fact = open_fact_file(values_gbk, encoding="UTF8")
    assert fact.encoding == "utf-8"
    with pytest.raises(FactFileError) as caught:
        all_rows(fact)
    assert caught.value.row == 3
    assert str(caught.value).startswith("values.csv, row 3: cannot decode byte(s) ")
    assert "--encoding" in str(caught.value)


def test_late_invalid_utf8_detected_from_first_megabyte_fails_at_its_row(tmp_path):
    path = tmp_path / "late.csv"
    with open(path, "wb") as stream:
        stream.write("月度,计划代码,机构名称\n".encode())
        for i in range(1, 70_001):
            name = "上海分公司".encode("gbk" if i == 60_000 else "utf-8")  # data row 60,000 = line 60,001
            stream.write(f"202411,P{i:06d},".encode() + name + b"\n")
    data = path.read_bytes()
    assert data.index("上海分公司".encode("gbk")) > 1 << 20  # beyond what detection looks at

    fact = open_fact_file(path)
    assert fact.encoding == "utf-8"
    seen = []
    with pytest.raises(FactFileError) as caught:
        for chunk in fact.chunks_with_row_numbers(10_000):
            seen.extend(chunk)

    assert caught.value.row == 60_001
    message = str(caught.value)
    assert message.startswith("late.csv, row 60001: cannot decode byte(s) ")
    assert "detected as utf-8 from the first MB" in message and "pass --encoding" in message
    assert seen[-1] == (50_001, ("202411", "P050000", "上海分公司"))  # the complete chunks before it were delivered


def test_undetectable_encoding(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,b\n1,\xff\xfe\xff\n")

    with pytest.raises(
        FactFileError,
        match=r"^binary.csv: cannot detect the encoding: not utf-8 \(row 2: .*\) and "
        r"not gb18030 \(row 2: .*\); pass --encoding",
    ):
        open_fact_file(path)


def test_unknown_and_unsupported_encodings(tmp_path):
    path = write_csv(tmp_path / "a.csv", [["a"], ["1"]])
    with pytest.raises(FactFileError, match=r"^a.csv: unknown encoding 'klingon'$"):
        open_fact_file(path, encoding="klingon")
    with pytest.raises(FactFileError, match=r"^a.csv: encoding 'utf-16' is not supported"):
        open_fact_file(path, encoding="utf-16")


def test_csv_row_numbers_skip_empty_rows_and_pad_short_rows(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text(
        "\n"  # 1: blank line before the header
        "a,b,c\n"  # 2: header
        "1,2,3\n"  # 3
        "\n"  # 4: blank
        ",,\n"  # 5: only empty fields
        '4,"multi\nline",6\n'  # 6-7: one row with a quoted line break
        "7\n"  # 8: short row, padded
        "8,9,10,,\n"  # 9: trailing empty fields beyond the header are ignored
        "\n\n",
        encoding="utf-8",
    )

    fact = open_fact_file(path)

    assert fact.header_row == 2 and fact.columns == ["a", "b", "c"]
    assert all_rows(fact) == [
        (3, ("1", "2", "3")),
        (6, ("4", "multi\nline", "6")),
        (8, ("7", None, None)),
        (9, ("8", "9", "10")),
    ]


def test_csv_row_longer_than_header(tmp_path):
    path = write_csv(tmp_path / "long.csv", [["a", "b"], ["1", "2"], ["1", "2"], ["1", "2", "", "x"]])
    fact = open_fact_file(path)

    with pytest.raises(FactFileError) as caught:
        all_rows(fact)

    assert str(caught.value) == "long.csv, row 4: row has 4 values but the header has 2 columns"


def test_tab_separated_txt(tmp_path):
    path = write_csv(tmp_path / "facts.txt", [["月度", "计划号"], ["202411", "P,1"]], delimiter="\t")

    fact = open_fact_file(path, aliases=RAW_ALIASES)

    assert fact.columns == ["月度", "计划代码"]
    assert all_rows(fact) == [(2, ("202411", "P,1"))]


def test_empty_csv_has_no_header(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"\n \n")

    with pytest.raises(FactFileError, match=r"^empty.csv: no header row"):
        open_fact_file(path)


def test_header_changed_after_open_is_detected(tmp_path):
    path = write_csv(tmp_path / "moving.csv", [["a", "b"], ["1", "2"]])
    fact = open_fact_file(path)
    write_csv(path, [["a", "c"], ["1", "2"]])

    with pytest.raises(FactFileError, match=r"^moving.csv, row 1: the header changed since the file was opened$"):
        list(fact.chunks())


def test_200k_row_csv_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.csv"
    header = [
        "月度",
        "业务类型",
        "计划代码",
        "计划名称",
        "组合代码",
        "机构名称",
        "期初资产规模",
        "期末资产规模",
        "供款",
        "投资收益",
    ]
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        for i in range(200_000):
            writer.writerow(
                [
                    "202411",
                    "企年投资",
                    f"P{i:06d}",
                    f"计划{i}",
                    f"F{i:06d}",
                    "上海分公司",
                    f"{i * 3.5:.2f}",
                    f"{i * 4.25:.2f}",
                    str(i),
                    f"{i / 7:.4f}",
                ]
            )
    assert path.stat().st_size > 15 << 20

    tracemalloc.start()
    try:
        fact = open_fact_file(path, required=header)
        count = 0
        last = None
        for chunk in fact.chunks_with_row_numbers(10_000):
            assert len(chunk) <= 10_000
            count += len(chunk)
            last = chunk[-1]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 200_000
    assert last == (
        200_001,
        (
            "202411",
            "企年投资",
            "P199999",
            "计划199999",
            "F199999",
            "上海分公司",
            "699996.50",
            "849995.75",
            "199999",
            "28571.2857",
        ),
    )
    assert peak < 50 << 20, f"peak traced memory {peak / 2**20:.1f} MB"


# --- errors --------------------------------------------------------------------------------------------------------


def test_fact_file_error_is_one_line_and_picklable(tmp_path):
    error = FactFileError(
        tmp_path / "2024年11月规模明细.xlsx", "not a number:\n'abc'", sheet="规模明细", row=17, column="期末资产规模"
    )

    assert str(error) == "2024年11月规模明细.xlsx, sheet 规模明细, row 17, column 期末资产规模: not a number: 'abc'"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.file, copy.sheet, copy.row, copy.column, copy.reason, str(copy)) == (
        error.file,
        "规模明细",
        17,
        "期末资产规模",
        "not a number: 'abc'",
        str(error),
    )


# --- value helpers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("202411", dt.date(2024, 11, 1)),
        ("2024年11月", dt.date(2024, 11, 1)),
        ("2024年1月", dt.date(2024, 1, 1)),
        ("2024-11", dt.date(2024, 11, 1)),
        ("2024/11", dt.date(2024, 11, 1)),
        ("2024-3", dt.date(2024, 3, 1)),
        ("20241101", dt.date(2024, 11, 1)),
        ("20241130", dt.date(2024, 11, 1)),
        ("2024-11-01", dt.date(2024, 11, 1)),
        ("2024/11/15", dt.date(2024, 11, 1)),
        ("2024-11-01 00:00:00", dt.date(2024, 11, 1)),
        ("２０２４年１１月", dt.date(2024, 11, 1)),
        ("２０２４１２", dt.date(2024, 12, 1)),
        ("  202411\u3000", dt.date(2024, 11, 1)),
    ],
)
def test_parse_month_accepts(text, expected):
    assert parse_month(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("202413", "month 13 is not between 1 and 12"),
        ("2024-00", "month 0 is not between 1 and 12"),
        ("2024年13月", "month 13 is not between 1 and 12"),
        ("20240230", "day is out of range for month"),
        ("2024-11-01 13:05:00", "is not a month: expected"),
        ("2024-11/01", "is not a month: expected"),
        ("十一月", "is not a month: expected"),
        ("2024", "is not a month: expected"),
        ("24-11", "is not a month: expected"),
        ("180011", "year 1800 is out of range"),
        ("", "empty month"),
        ("   ", "empty month"),
    ],
)
def test_parse_month_rejects(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_month(text)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234567.89", Decimal("1234567.89")),
        ("1,234,567.89", Decimal("1234567.89")),
        ("１，２３４，５６７．８９", Decimal("1234567.89")),
        ("  42 ", Decimal("42")),
        ("-1,234.5", Decimal("-1234.5")),
        ("(1,234.5)", Decimal("-1234.5")),
        ("（１２３）", Decimal("-123")),
        ("+7", Decimal("7")),
        ("12.5%", Decimal("0.125")),
        ("-3%", Decimal("-0.03")),
        ("12.5％", Decimal("0.125")),
        (".5", Decimal("0.5")),
        ("1.5e-05", Decimal("0.000015")),
        ("0", Decimal("0")),
        ("-", None),
        ("—", None),
        ("－", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_parse_number_accepts(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("abc", "'abc' is not a number"),
        ("1,23", "'1,23' is not a number"),
        ("1,2345.6", "is not a number"),
        ("12-", "is not a number"),
        ("1.2.3", "is not a number"),
        ("(-5)", "both parentheses and a sign"),
        ("%", "is not a number"),
        ("¥100", "is not a number"),
        ("nan", "is not a number"),
        ("inf", "is not a number"),
        ("1 234", "is not a number"),
    ],
)
def test_parse_number_rejects(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_number(text)
    assert reason in str(caught.value)


def test_excel_row_numbers_if_calamine_starts_at_the_used_range():
    """python-calamine 0.9 yields the empty rows above the used range; a version that does not must number alike."""
    from pipeline.facts.readers import _excel_records

    class Sheet:  # used range B3:C4, iterated from its first row
        start = (2, 1)

        def iter_rows(self):
            return iter([["h1", "h2"], ["1", 2.0]])

        def to_python(self, skip_empty_area=True, nrows=None):
            return [["h1", "h2"], ["1", 2.0]][:nrows]

    class PaddedSheet(Sheet):
        def iter_rows(self):
            return iter([["", ""], ["", ""], ["h1", "h2"], ["1", 2.0]])

    expected = [(3, ["h1", "h2"]), (4, ["1", "2"])]
    assert list(_excel_records(Sheet())) == expected
    assert list(_excel_records(PaddedSheet())) == expected


def test_xlsx_numeric_cells_of_named_columns_stay_numbers(tmp_path):
    path = write_xlsx(
        tmp_path / "n.xlsx",
        {"规模明细": [["计划号", "期末资产规模", "年金账户号"], ["P1", 1234.5, 900000001], ["P2", "1,000", 7.0]]},
    )
    file = open_fact_file(path, sheet="规模明细")

    [chunk] = list(file.chunks_with_row_numbers(numbers=["期末资产规模"]))
    assert chunk == [(2, ("P1", 1234.5, "900000001")), (3, ("P2", "1,000", "7"))]
    assert isinstance(chunk[0][1][1], float)
    [as_text] = list(file.chunks())
    assert as_text[0] == ("P1", "1234.5", "900000001")
