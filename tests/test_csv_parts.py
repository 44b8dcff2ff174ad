"""A large plain CSV copied in parts on several connections: record boundaries, row numbers, fallback, clean-up."""

from __future__ import annotations

import csv
import io
import time

import psycopg
import pytest
from django.db import connection

from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset, plan_code
from pipeline.facts import csv_parts
from pipeline.facts.readers import FactFileError
from pipeline.facts.service import FactLoadError, process_fact_file
from pipeline.models import DerivedReference, FactBatch, FactStatus, IncomeFact, ScaleFact
from reference.models import KeyAlias
from tests.facts_support import create_references, scale_row, write_csv
from tests.legacy import edit_config

ROWS = 12_000


def staging_tables() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [csv_parts.STAGING_SCHEMA])
        return [t for (t,) in cur.fetchall()]


def records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_ranges_start_at_records_even_inside_quoted_line_breaks(tmp_path, parts):
    lines = [["月度", "计划名称"]] + [
        ["202411", f"名称{i}" + ('\n"第二行"\n' if i % 7 == 3 else "")] for i in range(400)
    ]
    path = tmp_path / "quoted.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(lines)
    data = path.read_bytes()
    body = data.index(b"\n") + 1

    ranges = csv_parts.record_ranges(path, body, parts)

    assert len(ranges) == parts
    assert ranges[0][0] == body and ranges[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous, nothing lost or read twice
    pieces = [records(data[a:b]) for a, b in ranges]
    assert all(pieces) and sum(pieces, []) == lines[1:]  # every part parses into whole records


def test_a_file_without_a_later_line_break_stays_one_range(tmp_path):
    path = tmp_path / "one.csv"
    path.write_bytes(b"a,b\n" + b"x" * 1000)
    assert csv_parts.record_ranges(path, 4, 2) == [(4, 1004)]


copied_parts: list[int] = []


@pytest.fixture
def parallel(config_copy, settings, monkeypatch):
    """Every CSV is copied in three parts, however small; references committed (transactional tests)."""
    settings.REFGOV_FACT_PARALLEL_MIN_BYTES = 0
    settings.REFGOV_FACT_COPY_PARTS = 3
    copy_part = csv_parts.copy_part

    def counted(token, index, *args):
        copied_parts.append(index)
        return copy_part(token, index, *args)

    copied_parts.clear()
    monkeypatch.setattr(csv_parts, "copy_part", counted)
    create_references()
    return config_copy


def big_csv(
    tmp_path, *, changes: dict[int, dict] | None = None, multiline: bool = True, encoding: str = "utf-8"
) -> tuple:
    """ROWS rows; every 1,000th row has a new plan (row number = index + 2); some names span lines."""
    rows = []
    for i in range(ROWS):
        row = scale_row(计划名称=f"计划\n第{i}行" if multiline and i % 500 == 0 else f"计划{i}")
        if i % 1000 == 999:
            row.update(计划号=f"N7{i // 1000:03d}")
        row.update((changes or {}).get(i, {}))
        rows.append(row)
    return write_csv(tmp_path / "parts.csv", rows, encoding=encoding), rows


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])  # neither has '"' or a line break inside a character
@pytest.mark.django_db(transaction=True)
def test_a_csv_copied_in_parts_loads_every_row_with_its_own_row_number(parallel, tmp_path, encoding):
    path, rows = big_csv(tmp_path, encoding=encoding)
    dry = process_fact_file(domain="annuity_performance", path=path, dry_run=True)
    assert dry.batch.rows_read == ROWS and ScaleFact.objects.count() == 0 and staging_tables() == []

    result = process_fact_file(domain="annuity_performance", path=path)

    assert sorted(copied_parts) == [1, 1, 2, 2]  # the dry run and the load, two worker parts each
    assert result.batch.rows_read == ROWS and ScaleFact.objects.count() == ROWS
    assert sorted(ScaleFact.objects.values_list("source_row", flat=True)) == list(range(2, ROWS + 2))
    assert ScaleFact.objects.get(source_row=2 + 500).plan_name == "计划\n第500行"  # a record spanning lines
    assert ScaleFact.objects.get(source_row=2 + 11_998).plan_name == "计划11998"  # the last part
    for i in range(999, ROWS, 1000):
        provenance = DerivedReference.objects.get(table="年金计划", key=f"N7{i // 1000:03d}")
        assert provenance.row_numbers == [i + 2] and provenance.fact_rows == 1
    assert staging_tables() == []  # dropped with the load's transaction


@pytest.mark.django_db(transaction=True)
def test_each_part_counts_its_own_months_and_a_blank_row_or_bad_month_in_any_part_is_found(parallel, tmp_path):
    rows = [scale_row(客户名称=f"客户{i}", 月度="202411" if i % 3 else "2024-11") for i in range(3000)]
    rows[2500] = dict.fromkeys(rows[0])  # a blank row, in the last part
    path = write_csv(tmp_path / "months.csv", rows)

    result = process_fact_file(domain="annuity_performance", path=path)

    assert sorted(copied_parts) == [1, 2]
    assert (result.batch.rows_read, result.batch.rows_loaded, result.batch.periods) == (2999, 2999, ["2024-11-01"])
    assert not ScaleFact.objects.filter(source_row=2502).exists() and ScaleFact.objects.filter(source_row=3001).exists()

    rows[2500] = scale_row()  # no blank row: the spellings the parts counted are used as they are
    rows[2900] = rows[2700] = scale_row(月度="2024年13月")  # row 2702 the first of its spelling, in the last part
    with pytest.raises(FactFileError, match=r"months.csv, row 2702, column 月度"):
        process_fact_file(domain="annuity_performance", path=write_csv(tmp_path / "months.csv", rows))
    assert ScaleFact.objects.count() == 2999 and staging_tables() == []


@pytest.mark.django_db(transaction=True)
def test_merged_keys_are_resolved_in_every_part_and_counted_once(parallel, tmp_path):
    """Each worker resolves the merged keys of its own part (and sets its unknown keys aside) while this connection
    does its own: the batch counts every resolved row once, and no row keeps a merged-away key."""
    KeyAlias.objects.create(table="年金计划", alias="P9999", canonical=plan_code(1))
    changes = {i: {"计划号": "P9999"} for i in range(3, ROWS, 997)}  # in all three parts
    path, _ = big_csv(tmp_path, changes=changes)

    result = process_fact_file(domain="annuity_performance", path=path)

    assert sorted(copied_parts) == [1, 2]
    assert result.tables["年金计划"].aliased_rows == len(changes)
    assert f"merged keys resolved: 年金计划 {len(changes)} rows" in result.batch.message
    assert not ScaleFact.objects.filter(plan_id="P9999").exists()
    assert ScaleFact.objects.filter(source_row__in=[i + 2 for i in changes], plan_id=plan_code(1)).count() == len(
        changes
    )
    assert not DerivedReference.objects.filter(key="P9999").exists()  # resolved before the unknown keys were found
    assert staging_tables() == []


@pytest.mark.django_db(transaction=True)
def test_a_value_too_long_in_a_workers_part_is_named_by_row_and_column_and_loads_nothing(parallel, tmp_path):
    """A worker's part table has the fact table's column types: the value fails there, on the worker's connection,
    and the load still names the row and column."""
    path, _ = big_csv(tmp_path, changes={ROWS - 7: {"组合代码": "X" * 51}})

    with pytest.raises(FactFileError, match=rf"parts.csv, row {ROWS - 7 + 2}, column 组合代码: longer than 50"):
        process_fact_file(domain="annuity_performance", path=path)

    assert sorted(copied_parts) == [1, 2]
    assert ScaleFact.objects.count() == 0 and not DerivedReference.objects.exists()
    assert FactBatch.objects.get().status == FactStatus.REJECTED
    assert staging_tables() == []


@pytest.mark.django_db(transaction=True)
def test_a_parts_rows_are_appended_with_every_value_in_its_column(parallel, tmp_path):
    """A worker's part is appended to the month as it is stored: each value lands in its own column, ids are the
    fact table's own and unique, every row carries the batch."""
    changes = {i: {"客户名称": f"客户{i}", "组合名称": f"组合{i}", "期末资产规模": f"{i}.25"} for i in range(ROWS)}
    path, rows = big_csv(tmp_path, changes=changes, multiline=False)

    batch = process_fact_file(domain="annuity_performance", path=path).batch

    loaded = {
        f.source_row: f
        for f in ScaleFact.objects.filter(source_row__gt=2 + ROWS * 2 // 3)  # the last third: workers copied it
    }
    assert len(loaded) > 3000
    for row_number, fact in loaded.items():
        source = rows[row_number - 2]
        assert (fact.plan_name, fact.customer_name, fact.portfolio_name, fact.portfolio_id, fact.batch_id) == (
            source["计划名称"],
            source["客户名称"],
            source["组合名称"],
            source["组合代码"],
            batch.pk,
        )
        assert str(fact.closing_assets) == source["期末资产规模"]
    ids = list(ScaleFact.objects.values_list("id", flat=True))
    assert len(set(ids)) == ROWS
    with connection.cursor() as cur:
        cur.execute('SELECT last_value FROM business."规模明细_id_seq"')
        assert max(ids) <= cur.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_an_income_file_in_parts_loads_the_same_rows_as_in_one_piece(parallel, tmp_path, settings):
    """The parts' tables take their columns from the domain's own fact table (收入明细 has other columns)."""
    book = FactWorkbook(
        month="202411", scale_rows=0, income_rows=6_000, legacy=LegacyDataset(plans=300, portfolios=400)
    )
    path = book.write_csv(tmp_path / "202411_收入明细.csv", kind="收入明细")
    fields = [f.attname for f in IncomeFact._meta.concrete_fields if f.attname not in {"id", "batch_id"}]

    def loaded() -> list[tuple]:
        return sorted(IncomeFact.objects.values_list(*fields))

    in_parts = process_fact_file(domain="annuity_income", path=path)
    assert sorted(copied_parts) == [1, 2] and in_parts.batch.rows_loaded == 6_000
    rows_in_parts = loaded()

    settings.REFGOV_FACT_PARALLEL_MIN_BYTES = 1 << 40
    whole = process_fact_file(domain="annuity_income", path=path, force=True)

    assert sorted(copied_parts) == [1, 2] and whole.batch.rows_replaced == 6_000
    assert loaded() == rows_in_parts
    assert len({r[fields.index("source_row")] for r in rows_in_parts}) == 6_000
    assert staging_tables() == []


@pytest.mark.django_db(transaction=True)
def test_a_part_postgresql_cannot_parse_falls_back_to_reading_row_by_row(parallel, tmp_path):
    # only in the last part; no line breaks in values (read row by row, a row is numbered by its first line)
    path, _ = big_csv(tmp_path, changes={ROWS - 5: {"期末资产规模": "1,234,567.50"}}, multiline=False)

    result = process_fact_file(domain="annuity_performance", path=path)

    assert result.batch.rows_loaded == ROWS
    assert ScaleFact.objects.get(source_row=ROWS - 5 + 2).closing_assets == 1234567.50
    assert staging_tables() == []


@pytest.mark.django_db(transaction=True)
def test_a_refused_load_leaves_no_part_tables_and_no_rows(parallel, tmp_path):
    edit_config(parallel, lambda d: d.update(strategy="preload_only"))
    path, _ = big_csv(tmp_path)

    with pytest.raises(FactLoadError, match=r"12 unknown keys .*N7000 \(rows 1001\)"):
        process_fact_file(domain="annuity_performance", path=path)

    assert ScaleFact.objects.count() == 0
    assert staging_tables() == []


@pytest.mark.django_db(transaction=True)
def test_part_tables_left_by_a_crashed_load_are_swept_once_stale(parallel, tmp_path):
    stale, recent = (
        f"fact_{int(time.time()) - csv_parts.STALE_AFTER_SECONDS - 60}_dead_1",
        f"fact_{int(time.time())}_live_1",
    )
    with connection.cursor() as cur:
        for name in (stale, recent):
            cur.execute(f'CREATE UNLOGGED TABLE "{csv_parts.STAGING_SCHEMA}"."{name}" (x int)')
    path, _ = big_csv(tmp_path)

    assert process_fact_file(domain="annuity_performance", path=path).batch.status == FactStatus.LOADED

    assert staging_tables() == [recent]  # a recent one may belong to a load still running


@pytest.mark.django_db
def test_small_files_are_copied_in_one_piece(config_copy, tmp_path, settings, monkeypatch):
    settings.REFGOV_FACT_PARALLEL_MIN_BYTES = 32 << 20
    create_references()

    def no_parts(*args, **kwargs):
        raise AssertionError("a small file needs no worker connection")

    monkeypatch.setattr(csv_parts, "copy_part", no_parts)
    result = process_fact_file(domain="annuity_performance", path=write_csv(tmp_path / "s.csv", [scale_row()] * 3))
    assert result.batch.rows_loaded == 3 and ScaleFact.objects.count() == 3


def test_a_worker_connection_reaches_the_same_database():
    with csv_parts.worker_connection() as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == connection.settings_dict["NAME"]
        assert isinstance(conn, psycopg.Connection) and conn.autocommit


def test_records_are_counted_as_postgresql_delimits_them_whatever_the_blocks(tmp_path):
    """The count a COPY is checked against: line breaks outside quotes (doubled quotes, quoted line breaks, \\r\\n,
    a last line without a line break), the same for any cut into blocks."""
    rows = [
        [
            "202411",
            f"名称{i}" + ('\n"第二行"' if i % 5 == 1 else "") + ("\\.\n" if i % 7 == 2 else ""),
            'a""b' * (i % 3),
        ]
        for i in range(60)
    ]
    for terminator, tail in (("\n", b""), ("\r\n", b""), ("\n", b"last,row,x")):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=terminator).writerows(rows)
        data = buffer.getvalue().encode("utf-8") + tail
        expected = len(records(data.replace(b"\r\n", b"\n")))
        for size in (1, 2, 3, 7, 64, len(data)):
            counter = csv_parts.RecordCounter()
            for at in range(0, len(data), size):
                counter.feed(data[at : at + size])
            assert counter.records == expected == 60 + bool(tail), (terminator, size)
