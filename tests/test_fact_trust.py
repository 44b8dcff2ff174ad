"""Issue 10, fact path: no input may silently lose or corrupt facts, and bad input is named, never a traceback.

Real PostgreSQL, real files written here. Each test runs the service and, where an operator would, the
``process_facts`` / ``backfill`` commands. "Paths": a plain CSV is parsed by PostgreSQL itself (``csv``), a CSV that
COPY cannot type is read row by row (``csv-rows``: one number written with thousands separators), and ``xlsx``.
"""

from __future__ import annotations

import csv
import importlib
import io
import json

import pytest
from django.core.management import call_command
from django.db import connection

from pipeline.demo.facts import SCALE_COLUMNS
from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts import csv_parts
from pipeline.facts.readers import FactFileError
from pipeline.facts.service import process_fact_file
from pipeline.facts.staging import FactStager
from pipeline.models import FactBatch, FactKind, FactStatus, ScaleFact
from reference.models import AnnuityPlan, PortfolioPlan
from tests.facts_support import create_references, scale_row, write_csv, write_xlsx
from tests.test_facts import ConfigCopy

pytestmark = pytest.mark.django_db
DOMAIN = "annuity_performance"
PATHS = ["csv", "csv-rows", "xlsx"]


@pytest.fixture
def config(tmp_path, settings) -> ConfigCopy:
    copy = ConfigCopy(tmp_path / "config")
    settings.REFGOV_CONFIG_DIR = copy.directory
    return copy


@pytest.fixture
def refs(config):
    create_references()


@pytest.fixture
def read_row_by_row(monkeypatch) -> list[str]:
    """Records each file the stager had to read row by row (the fast path is PostgreSQL's own CSV parser)."""
    seen = []
    original = FactStager._copy

    def spy(self, cur, *, parse_numbers):
        seen.append(self.file.path.name)
        return original(self, cur, parse_numbers=parse_numbers)

    monkeypatch.setattr(FactStager, "_copy", spy)
    return seen


def staging_tables() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [csv_parts.STAGING_SCHEMA])
        return [t for (t,) in cur.fetchall()]


def process(path, **kwargs):
    return process_fact_file(domain=DOMAIN, path=path, **kwargs)


def command(name: str, *args: str) -> tuple[int, str, str]:
    """Run a management command as an operator would: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, "--domain", DOMAIN, *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def write_fact_file(tmp_path, kind: str, rows: list[dict], *, name: str = "规模明细", columns=None):
    """The rows as a file read by the path ``kind``; ``csv-rows`` writes the first row's 期末资产规模 with thousands
    separators, which COPY cannot type, so the whole file is read row by row."""
    if kind == "xlsx":
        return write_xlsx(
            tmp_path / f"{name}.xlsx", {"规模明细": rows}, columns={"规模明细": columns} if columns else None
        )
    if kind == "csv-rows":
        rows = [{**rows[0], "期末资产规模": "1,100.00"}, *rows[1:]] if rows else rows
    return write_csv(tmp_path / f"{name}.csv", rows, columns=columns)


def csv_lines(rows: list[dict], *, columns=None) -> list[str]:
    """Each row as one CSV line (with its line break), header first."""
    header = columns or SCALE_COLUMNS
    lines = []
    for row in [dict(zip(header, header, strict=True)), *rows]:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(["" if row.get(c) is None else row.get(c) for c in header])
        lines.append(buffer.getvalue())
    return lines


def month_rows(month: str = "202411", n: int = 6, **values) -> list[dict]:
    return [scale_row(月度=month, 客户名称=f"客户{i}", **values) for i in range(n)]


def scale_rows() -> list[tuple]:
    return sorted(ScaleFact.objects.values_list("source_row", "customer_name", "plan_id"))


# --- 1. a line that is only \. ---------------------------------------------------------------------------------------


def backslash_dot_file(tmp_path, name="reload.csv", *, line_ending="\n", at=4, last=""):
    """The month again: three rows, two rows and a new plan, and a line ``\\.`` before line ``at`` + 1 (the header
    is line 1); ``last``: the file's last line (its line break)."""
    rows = month_rows(n=3) + [scale_row(客户名称="after 1"), scale_row(客户名称="after 2", 计划号="N1001")]
    lines = csv_lines(rows)
    lines.insert(at, "\\." + line_ending)
    path = tmp_path / name
    path.write_bytes(("".join(lines) + last).encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("line_ending", "at", "last"),
    [("\n", 4, ""), ("\r\n", 4, ""), ("\n", 1, ""), ("\n", 6, ""), ("", 6, ""), ("\n", 6, "\n")],
    ids=["after-row-3", "crlf", "first-line", "last-line", "no-final-line-break", "then-an-empty-line"],
)
def test_a_backslash_dot_line_rejects_the_file_and_the_month_keeps_its_rows(refs, tmp_path, line_ending, at, last):
    process(write_csv(tmp_path / "month.csv", month_rows()))
    before = scale_rows()
    assert len(before) == 6

    # a last line \. without a line break is also a cut-off last record: either reason names the row
    reason = r"(.*\\\.|the last row has 1 of the header's 22 columns)"
    with pytest.raises(FactFileError, match=rf"reload.csv, row {at + 1}: {reason}"):
        process(backslash_dot_file(tmp_path, line_ending=line_ending, at=at, last=last))

    assert scale_rows() == before
    assert not AnnuityPlan.objects.filter(plan_code="N1001").exists()
    batch = FactBatch.objects.latest("pk")
    assert batch.status == FactStatus.REJECTED and f"row {at + 1}" in batch.message


def test_process_facts_command_rejects_a_file_with_a_backslash_dot_line(refs, tmp_path):
    code, out, err = command("process_facts", str(backslash_dot_file(tmp_path)))
    assert code == 1
    assert "1 of 1 files not loaded: reload.csv, row 5" in err and "Traceback" not in err
    assert ScaleFact.objects.count() == 0 and not AnnuityPlan.objects.filter(plan_code="N1001").exists()


@pytest.mark.django_db(transaction=True)
def test_a_backslash_dot_line_in_any_part_of_a_parallel_copy_rejects_the_file(config, tmp_path, settings):
    settings.REFGOV_FACT_PARALLEL_MIN_BYTES, settings.REFGOV_FACT_COPY_PARTS = 0, 3
    create_references()
    plans = [f"N2{i:03d}" if i % 50 == 49 else plan_code(1) for i in range(300)]
    lines = csv_lines([scale_row(客户名称=f"客户{i}", 计划号=plan) for i, plan in enumerate(plans)])
    lines.insert(251, "\\.\n")  # in the last part: only that part's COPY stops early
    path = tmp_path / "parts.csv"
    path.write_bytes("".join(lines).encode("utf-8"))
    assert len(csv_parts.record_ranges(path, len(lines[0].encode()), 3)) == 3
    before = staging_tables()

    with pytest.raises(FactFileError, match=r"parts.csv, row 252: .*\\\."):
        process(path)

    assert ScaleFact.objects.count() == 0 and not AnnuityPlan.objects.filter(plan_code__startswith="N2").exists()
    assert staging_tables() == before  # the parts copied are dropped


@pytest.mark.django_db(transaction=True)
def test_quoted_backslash_dot_lines_are_data_and_load_through_the_fast_parallel_path(
    config, tmp_path, settings, read_row_by_row
):
    settings.REFGOV_FACT_PARALLEL_MIN_BYTES, settings.REFGOV_FACT_COPY_PARTS = 0, 3
    create_references()
    names = {i: "第一行\n\\.\n第三行" if i % 40 == 7 else "\\." if i % 40 == 8 else f"计划{i}" for i in range(300)}
    path = write_csv(tmp_path / "quoted.csv", [scale_row(计划名称=names[i], 客户名称=f"客户{i}") for i in range(300)])
    assert b'"\xe7\xac\xac\xe4\xb8\x80\xe8\xa1\x8c\n\\.\n' in path.read_bytes()  # a quoted field holding a \. line

    result = process(path)

    assert read_row_by_row == []
    assert (result.batch.rows_read, result.batch.rows_loaded) == (300, 300)
    assert dict(ScaleFact.objects.values_list("customer_name", "plan_name")) == {
        f"客户{i}": n for i, n in names.items()
    }


@pytest.mark.parametrize("kind", ["csv", "csv-rows"])
def test_rows_read_is_the_files_true_record_count(refs, tmp_path, kind):
    rows = [scale_row(计划名称="两\n行" if i == 2 else f"计划{i}", 客户名称=f"客户{i}") for i in range(7)]
    result = process(write_fact_file(tmp_path, kind, rows))
    assert (result.batch.rows_read, result.batch.rows_loaded) == (7, 7)
    assert "read 7, loaded 7" in result.batch.message


# --- 2. references only, then facts ---------------------------------------------------------------------------------


def test_backfill_then_process_facts_loads_the_facts(refs, tmp_path):
    path = write_csv(tmp_path / "规模明细.csv", [scale_row(计划号="N3001"), scale_row(), scale_row()])

    code, out, err = command("backfill", str(path))
    assert code == 0 and ScaleFact.objects.count() == 0
    assert AnnuityPlan.objects.filter(plan_code="N3001").exists()

    code, out, err = command("process_facts", str(path), "--json")
    assert code == 0, err
    summary = json.loads(out)["files"][0]
    assert summary["status"] == FactStatus.LOADED and summary["rows_loaded"] == 3
    assert ScaleFact.objects.count() == 3
    assert ScaleFact.objects.filter(batch_id=summary["batch_id"]).count() == 3


def test_reference_runs_recorded_before_the_upgrade_are_marked_and_do_not_make_a_load_skip(refs, tmp_path):
    from django.apps import apps

    migration = importlib.import_module("pipeline.migrations.0010_factbatch_kind")
    path = write_csv(tmp_path / "规模明细.csv", [scale_row(), scale_row()])
    process(path, load_facts=False)
    FactBatch.objects.update(kind=FactKind.FACTS)  # as the upgrade finds a backfill run of before
    empty = FactBatch.objects.create(domain=DOMAIN, file_name="e.csv", status=FactStatus.LOADED, checksum="0" * 64)

    migration.mark_reference_runs(apps, None)

    assert FactBatch.objects.exclude(pk=empty.pk).get().kind == FactKind.REFERENCES
    assert FactBatch.objects.get(pk=empty.pk).kind == FactKind.FACTS
    assert process(path).skipped_as is None and ScaleFact.objects.count() == 2


def test_a_references_only_run_is_recorded_as_such_and_never_makes_a_load_skip(refs, tmp_path):
    path = write_xlsx(tmp_path / "规模明细.xlsx", {"规模明细": [scale_row(计划号="N3002"), scale_row()]})
    references = process(path, load_facts=False)
    assert references.batch.kind == FactKind.REFERENCES and references.batch.message.startswith("references only")

    loaded = process(path)

    assert loaded.skipped_as is None and loaded.batch.rows_loaded == 2 and ScaleFact.objects.count() == 2
    again = process(path)
    assert again.skipped_as == loaded.batch  # a second load of the same file is recognised


# --- 3. re-sending an older version ---------------------------------------------------------------------------------


def test_resending_an_older_version_loads_it_and_a_true_resend_names_the_batch_it_matched(refs, tmp_path):
    (tmp_path / "v1").mkdir(), (tmp_path / "v2").mkdir()
    v1 = write_csv(tmp_path / "v1/规模明细.csv", month_rows(n=3))
    v2 = write_csv(tmp_path / "v2/规模明细.csv", month_rows(n=2, 期末资产规模=5))
    process(v1)
    second = process(v2)
    assert ScaleFact.objects.count() == 2 and second.batch.rows_replaced == 3

    third = process(v1)

    assert third.skipped_as is None and third.batch.rows_replaced == 2
    assert set(ScaleFact.objects.values_list("batch_id", flat=True)) == {third.batch.pk}
    assert sorted(ScaleFact.objects.values_list("customer_name", flat=True)) == ["客户0", "客户1", "客户2"]

    resend = process(v1)
    assert resend.skipped_as == third.batch
    assert f"already loaded as batch #{third.batch.pk}" in resend.summary()["message"]
    code, out, err = command("process_facts", str(v1))
    assert code == 0 and f"skipped — already loaded as batch #{third.batch.pk}" in out
    assert FactBatch.objects.count() == 3


def test_a_resend_is_skipped_when_only_other_scopes_were_loaded_since(refs, tmp_path):
    november = write_csv(tmp_path / "11.csv", month_rows())
    first = process(november)
    process(write_csv(tmp_path / "12.csv", month_rows(month="202412")))
    process(write_csv(tmp_path / "11b.csv", month_rows(业务类型="企年受托")))  # same month, another scope

    again = process(november)

    assert again.skipped_as == first.batch
    assert ScaleFact.objects.filter(batch=first.batch).count() == 6


def test_a_resend_after_a_partial_replacement_of_its_scope_loads_again(refs, tmp_path):
    both = write_csv(tmp_path / "both.csv", month_rows(n=2) + month_rows(n=2, 业务类型="企年受托"))
    process(both)
    process(write_csv(tmp_path / "one.csv", month_rows(n=1, 业务类型="企年受托")))
    assert ScaleFact.objects.count() == 3

    again = process(both)

    assert again.skipped_as is None and ScaleFact.objects.count() == 4
    assert set(ScaleFact.objects.values_list("batch_id", flat=True)) == {again.batch.pk}


# --- 5. empty files and blank rows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PATHS)
def test_a_file_with_a_header_only_is_rejected_unless_empty_files_are_allowed(refs, tmp_path, kind):
    path = write_fact_file(tmp_path, kind, [])

    with pytest.raises(FactFileError, match=rf"{path.name}.*: no data rows"):
        process(path)
    assert FactBatch.objects.get().status == FactStatus.REJECTED

    allowed = process(path, allow_empty=True)
    assert (allowed.batch.status, allowed.batch.rows_read, allowed.batch.rows_loaded) == (FactStatus.LOADED, 0, 0)


def test_process_facts_rejects_an_empty_file_and_accepts_it_with_allow_empty(refs, tmp_path):
    path = write_csv(tmp_path / "规模明细.csv", [])
    blank = tmp_path / "blank.csv"
    blank.write_text("".join(csv_lines([])) + ",,,,,,,,,,,,,,,,,,,,,\n \u3000,,,\n\n", encoding="utf-8")

    code, out, err = command("process_facts", str(path), str(blank))
    assert code == 1 and "2 of 2 files not loaded: 规模明细.csv: no data rows" in err
    assert "blank.csv: rejected — blank.csv: no data rows" in out

    code, out, err = command("process_facts", str(path), "--allow-empty")
    assert code == 0 and "loaded — read 0, loaded 0" in out


BLANK = {c: None for c in SCALE_COLUMNS}
SPACES = {**BLANK, "月度": "  ", "计划名称": "\u3000", "客户名称": "\t", "机构": "\u00a0"}


@pytest.mark.parametrize("kind", PATHS)
def test_blank_rows_are_skipped_on_every_path_and_later_rows_keep_their_numbers(refs, tmp_path, kind, read_row_by_row):
    rows = [scale_row(客户名称="a"), BLANK, scale_row(客户名称="b"), SPACES, scale_row(客户名称="c"), BLANK]

    path = write_fact_file(tmp_path, kind, rows)
    result = process(path)

    assert (result.batch.rows_read, result.batch.rows_loaded) == (3, 3)
    assert [(r, c) for r, c, _ in scale_rows()] == [(2, "a"), (4, "b"), (6, "c")]
    assert set(read_row_by_row) == (set() if kind == "csv" else {path.name})

    bad = rows[:-1] + [scale_row(月度="2024年13月")]
    with pytest.raises(FactFileError, match=r"row 7, column 月度"):
        process(write_fact_file(tmp_path, kind, bad, name="bad"))


# --- 6. a key longer than its column --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PATHS)
@pytest.mark.parametrize("load_facts", [True, False], ids=["facts", "references"])
def test_a_key_longer_than_its_column_names_file_row_column_and_limit(refs, tmp_path, kind, load_facts):
    rows = [scale_row(), scale_row(计划号="N" * 300), scale_row()]
    path = write_fact_file(tmp_path, kind, rows)

    with pytest.raises(FactFileError) as info:
        process(path, load_facts=load_facts)

    sheet = ", sheet 规模明细" if kind == "xlsx" else ""
    assert str(info.value) == f"{path.name}{sheet}, row 3, column 计划代码: longer than 50 characters"
    assert ScaleFact.objects.count() == 0 and AnnuityPlan.objects.count() == 30
    assert FactBatch.objects.get().status == FactStatus.REJECTED


def test_a_text_holding_nul_rejects_the_file_naming_row_and_column(refs, tmp_path):
    path = write_fact_file(tmp_path, "csv", [scale_row(), scale_row(客户名称="客户\x00甲"), scale_row()])

    with pytest.raises(FactFileError) as info:
        process(path)

    assert (
        str(info.value)
        == f"{path.name}, row 3, column 客户名称: holds the character NUL (U+0000), which a text cannot hold"
    )
    assert ScaleFact.objects.count() == 0 and FactBatch.objects.get().status == FactStatus.REJECTED


@pytest.mark.parametrize("name", ["process_facts", "backfill"])
def test_the_commands_name_a_key_too_long_without_a_traceback(refs, tmp_path, name):
    path = write_csv(tmp_path / "规模明细.csv", [scale_row(组合代码="Q" * 60)])
    code, out, err = command(name, str(path))
    assert code == 1
    assert "规模明细.csv, row 2, column 组合代码: longer than 50 characters" in err and "Traceback" not in err


# --- 7. optional columns absent -------------------------------------------------------------------------------------

ABSENT = ["年化收益率", "当期收益率", "投资收益", "组合类型", "年金账户号", "机构", "company_id"]


@pytest.mark.parametrize("kind", PATHS)
def test_absent_optional_columns_load_as_null_on_every_path(refs, tmp_path, kind, read_row_by_row):
    columns = [c for c in SCALE_COLUMNS if c not in ABSENT]
    rows = [scale_row(客户名称="a"), scale_row(客户名称="b", 计划号="N4001")]

    path = write_fact_file(tmp_path, kind, rows, columns=columns)
    result = process(path)

    assert result.batch.rows_loaded == 2
    assert set(read_row_by_row) == (set() if kind == "csv" else {path.name})
    values = ScaleFact.objects.values_list(
        "annualised_return",
        "period_return",
        "investment_income",
        "portfolio_type",
        "account_no",
        "branch_name",
        "company_id",
        "branch_id",
    )
    assert set(values) == {(None, None, None, None, None, None, None, "G00")}
    assert sorted(ScaleFact.objects.values_list("customer_name", "closing_assets")) == [("a", 1100), ("b", 1100)]
    assert AnnuityPlan.objects.get(plan_code="N4001").company_id is None


def test_process_facts_loads_a_csv_without_optional_columns(refs, tmp_path):
    columns = [c for c in SCALE_COLUMNS if c not in ABSENT]
    code, out, err = command("process_facts", str(write_csv(tmp_path / "规模明细.csv", [scale_row()], columns=columns)))
    assert code == 0 and "loaded — read 1, loaded 1" in out, err
    assert ScaleFact.objects.get().annualised_return is None


# --- 8. numbers out of range ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PATHS)
@pytest.mark.parametrize(
    ("column", "value", "allowed"),
    [("期末资产规模", 1e30, "18 digits"), ("当期收益率", 12345678901.5, "10 digits"), ("供款", -1e18, "18 digits")],
)
def test_a_number_out_of_range_names_file_row_column_and_range(refs, tmp_path, kind, column, value, allowed):
    process(write_csv(tmp_path / "month.csv", month_rows()))
    before = scale_rows()
    rows = month_rows(n=3)
    rows[2] = {**rows[2], column: value if kind == "xlsx" else repr(value)}

    path = write_fact_file(tmp_path, kind, rows)
    with pytest.raises(FactFileError) as info:
        process(path)

    message = str(info.value)
    assert message.startswith(f"{path.name}{', sheet 规模明细' if kind == 'xlsx' else ''}, row 4, column {column}: ")
    assert "out of range" in message and allowed in message
    assert scale_rows() == before
    batch = FactBatch.objects.latest("pk")
    assert batch.status == FactStatus.REJECTED and message in batch.message


def test_process_facts_names_a_number_out_of_range_without_a_traceback(refs, tmp_path):
    path = write_csv(tmp_path / "规模明细.csv", [scale_row(), scale_row(期末资产规模="1e30")])
    code, out, err = command("process_facts", str(path))
    assert code == 1
    assert "规模明细.csv, row 3, column 期末资产规模: '1e30' is out of range" in err and "Traceback" not in err


# --- 19. config strings reach SQL as values -------------------------------------------------------------------------


def test_config_strings_with_percent_signs_and_quotes_are_values_not_sql(refs, tmp_path, config):
    def mutate(domain):
        plan = domain["foreign_keys"][0]["derive"]
        plan["管理资格"]["separator"] = "%s'%"
        plan["备注"]["template"] = "{yymm}_新建 100% '%(x)s'"
        domain["keys"]["placeholders"] += ["%", "N/A%s'"]
        domain["keys"]["temporary_company_id"] = "^(IN[A-Z2-7]{16}|TMP%.*)$"

    config.edit("domains/annuity_performance.yml", mutate)
    rows = [
        scale_row(计划号="N5001", 业务类型="企年受托", company_id="TMP%1", 组合代码="%"),
        scale_row(计划号="N5001", 业务类型="企年投资", company_id="TMP%2", 组合代码="N/A%s'"),
    ]
    process(write_csv(tmp_path / "规模明细.csv", rows))

    plan = AnnuityPlan.objects.get(plan_code="N5001")
    assert plan.qualification == "企年受托%s'%企年投资"
    assert plan.remark == "2411_新建 100% '%(x)s'"
    assert plan.company_id is None  # both ids match the temporary pattern
    assert ScaleFact.objects.filter(portfolio__isnull=True).count() == 2


def test_strip_prefix_is_a_literal_prefix_not_a_like_pattern(refs, tmp_path, config):
    config.edit("domains/annuity_performance.yml", lambda d: d["keys"].update(strip_prefix={"组合代码": "F_"}))
    rows = [
        scale_row(组合代码=f"F_{portfolio_code(2)}"),
        scale_row(组合代码=f"FX{portfolio_code(3)}"),
        scale_row(组合代码=f"f_{portfolio_code(4)}"),
    ]
    code, out, err = command("process_facts", str(write_csv(tmp_path / "规模明细.csv", rows)))

    assert code == 0, err
    assert sorted(ScaleFact.objects.values_list("portfolio_id", flat=True)) == sorted(
        [portfolio_code(2), f"FX{portfolio_code(3)}", portfolio_code(4)]
    )
    assert PortfolioPlan.objects.filter(portfolio_code=f"FX{portfolio_code(3)}").exists()
