"""Phase 1 against real MariaDB and PostgreSQL: full and incremental sync, upgrades, failures, integrity."""

from __future__ import annotations

import io
import json

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from pipeline.demo.legacy import LegacyDataset, plan_code, portfolio_code
from pipeline.models import RunStatus, SyncRun, SyncTableResult, SyncUpgrade, SyncWatermark
from pipeline.preload import PreloadError, run_preload, table_sync
from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine, Source

pytestmark = pytest.mark.django_db

SMALL = LegacyDataset(plans=30, portfolios=40)


def results(run: SyncRun) -> dict[str, SyncTableResult]:
    return {r.table: r for r in run.tables.all()}


def xmins(table: str) -> dict[str, int]:
    key = {"年金计划": "年金计划号", "组合计划": "组合代码"}[table]
    with connection.cursor() as cur:
        cur.execute(f'SELECT "{key}", xmin::text::bigint FROM "{table}"')
        return dict(cur.fetchall())


def test_full_sync_loads_every_table_in_dependency_order(legacy, config_dir):
    legacy.load(SMALL)
    result = run_preload()

    assert result.run.status == RunStatus.SUCCESS, result.run.message
    assert [r.table for r in result.tables] == ["年金计划", "产品线", "组织架构", "组合计划"]
    assert AnnuityPlan.objects.count() == 30
    assert PortfolioPlan.objects.count() == 40
    assert ProductLine.objects.count() == 12
    assert Organization.objects.count() == 38
    assert not AnnuityPlan.objects.exclude(source=Source.AUTHORITATIVE).exists()
    counts = results(result.run)
    assert (counts["组合计划"].rows_read, counts["组合计划"].inserted, counts["组合计划"].errors) == (40, 40, 0)

    portfolio = PortfolioPlan.objects.get(portfolio_code=portfolio_code(1))
    source_row = legacy.fetch(
        legacy.hub,
        "SELECT `年金计划号`, `组合名称`, `运作开始日`, `是否存款组合` FROM `组合计划` WHERE `组合代码` = %s",
        [portfolio_code(1)],
    )[0]
    assert portfolio.plan_id == source_row[0]
    assert portfolio.name == source_row[1]
    assert portfolio.start_date == source_row[2]
    assert portfolio.is_deposit is bool(source_row[3])
    assert ProductLine.objects.get(code="PL202").name == "企年受托"
    assert Organization.objects.get(code="G00").name == "总部"
    assert result.integrity.ok


def test_chinese_names_and_utf8mb4_values_survive(legacy, config_dir):
    legacy.load(SMALL)
    legacy.execute(
        legacy.hub,
        "UPDATE `年金计划` SET `客户名称` = %s, `备注` = %s WHERE `年金计划号` = %s",
        ["𠮷野家（中国）有限公司", "emoji 😀 与全角：ＡＢＣ", plan_code(1)],
    )
    run_preload()
    plan = AnnuityPlan.objects.get(plan_code=plan_code(1))
    assert plan.customer_name == "𠮷野家（中国）有限公司"
    assert plan.remark == "emoji 😀 与全角：ＡＢＣ"


def test_mysql_zero_date_becomes_null_and_dirty_keys_are_normalised(legacy, config_dir):
    legacy.load(SMALL)
    legacy.execute(
        legacy.hub, "UPDATE `组合计划` SET `运作开始日` = '0000-00-00' WHERE `组合代码` = %s", [portfolio_code(2)]
    )
    legacy.execute(legacy.enterprise, "INSERT INTO `组织架构` (`机构代码`, `机构`) VALUES (' ｇ９９ ', '测试分公司')")
    run_preload()
    assert PortfolioPlan.objects.get(portfolio_code=portfolio_code(2)).start_date is None
    assert Organization.objects.get(code="G99").name == "测试分公司"


def test_unchanged_resync_rewrites_nothing(legacy, config_dir):
    legacy.load(SMALL)
    run_preload()
    before = xmins("组合计划"), xmins("年金计划")

    result = run_preload(full=True)

    assert result.run.status == RunStatus.SUCCESS
    for r in result.tables:
        assert (r.inserted, r.updated, r.upgraded) == (0, 0, 0), r.table
        assert r.unchanged == r.rows_read
    assert (xmins("组合计划"), xmins("年金计划")) == before


def test_incremental_sync_reads_only_rows_changed_since_the_watermark(legacy, config_dir):
    legacy.load(SMALL)
    first = run_preload()
    assert results(first.run)["年金计划"].mode == "full"
    assert SyncWatermark.objects.get(table="年金计划").value == SMALL.updated_at

    legacy.execute(
        legacy.hub,
        "UPDATE `年金计划` SET `计划简称` = '改名计划', `updated_at` = '2024-11-02 03:00:00' WHERE `年金计划号` = %s",
        [plan_code(3)],
    )
    second = run_preload()

    plans = results(second.run)["年金计划"]
    assert (plans.mode, plans.rows_read, plans.updated, plans.inserted) == ("incremental", 1, 1, 0)
    assert (plans.watermark_from, plans.watermark_to) == (SMALL.updated_at, "2024-11-02 03:00:00")
    assert AnnuityPlan.objects.get(plan_code=plan_code(3)).short_name == "改名计划"
    assert results(second.run)["组合计划"].rows_read == 0
    assert results(second.run)["组织架构"].mode == "full"  # no incremental column at that source

    third = run_preload(full=True)
    assert results(third.run)["年金计划"].rows_read == 30


def test_rows_deleted_at_the_source_are_reported_never_deleted(legacy, config_dir):
    legacy.load(SMALL)
    run_preload()
    legacy.execute(legacy.hub, "DELETE FROM `组合计划` WHERE `组合代码` = %s", [portfolio_code(5)])

    result = run_preload(full=True)

    portfolios = results(result.run)["组合计划"]
    assert portfolios.missing_at_source == 1
    assert portfolios.missing_samples == [portfolio_code(5)]
    assert "no longer at the source" in portfolios.message
    assert PortfolioPlan.objects.filter(portfolio_code=portfolio_code(5)).exists()


def test_auto_derived_row_is_upgraded_keeping_steward_values_the_source_lacks(legacy, config_dir):
    legacy.load(SMALL)
    derived_at = timezone.now()
    AnnuityPlan.objects.create(
        plan_code=plan_code(7),
        short_name="管理员填写的简称",
        remark="管理员备注",
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=derived_at,
    )
    legacy.execute(legacy.hub, "UPDATE `年金计划` SET `备注` = NULL WHERE `年金计划号` = %s", [plan_code(7)])
    source_short_name = legacy.fetch(
        legacy.hub, "SELECT `计划简称` FROM `年金计划` WHERE `年金计划号` = %s", [plan_code(7)]
    )[0][0]

    result = run_preload()

    plan = AnnuityPlan.objects.get(plan_code=plan_code(7))
    assert (plan.source, plan.needs_review) == (Source.AUTHORITATIVE, False)
    assert plan.short_name == source_short_name
    assert plan.remark == "管理员备注"
    assert plan.derived_from_domain == "annuity_performance"
    assert results(result.run)["年金计划"].upgraded == 1
    assert results(result.run)["年金计划"].inserted == 29
    upgrade = SyncUpgrade.objects.get(run=result.run)
    assert (upgrade.table, upgrade.key) == ("年金计划", plan_code(7))
    assert upgrade.changed["计划简称"] == ["管理员填写的简称", source_short_name]
    assert upgrade.kept["备注"] == "管理员备注"
    assert result.summary()["upgrades"][0]["key"] == plan_code(7)


def test_bad_rows_are_rejected_with_key_and_reason_and_the_rest_load(legacy, config_dir):
    legacy.load(SMALL)
    legacy.execute(
        legacy.hub, "UPDATE `组合计划` SET `年金计划号` = 'NOPE01' WHERE `组合代码` = %s", [portfolio_code(4)]
    )
    legacy.execute(legacy.hub, "UPDATE `组合计划` SET `组合代码` = '  ' WHERE `组合代码` = %s", [portfolio_code(6)])
    legacy.execute(legacy.enterprise, "ALTER TABLE `组织架构` DROP PRIMARY KEY")
    legacy.execute(legacy.enterprise, "INSERT INTO `组织架构` (`机构代码`, `机构`) VALUES ('g01 ', '重复的北京')")

    result = run_preload()

    assert result.run.status == RunStatus.PARTIAL
    portfolios = results(result.run)["组合计划"]
    assert (portfolios.errors, portfolios.inserted) == (2, 38)
    errors = {e["key"]: e["error"] for e in portfolios.error_samples}
    assert errors[portfolio_code(4)] == "年金计划号: NOPE01 not found in 年金计划"
    assert errors[""] == "empty key"
    orgs = results(result.run)["组织架构"]
    assert orgs.errors == 1
    assert orgs.error_samples[0]["error"].startswith("duplicate key")
    assert Organization.objects.get(code="G01").name == "重复的北京"  # the later source row wins
    assert "组合计划: 2 rows rejected" in result.run.message


def test_free_text_source_columns_are_parsed_and_checked(legacy, config_dir):
    legacy.load(SMALL)
    legacy.execute(legacy.hub, "ALTER TABLE `年金计划` MODIFY `组合数` VARCHAR(20), MODIFY `是否统括` VARCHAR(10)")
    legacy.execute(
        legacy.hub, "UPDATE `年金计划` SET `组合数` = ' 12 ', `是否统括` = '是' WHERE `年金计划号` = %s", [plan_code(1)]
    )
    legacy.execute(legacy.hub, "UPDATE `年金计划` SET `组合数` = '十二' WHERE `年金计划号` = %s", [plan_code(2)])

    result = run_preload(tables=["年金计划"])

    plan = AnnuityPlan.objects.get(plan_code=plan_code(1))
    assert (plan.portfolio_count, plan.is_umbrella) == (12, True)
    assert not AnnuityPlan.objects.filter(plan_code=plan_code(2)).exists()
    sample = results(result.run)["年金计划"].error_samples[0]
    assert sample["key"] == plan_code(2) and sample["error"] == "组合数: not an integer: 十二"


def test_source_down_fails_its_tables_and_records_the_run(legacy, config_dir, settings):
    legacy.load(SMALL)
    settings.LEGACY_MYSQL_URL = "mysql://root@127.0.0.1:1"
    stderr = io.StringIO()

    with pytest.raises(SystemExit) as exit_info:
        call_command("preload", stderr=stderr, stdout=io.StringIO())

    assert exit_info.value.code == 1
    line = stderr.getvalue().strip()
    assert "\n" not in line
    assert "preload partial" in line and "127.0.0.1:1" in line and "unreachable" in line
    run = SyncRun.objects.get()
    assert run.status == RunStatus.PARTIAL
    by_table = results(run)
    assert by_table["年金计划"].status == "failed"
    assert by_table["组合计划"].status == "skipped"
    assert "depends on 年金计划" in by_table["组合计划"].message
    assert by_table["产品线"].status == "success"  # the config-file table does not need the legacy server
    assert ProductLine.objects.count() == 12 and AnnuityPlan.objects.count() == 0


def test_a_table_failing_midway_is_rolled_back_and_the_others_stand(legacy, config_dir, monkeypatch):
    legacy.load(SMALL)
    original = table_sync.TableSync._merge

    def merge_then_fail(self, cur, plans, *, bulk):
        counts = original(self, cur, plans, bulk=bulk)
        if self.table.name == "组合计划":
            raise psycopg.errors.DiskFull("could not extend file: No space left on device")
        return counts

    monkeypatch.setattr(table_sync.TableSync, "_merge", merge_then_fail)
    result = run_preload()

    assert result.run.status == RunStatus.PARTIAL
    assert PortfolioPlan.objects.count() == 0
    assert AnnuityPlan.objects.count() == 30
    assert results(result.run)["组合计划"].status == "failed"
    assert "No space left on device" in results(result.run)["组合计划"].message
    assert SyncUpgrade.objects.count() == 0


def test_missing_source_table_and_renamed_column_are_clear_errors(legacy, config_dir):
    legacy.load(SMALL)
    legacy.execute(legacy.enterprise, "DROP TABLE `组织架构`")
    legacy.execute(legacy.hub, "ALTER TABLE `年金计划` CHANGE `计划简称` `plan_short` VARCHAR(255)")

    result = run_preload(tables=["组织架构", "年金计划"])

    by_table = results(result.run)
    assert by_table["组织架构"].status == "failed"
    assert f"{legacy.enterprise}.组织架构 does not exist" in by_table["组织架构"].message
    assert by_table["年金计划"].status == "success"
    assert by_table["年金计划"].columns_not_in_source == ["计划简称"]


def test_column_renames_from_config(legacy, tmp_path, settings):
    from tests.legacy import write_config

    legacy.load(SMALL)
    legacy.execute(legacy.hub, "ALTER TABLE `年金计划` CHANGE `计划简称` `plan_short` VARCHAR(255)")
    settings.REFGOV_CONFIG_DIR = write_config(
        tmp_path / "cfg", legacy, sources={"年金计划": {"columns": {"计划简称": "plan_short"}}}
    )

    run_preload(tables=["年金计划"])

    source = legacy.fetch(legacy.hub, "SELECT `plan_short` FROM `年金计划` WHERE `年金计划号` = %s", [plan_code(1)])[0][
        0
    ]
    assert AnnuityPlan.objects.get(plan_code=plan_code(1)).short_name == source


def test_unknown_table_request_and_disabled_preload_are_refused(config_dir, settings):
    with pytest.raises(PreloadError, match="no preload source configured for 规模明细"):
        run_preload(tables=["规模明细"])
    text = (config_dir / "reference_management.yml").read_text(encoding="utf-8")
    (config_dir / "reference_management.yml").write_text(
        text.replace("strategy: hybrid", "strategy: backfill_only"), encoding="utf-8"
    )
    with pytest.raises(PreloadError, match="preload is disabled"):
        run_preload()
    assert not SyncRun.objects.exists()


def test_dry_run_writes_nothing_and_reports_what_would_change(legacy, config_dir):
    legacy.load(SMALL)
    out = io.StringIO()
    call_command("preload", "--dry-run", "--json", stdout=out)
    summary = json.loads(out.getvalue())

    assert summary["dry_run"] is True and summary["run_id"] is None
    assert {t["table"]: t["inserted"] for t in summary["tables"]} == {
        "年金计划": 30,
        "产品线": 12,
        "组织架构": 38,
        "组合计划": 40,
    }
    assert AnnuityPlan.objects.count() == 0 and not SyncRun.objects.exists() and not SyncWatermark.objects.exists()


def test_json_summary_of_a_successful_run(legacy, config_dir):
    legacy.load(SMALL)
    out = io.StringIO()
    call_command("preload", "--json", "--table", "产品线", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["status"] == "success"
    assert summary["run_id"] == SyncRun.objects.get().pk
    assert [t["table"] for t in summary["tables"]] == ["产品线"]
    assert summary["integrity"]["ok"] is True


def test_bulk_first_sync_of_a_large_table_keeps_constraints_and_indexes(legacy, config_dir):
    """Above BULK_INSERT_ROWS the foreign key and secondary indexes are rebuilt set-based; they must come back."""
    legacy.load(LegacyDataset(plans=2_000, portfolios=table_sync.BULK_INSERT_ROWS + 10_000))

    def catalog() -> tuple[list, list]:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT conname, convalidated FROM pg_constraint "
                "WHERE conrelid = '\"组合计划\"'::regclass AND contype = 'f'"
            )
            fks = cur.fetchall()
            cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = '组合计划' ORDER BY 1")
            return fks, [r[0] for r in cur.fetchall()]

    before = catalog()
    result = run_preload()

    assert results(result.run)["组合计划"].inserted == table_sync.BULK_INSERT_ROWS + 10_000
    assert catalog() == before
    assert all(valid for _, valid in before[0])
    with pytest.raises(Exception, match="foreign key"):
        with connection.cursor() as cur, __import__("django.db").db.transaction.atomic():
            cur.execute("""UPDATE "组合计划" SET "年金计划号" = 'NOPE' WHERE "组合代码" = %s""", [portfolio_code(1)])
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")


def test_check_references_command(legacy, config_dir):
    legacy.load(SMALL)
    run_preload()
    out = io.StringIO()
    call_command("check_references", stdout=out)
    assert "reference integrity: ok" in out.getvalue()

    AnnuityPlan.objects.create(plan_code="X1", source=Source.AUTO_DERIVED, needs_review=True)
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("check_references", "--json", stdout=io.StringIO(), stderr=stderr)
    assert exit_info.value.code == 1
    assert "年金计划: auto-derived row without _derived_at/_derived_from_domain: 1 (e.g. X1)" in stderr.getvalue()


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_tables_sync_concurrently_and_children_wait_for_parents(legacy, config_dir):
    legacy.load(SMALL)
    first = run_preload()
    assert first.run.status == RunStatus.SUCCESS
    assert [r.table for r in first.tables] == ["年金计划", "产品线", "组织架构", "组合计划"]
    assert PortfolioPlan.objects.count() == 40 and AnnuityPlan.objects.count() == 30

    legacy.execute(legacy.hub, "RENAME TABLE `年金计划` TO `年金计划_old`")
    legacy.execute(legacy.hub, "UPDATE `组合计划` SET `组合名称` = '新名称', `updated_at` = '2024-12-01 00:00:00'")
    second = run_preload()

    by_table = results(second.run)
    assert by_table["年金计划"].status == "failed"
    assert by_table["组合计划"].status == "skipped"
    assert by_table["组合计划"].message == "skipped: depends on 年金计划, which failed"
    assert by_table["组织架构"].status == "success"
    assert second.run.status == RunStatus.PARTIAL
    assert not PortfolioPlan.objects.filter(name="新名称").exists()


def test_check_references_finds_an_orphan_that_bypassed_the_foreign_key(legacy, config_dir):
    legacy.load(SMALL)
    run_preload()
    with connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")  # what a careless bulk load can do
        cur.execute("""UPDATE "组合计划" SET "年金计划号" = 'GONE01' WHERE "组合代码" = %s""", [portfolio_code(3)])
        cur.execute("SET LOCAL session_replication_role = origin")

    from reference.integrity import check_reference_integrity

    report = check_reference_integrity()
    assert not report.ok
    [violation] = report.violations
    assert violation.table == "组合计划" and violation.count == 1
    assert violation.samples == [f"{portfolio_code(3)} → GONE01"]
    stderr = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("check_references", stdout=io.StringIO(), stderr=stderr)
    assert "orphan 年金计划号 → 年金计划.年金计划号: 1" in stderr.getvalue()


def test_check_references_trusts_a_validated_foreign_key_and_scans_the_rest(legacy, config_dir):
    from reference.integrity import check_reference_integrity

    legacy.load(SMALL)
    run_preload()
    with connection.cursor() as cur:
        cur.execute("""SELECT conname FROM pg_constraint WHERE conrelid = '"组合计划"'::regclass AND contype = 'f'""")
        [(constraint,)] = cur.fetchall()
    trusted = check_reference_integrity(trust_constraints=True)
    scanned = check_reference_integrity()

    relation = "组合计划: 年金计划号 → 年金计划.年金计划号"
    assert f"{relation} (guaranteed by validated constraint {constraint})" in trusted.checked
    assert relation in scanned.checked and "年金计划: auto-derived provenance" in scanned.checked
    assert trusted.ok and scanned.ok
