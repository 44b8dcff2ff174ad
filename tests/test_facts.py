"""Phases 2+3 on real files and real PostgreSQL: staging, key normalisation, auto-derive, load, strategies."""

from __future__ import annotations

import io
import json
import shutil
import threading
from collections import Counter

import psycopg
import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection, connections

from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset, plan_code, portfolio_code
from pipeline.facts import service
from pipeline.facts.readers import FactFileError
from pipeline.facts.service import FactLoadError, process_fact_file
from pipeline.models import DerivedReference, FactBatch, FactStatus, IncomeFact, ScaleFact
from reference.models import AnnuityPlan, Organization, PortfolioPlan, Source
from tests.facts_support import create_references, scale_row, write_csv, write_xlsx

pytestmark = pytest.mark.django_db


class ConfigCopy:
    """A copy of the real config directory; ``edit(file, mutate)`` changes one of its YAML files."""

    def __init__(self, directory):
        self.directory = directory
        shutil.copytree(django_settings.BASE_DIR / "config", directory)

    def edit(self, relative: str, mutate) -> None:
        path = self.directory / relative
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        mutate(data)
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
def config(tmp_path, settings) -> ConfigCopy:
    copy = ConfigCopy(tmp_path / "config")
    settings.REFGOV_CONFIG_DIR = copy.directory
    return copy


@pytest.fixture
def refs(config):
    create_references()


def process(path, domain="annuity_performance", **kwargs):
    return process_fact_file(domain=domain, path=path, **kwargs)


def test_demo_workbook_loads_every_row_and_derives_exactly_the_new_keys(refs, tmp_path):
    dataset = LegacyDataset(plans=30, portfolios=40)
    book = FactWorkbook(month="202411", scale_rows=12_000, income_rows=3_000, legacy=dataset)
    path = book.write(tmp_path / "202411_年金业务明细.xlsx")
    expected_new_plans = sorted({r[3].strip() for r in book.rows("规模明细") if r[3].strip().startswith("N")})

    result = process(path)

    batch = result.batch
    assert (batch.status, batch.rows_read, batch.rows_loaded) == (FactStatus.LOADED, 12_000, 12_000)
    assert ScaleFact.objects.count() == 12_000
    assert (
        sorted(AnnuityPlan.objects.filter(source=Source.AUTO_DERIVED).values_list("plan_code", flat=True))
        == expected_new_plans
    )
    assert batch.new_references["年金计划"] == len(expected_new_plans)
    assert AnnuityPlan.objects.count() == 30 + len(expected_new_plans)  # dirty spellings resolved to known plans
    assert not ScaleFact.objects.filter(plan__isnull=True).exists()
    assert ScaleFact.objects.filter(portfolio__isnull=True).count() == sum(
        1 for r in book.rows("规模明细") if r[6] == "(空白)"
    )
    provenance = DerivedReference.objects.get(table="年金计划", key=expected_new_plans[0])
    assert provenance.batch == batch and provenance.file_name == path.name and provenance.sheet == "规模明细"
    assert provenance.fact_rows == ScaleFact.objects.filter(plan_id=expected_new_plans[0]).count()
    assert provenance.row_numbers[0] >= 2

    with connection.cursor() as cur:
        cur.execute(
            "SELECT _source, COUNT(*) as record_count, "
            "SUM(CASE WHEN _needs_review THEN 1 ELSE 0 END) as pending_review "
            'FROM "business"."年金计划" GROUP BY _source'
        )
        assert dict((s, (n, p)) for s, n, p in cur.fetchall()) == {
            "authoritative": (30, 0),
            "auto_derived": (len(expected_new_plans), len(expected_new_plans)),
        }


def test_every_derivation_rule(refs, tmp_path, config):
    config.edit(
        "domains/annuity_performance.yml",
        lambda d: d["foreign_keys"][0]["derive"].update({"计划状态": {"rule": "constant", "value": "待确认"}}),
    )
    rows = [
        scale_row(
            计划号="N0001",
            计划名称="新计划",
            计划类型="集合计划",
            客户名称="小客户",
            期末资产规模=10,
            业务类型="职年投资",
            组合代码="QTAN0001",
            机构="上海分公司",
            company_id="INABCDEFGHIJKLMNOP",
        ),
        scale_row(
            计划号="N0001",
            计划名称="新计划（全称很长的名字）",
            计划类型="单一计划",
            客户名称="大客户",
            期末资产规模=99999,
            业务类型="企年投资",
            组合代码="QTAN0002",
            机构="北京分公司",
            company_id="INABCDEFGHIJKLMNOQ",
        ),
        scale_row(
            计划号="N0001",
            计划名称="新计划",
            客户名称=None,
            期末资产规模=500,
            业务类型="企年受托",
            组合代码="QTAN0002",
            company_id="698765432",
        ),
    ]
    process(write_xlsx(tmp_path / "f.xlsx", {"规模明细": rows}))

    plan = AnnuityPlan.objects.get(plan_code="N0001")
    assert plan.plan_type == "集合计划"  # first
    assert plan.customer_name == "大客户"  # max_by 期末资产规模
    assert plan.lead_branch_code == "G01" and plan.lead_branch == "北京分公司"  # max_by over a derived column
    assert plan.company_id == "698765432"  # temporary IN… ids are not values
    assert plan.qualification == "企年受托+企年投资+职年投资"  # concat_distinct in business order
    assert plan.portfolio_count == 2  # count_distinct
    assert plan.remark == "2411_新建"  # template
    assert plan.status == "待确认"  # constant
    assert plan.short_name == "新计划"  # function most_frequent
    assert plan.full_name == "新计划（全称很长的名字）"  # function longest
    assert (plan.source, plan.needs_review, plan.derived_from_domain) == (
        Source.AUTO_DERIVED,
        True,
        "annuity_performance",
    )
    assert plan.derived_at is not None


def test_dirty_keys_resolve_to_the_clean_key_and_placeholders_never_become_references(refs, tmp_path):
    clean_plan, clean_portfolio = plan_code(2), portfolio_code(2)
    dirty = [
        scale_row(计划号=f"  {clean_plan.lower()} ", 组合代码=f"F{clean_portfolio}"),
        scale_row(
            计划号=clean_plan.translate(str.maketrans("0123456789PZ", "０１２３４５６７８９ＰＺ")),
            组合代码=clean_portfolio.lower(),
        ),
        scale_row(计划号=clean_plan, 组合代码="(空白)"),
        scale_row(计划号=clean_plan, 组合代码="0"),
        scale_row(计划号=clean_plan, 组合代码=None),
    ]
    result = process(write_xlsx(tmp_path / "dirty.xlsx", {"规模明细": dirty}))

    assert result.batch.new_references == {"年金计划": 0, "组合计划": 0, "产品线": 0, "组织架构": 0}
    assert set(ScaleFact.objects.values_list("plan_id", flat=True)) == {clean_plan}
    assert (
        list(ScaleFact.objects.exclude(portfolio=None).values_list("portfolio_id", flat=True)) == [clean_portfolio] * 2
    )
    assert ScaleFact.objects.filter(portfolio=None).count() == 3
    assert not PortfolioPlan.objects.filter(portfolio_code__in=["(空白)", "0", ""]).exists()


def test_new_portfolio_of_a_new_plan_creates_both_parent_first(refs, tmp_path):
    process(
        write_xlsx(
            tmp_path / "f.xlsx", {"规模明细": [scale_row(计划号="N0100", 组合代码="XNP0100", 组合名称="新组合")]}
        )
    )

    portfolio = PortfolioPlan.objects.get(portfolio_code="XNP0100")
    assert portfolio.plan_id == "N0100" and portfolio.plan.source == Source.AUTO_DERIVED
    assert portfolio.name == "新组合" and portfolio.source == Source.AUTO_DERIVED


def test_missing_columns_are_derived_from_reference_tables(refs, tmp_path):
    """Raw files may lack 产品线代码 (from 业务类型 via 产品线) and 机构代码 (from 机构名称 via 组织架构, unknown
    → G00)."""
    rows = [scale_row(业务类型="职年受托", 机构="广东分公司"), scale_row(业务类型="企年投资", 机构="火星分公司")]
    process(write_xlsx(tmp_path / "f.xlsx", {"规模明细": rows}))

    assert set(ScaleFact.objects.values_list("branch_name", "product_line_id", "branch_id")) == {
        ("广东分公司", "PL204", "G19"),
        ("火星分公司", "PL201", "G00"),
    }
    assert not Organization.objects.filter(source=Source.AUTO_DERIVED).exists()


def test_reloading_the_same_scope_replaces_and_the_same_file_is_recognised(refs, tmp_path):
    path = write_xlsx(tmp_path / "m.xlsx", {"规模明细": [scale_row(), scale_row(), scale_row(业务类型="企年受托")]})
    first = process(path)
    again = process(path)

    assert again.skipped_as == first.batch
    assert ScaleFact.objects.count() == 3 and FactBatch.objects.count() == 1

    forced = process(path, force=True)
    assert (forced.batch.rows_replaced, forced.batch.rows_loaded) == (3, 3)
    assert ScaleFact.objects.count() == 3
    assert set(ScaleFact.objects.values_list("batch_id", flat=True)) == {forced.batch.pk}

    other_month = write_xlsx(tmp_path / "n.xlsx", {"规模明细": [scale_row(月度="2024年12月")]})
    process(other_month)
    assert ScaleFact.objects.count() == 4  # another month is another scope


def test_preload_only_blocks_and_lists_every_unknown_key_with_rows(refs, tmp_path, config):
    config.edit("reference_management.yml", lambda d: d.update(strategy="preload_only"))
    rows = [scale_row(), scale_row(计划号="N0007", 组合代码="XNP0007"), scale_row(计划号="N0008")]

    with pytest.raises(FactLoadError) as info:
        process(write_xlsx(tmp_path / "b.xlsx", {"规模明细": rows}))

    message = str(info.value)
    assert "3 unknown keys (preload_only strategy), nothing loaded" in message
    assert "年金计划 N0007 (rows 3)" in message and "年金计划 N0008 (rows 4)" in message
    assert "组合计划 XNP0007 (rows 3)" in message
    assert ScaleFact.objects.count() == 0 and AnnuityPlan.objects.count() == 30
    batch = FactBatch.objects.get()
    assert batch.status == FactStatus.REJECTED and "N0008" in batch.message


def test_backfill_disabled_blocks_like_preload_only(refs, tmp_path, config):
    config.edit("reference_management.yml", lambda d: d["backfill"].update(enabled=False))
    with pytest.raises(FactLoadError, match="backfill disabled"):
        process(write_xlsx(tmp_path / "b.xlsx", {"规模明细": [scale_row(计划号="N0009")]}))


def test_gbk_csv_with_thousands_separators(refs, tmp_path):
    rows = [
        scale_row(
            月度="2024-11", 客户名称="中文客户（甲）", 期末资产规模="1,234,567.89", 供款="(1,000)", 当期收益率="1.5%"
        )
    ]
    path = write_csv(tmp_path / "规模明细.csv", rows, encoding="gbk")

    process(path)

    fact = ScaleFact.objects.get()
    assert fact.customer_name == "中文客户（甲）"
    assert str(fact.closing_assets) == "1234567.89" and str(fact.contribution) == "-1000.00"
    assert float(fact.period_return) == pytest.approx(0.015)
    assert fact.month.isoformat() == "2024-11-01"


def test_a_bad_number_rejects_the_file_naming_row_and_column(refs, tmp_path):
    rows = [scale_row(), scale_row(), scale_row(期末资产规模="一百万")]
    with pytest.raises(FactFileError) as info:
        process(write_xlsx(tmp_path / "bad.xlsx", {"规模明细": rows}))
    assert str(info.value).startswith("bad.xlsx, sheet 规模明细, row 4, column 期末资产规模:")
    assert ScaleFact.objects.count() == 0


def test_a_bad_month_and_a_missing_column_are_rejected(refs, tmp_path):
    with pytest.raises(FactFileError, match=r"row 3, column 月度"):
        process(write_xlsx(tmp_path / "m.xlsx", {"规模明细": [scale_row(), scale_row(月度="2024年13月")]}))
    header = [c for c in write_xlsx.__globals__["SCALE_COLUMNS"] if c != "计划号"]
    with pytest.raises(FactFileError, match="计划代码"):
        process(write_xlsx(tmp_path / "c.xlsx", {"规模明细": [scale_row()]}, columns={"规模明细": header}))
    assert FactBatch.objects.filter(status=FactStatus.REJECTED).count() == 2


@pytest.mark.parametrize("days", [3, 40])
def test_every_spelling_of_a_month_maps_to_its_month(refs, tmp_path, days):
    """A few spellings map through a CASE expression, many through a join: the same months either way."""
    from pipeline.facts.staging import CASE_MONTHS

    assert (days > CASE_MONTHS) == (days == 40)
    spellings = [f"2024-{11 + d // 30:02d}-{1 + d % 30:02d}" for d in range(days)] + ["2024年11月", " 202411 "]
    rows = [scale_row(月度=m, 计划类型=f"类型{i}") for i, m in enumerate(spellings)]
    process(write_xlsx(tmp_path / "months.xlsx", {"规模明细": rows}))
    months = Counter(str(m) for m in ScaleFact.objects.values_list("month", flat=True))
    assert months == Counter(f"2024-{11 + d // 30:02d}-01" for d in range(days)) + Counter({"2024-11-01": 2})


def test_a_month_with_a_quote_is_reported_not_injected(refs, tmp_path):
    with pytest.raises(FactFileError, match=r"row 3, column 月度: \"2024'11\" is not a month"):
        process(write_xlsx(tmp_path / "q.xlsx", {"规模明细": [scale_row(), scale_row(月度="2024'11")]}))


def test_a_file_with_a_header_only_is_rejected_and_loads_nothing_unless_allowed(refs, tmp_path):
    """Issue 10: an empty monthly file is almost always an export error (see also tests/test_fact_trust.py)."""
    with pytest.raises(FactFileError, match=r"^empty.csv: no data rows"):
        process(write_csv(tmp_path / "empty.csv", []))
    assert FactBatch.objects.get().status == FactStatus.REJECTED
    result = process(write_csv(tmp_path / "empty.csv", []), allow_empty=True)
    assert (result.batch.status, result.batch.rows_read, result.batch.rows_loaded) == (FactStatus.LOADED, 0, 0)


def test_text_with_backslashes_tabs_and_line_breaks_arrives_unchanged(refs, tmp_path):
    """Text read in Python reaches PostgreSQL through COPY: escapes round-trip, ``\\N`` text is not NULL."""
    names = ["a\\b", "制表\t符", "换\n行", "回\r车", "\\N", "尾\\", "普通"]
    rows = [
        scale_row(计划名称=name, 客户名称=None if i % 2 else "客户", 计划类型=f"类型{i}")
        for i, name in enumerate(names)
    ]
    process(write_xlsx(tmp_path / "escapes.xlsx", {"规模明细": rows}))
    loaded = dict(ScaleFact.objects.values_list("plan_type", "plan_name"))
    assert loaded == {f"类型{i}": name for i, name in enumerate(names)}
    assert ScaleFact.objects.filter(customer_name__isnull=True).count() == 3


def test_a_corrupt_file_is_rejected_and_recorded(refs, tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not really a workbook")
    with pytest.raises(FactFileError, match="broken.xlsx"):
        process(path)
    batch = FactBatch.objects.get()
    assert batch.status == FactStatus.REJECTED and "broken.xlsx" in batch.message


def test_a_failure_in_the_middle_leaves_no_facts_and_no_derived_rows(refs, tmp_path, monkeypatch):
    original = service._place_months  # the last step: facts and derived rows are written by then

    def derive_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        assert ScaleFact.objects.count() == 1 and AnnuityPlan.objects.filter(plan_code="N0500").exists()
        raise psycopg.errors.DiskFull("could not extend file")

    monkeypatch.setattr(service, "_place_months", derive_then_fail)
    with pytest.raises(psycopg.errors.DiskFull):
        process(write_xlsx(tmp_path / "f.xlsx", {"规模明细": [scale_row(计划号="N0500", 组合代码="XNP0500")]}))

    assert ScaleFact.objects.count() == 0
    assert not AnnuityPlan.objects.filter(plan_code="N0500").exists()
    assert not DerivedReference.objects.exists()
    batch = FactBatch.objects.get()
    assert batch.status == FactStatus.FAILED and "could not extend file" in batch.message


def test_backfill_command_inserts_references_only(refs, tmp_path):
    path = write_xlsx(tmp_path / "f.xlsx", {"规模明细": [scale_row(计划号="N0600")]})
    out = io.StringIO()
    call_command("backfill", "--domain", "annuity_performance", str(path), "--json", stdout=out)
    summary = json.loads(out.getvalue())

    assert summary["files"][0]["new_references"]["年金计划"] == 1
    assert AnnuityPlan.objects.filter(plan_code="N0600", source=Source.AUTO_DERIVED).exists()
    assert ScaleFact.objects.count() == 0


def test_dry_run_reports_and_writes_nothing(refs, tmp_path):
    path = write_xlsx(tmp_path / "f.xlsx", {"规模明细": [scale_row(计划号="N0700"), scale_row()]})
    out = io.StringIO()
    call_command("process_facts", "--domain", "annuity_performance", str(path), "--dry-run", "--json", stdout=out)
    summary = json.loads(out.getvalue())["files"][0]

    assert summary["dry_run"] is True and summary["rows_loaded"] == 2
    assert [d["key"] for d in summary["derived"]["年金计划"]] == ["N0700"]
    assert ScaleFact.objects.count() == 0 and not FactBatch.objects.exists()
    assert not AnnuityPlan.objects.filter(plan_code="N0700").exists()


def test_process_facts_command_exit_code_and_message_for_a_rejected_file(refs, tmp_path):
    good = write_xlsx(tmp_path / "good.xlsx", {"规模明细": [scale_row()]})
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as info:
        call_command(
            "process_facts",
            "--domain",
            "annuity_performance",
            str(good),
            str(tmp_path / "nope.xlsx"),
            stdout=io.StringIO(),
            stderr=stderr,
        )
    assert info.value.code == 1
    assert "1 of 2 files not loaded: nope.xlsx: file not found" in stderr.getvalue()
    assert ScaleFact.objects.count() == 1


def test_income_domain_reads_its_own_sheet(refs, tmp_path):
    book = FactWorkbook(month="202411", scale_rows=50, income_rows=80, legacy=LegacyDataset(plans=30, portfolios=40))
    path = book.write(tmp_path / "202411_年金业务明细.xlsx")
    result = process(path, domain="annuity_income")
    assert result.batch.rows_loaded == 80 and IncomeFact.objects.count() == 80 and ScaleFact.objects.count() == 0
    assert IncomeFact.objects.filter(month="2024-11-01").count() == 80  # 月度 written as 2024年11月


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_discovering_the_same_new_keys_both_succeed(tmp_path, config):
    create_references()
    # different months, so neither run waits for the other's scope lock: they race on the new keys only
    new = [scale_row(计划号=f"N08{i:02d}", 组合代码=f"XNP08{i:02d}") for i in range(20)]
    first = write_xlsx(tmp_path / "a.xlsx", {"规模明细": new + [scale_row()]})
    later = [{**row, "月度": "202412"} for row in new[5:] + [scale_row()]]
    second = write_xlsx(tmp_path / "b.xlsx", {"规模明细": later})
    results, errors = {}, []

    def run(name, path):
        try:
            results[name] = process(path)
        except Exception as exc:  # the assertion below shows it
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n, p)) for n, p in (("a", first), ("b", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert AnnuityPlan.objects.filter(plan_code__startswith="N08").count() == 20
    assert PortfolioPlan.objects.filter(portfolio_code__startswith="XNP08").count() == 20
    inserted = results["a"].batch.new_references["年金计划"] + results["b"].batch.new_references["年金计划"]
    assert inserted == 20
    assert DerivedReference.objects.filter(table="年金计划").count() == 20
    assert ScaleFact.objects.count() == 21 + 16


@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])
def test_a_plain_csv_is_parsed_by_postgresql_itself_with_the_right_row_numbers(refs, tmp_path, monkeypatch, encoding):
    from pipeline.facts.staging import FactStager

    def not_row_by_row(*args, **kwargs):
        raise AssertionError("a plain CSV must not be read row by row")

    monkeypatch.setattr(FactStager, "_copy", not_row_by_row)
    rows = [
        scale_row(),
        scale_row(客户名称="中文客户"),
        scale_row(计划号="N0900", 组合代码="XNP0900"),
        scale_row(月度="2024年11月"),
    ]
    process(write_csv(tmp_path / "plain.csv", rows, encoding=encoding))

    assert ScaleFact.objects.count() == 4
    assert ScaleFact.objects.filter(customer_name="中文客户").count() == 1
    assert DerivedReference.objects.get(table="年金计划", key="N0900").row_numbers == [4]
    bad = write_csv(tmp_path / "bad.csv", [scale_row(), scale_row(月度="2024年13月")], encoding=encoding)
    with pytest.raises(FactFileError, match=r"bad.csv, row 3, column 月度"):
        process(bad)


def test_backfill_mode_always_fills_empty_fields_of_pending_rows_only(refs, tmp_path, config):
    process(write_xlsx(tmp_path / "a.xlsx", {"规模明细": [scale_row(计划号="N0200", 客户名称=None, company_id=None)]}))
    AnnuityPlan.objects.create(
        plan_code="N0201", source=Source.AUTO_DERIVED, needs_review=False, derived_from_domain="d"
    )
    first = AnnuityPlan.objects.get(plan_code="N0200")
    assert first.customer_name is None and first.short_name == "计划1"
    AnnuityPlan.objects.filter(plan_code="N0200").update(short_name="管理员改过")
    later = [
        scale_row(月度="202412", 计划号="N0200", 计划名称="别的名字", 客户名称="客户乙", company_id="611111111"),
        scale_row(月度="202412", 计划号="N0201", 客户名称="客户丙"),
        scale_row(月度="202412", 计划号=plan_code(3), 客户名称="客户丁"),
    ]

    fallback = process(write_xlsx(tmp_path / "b.xlsx", {"规模明细": later}))
    assert fallback.batch.filled_references == {}
    assert AnnuityPlan.objects.get(plan_code="N0200").customer_name is None  # fallback: existing rows untouched

    config.edit("reference_management.yml", lambda d: d["backfill"].update(mode="always"))
    always = process(write_xlsx(tmp_path / "c.xlsx", {"规模明细": later}), force=True)

    assert always.batch.filled_references == {"年金计划": 1}
    plan = AnnuityPlan.objects.get(plan_code="N0200")
    assert (plan.customer_name, plan.company_id, plan.short_name) == ("客户乙", "611111111", "管理员改过")
    assert plan.source == Source.AUTO_DERIVED and plan.needs_review
    assert AnnuityPlan.objects.get(plan_code="N0201").customer_name is None  # reviewed: never touched
    assert AnnuityPlan.objects.get(plan_code=plan_code(3)).customer_name is None  # authoritative: never touched
    provenance = DerivedReference.objects.get(table="年金计划", key="N0200", batch=always.batch)
    assert provenance.row_numbers == [2] and provenance.fact_rows == 1
    assert "filled pending rows: 年金计划 1" in always.batch.message


def test_a_value_too_long_for_its_column_names_row_and_column_and_loads_nothing(refs, tmp_path):
    rows = [scale_row(), scale_row(), scale_row(计划号="N0950", 客户名称="客" * 300)]
    with pytest.raises(FactFileError, match=r"long.csv, row 4, column 客户名称: longer than 255 characters"):
        process(write_csv(tmp_path / "long.csv", rows))
    assert ScaleFact.objects.count() == 0 and not AnnuityPlan.objects.filter(plan_code="N0950").exists()
    assert FactBatch.objects.get().status == FactStatus.REJECTED


def test_every_fact_row_keeps_its_row_number_in_the_file(refs, tmp_path):
    process(write_csv(tmp_path / "rows.csv", [scale_row(客户名称=f"客户{i}") for i in range(5)]))
    assert dict(ScaleFact.objects.values_list("customer_name", "source_row")) == {f"客户{i}": i + 2 for i in range(5)}
