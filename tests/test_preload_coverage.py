"""Preload coverage (issue 13 item 5) and the unchanged re-sync (issue 12), against real MariaDB and PostgreSQL:
an unchanged incremental source is not read, a moved row count reads the table in full, ``preload.full_schedule``
runs a full sync that sees what an incremental one cannot, and a source without its incremental column is read in
full with a warning instead of failing."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone
from django_q.models import Schedule

from operations.schedules import sync_schedules
from pipeline.config import load_config
from pipeline.demo.legacy import LegacyDataset, plan_code, portfolio_code
from pipeline.models import RunStatus, SyncRun, SyncTableResult, SyncWatermark
from pipeline.preload import run_preload
from reference.models import AnnuityPlan, PortfolioPlan
from reference.permissions import STEWARD_GROUP
from tests.legacy import edit_config, write_config
from tests.test_run_history import login

pytestmark = pytest.mark.django_db

SMALL = LegacyDataset(plans=30, portfolios=40)


def results(run: SyncRun) -> dict[str, SyncTableResult]:
    return {r.table: r for r in run.tables.all()}


def test_unchanged_incremental_source_is_not_read(legacy, config_dir):
    dataset = LegacyDataset(plans=2_000, portfolios=10_000)
    legacy.load(dataset)
    first = run_preload()
    assert results(first.run)["组合计划"].rows_read == 10_000
    assert SyncWatermark.objects.get(table="组合计划").rows == 10_000

    second = run_preload()

    assert second.run.status == RunStatus.SUCCESS, second.run.message
    for table in ("年金计划", "组合计划"):
        r = results(second.run)[table]
        assert (r.mode, r.rows_read, r.inserted, r.updated) == ("incremental", 0, 0, 0), table
        assert "stage" not in r.timings_ms and "source unchanged" in r.message, r.message
        assert r.warnings == []
    assert "source unchanged (10,000 rows" in results(second.run)["组合计划"].message
    assert second.run.message == ""

    # one newer row: read incrementally as before, and the watermark moves
    legacy.execute(
        legacy.hub,
        "UPDATE `组合计划` SET `组合名称` = '改名组合', `updated_at` = '2024-11-03 00:00:00' WHERE `组合代码` = %s",
        [portfolio_code(7)],
    )
    third = run_preload()
    portfolios = results(third.run)["组合计划"]
    assert (portfolios.mode, portfolios.rows_read, portfolios.updated) == ("incremental", 1, 1)
    assert PortfolioPlan.objects.get(portfolio_code=portfolio_code(7)).name == "改名组合"
    mark = SyncWatermark.objects.get(table="组合计划")
    assert (mark.value, mark.rows) == ("2024-11-03 00:00:00", 10_000)


def test_row_count_moved_without_newer_rows_reads_the_table_in_full(legacy, config_dir):
    legacy.load(SMALL)
    run_preload()
    # one row deleted at the source, one added with an old updated_at: neither moves the watermark
    legacy.execute(legacy.hub, "DELETE FROM `组合计划` WHERE `组合代码` = %s", [portfolio_code(5)])
    legacy.execute(
        legacy.hub,
        "INSERT INTO `组合计划` (`组合代码`, `年金计划号`, `组合名称`, `updated_at`) "
        "VALUES ('QOLD0001', %s, '迟到的组合', '2024-01-01 00:00:00')",
        [plan_code(1)],
    )
    legacy.execute(legacy.hub, "DELETE FROM `组合计划` WHERE `组合代码` = %s", [portfolio_code(6)])

    result = run_preload()

    assert result.run.status == RunStatus.SUCCESS, result.run.message
    portfolios = results(result.run)["组合计划"]
    assert (portfolios.mode, portfolios.rows_read, portfolios.inserted) == ("full", 39, 1)
    assert portfolios.missing_at_source == 2
    assert sorted(portfolios.missing_samples) == sorted([portfolio_code(5), portfolio_code(6)])
    [warning] = portfolios.warnings
    assert "39 rows instead of 40 without a newer updated_at: read in full" in warning
    assert PortfolioPlan.objects.get(portfolio_code="QOLD0001").name == "迟到的组合"
    assert SyncWatermark.objects.get(table="组合计划").rows == 39
    assert results(result.run)["年金计划"].mode == "incremental"  # its count did not move


def test_full_schedule_runs_a_full_sync_that_sees_changes_without_a_newer_updated_at(legacy, config_dir):
    from django_q.scheduler import scheduler

    legacy.load(SMALL)
    edit_config(config_dir, lambda d: d["preload"].update(full_schedule="0 3 * * 0"))
    changes = sync_schedules(config=load_config())
    assert sorted(changes.created) == sorted(
        ["refgov.alerts", "refgov.facts", "refgov.facts_poll", "refgov.preload", "refgov.preload_full"]
        + ["refgov.review_report"]
    )
    full = Schedule.objects.get(name="refgov.preload_full")
    assert (full.func, full.cron, full.schedule_type) == ("operations.tasks.preload_full_task", "0 3 * * 0", "C")

    run_preload()
    # a change that keeps updated_at (a fix applied directly in the legacy database) and a deletion
    legacy.execute(
        legacy.hub,
        "UPDATE `年金计划` SET `计划简称` = '悄悄改名', `updated_at` = `updated_at` WHERE `年金计划号` = %s",
        [plan_code(4)],
    )
    incremental = run_preload()
    assert results(incremental.run)["年金计划"].rows_read == 0
    assert AnnuityPlan.objects.get(plan_code=plan_code(4)).short_name != "悄悄改名"

    Schedule.objects.filter(name="refgov.preload_full").update(next_run=timezone.now() - dt.timedelta(minutes=1))
    scheduler()

    run = SyncRun.objects.latest("started_at")
    assert (run.trigger, run.full, run.status) == ("schedule-full", True, RunStatus.SUCCESS)
    plans = results(run)["年金计划"]
    assert (plans.mode, plans.rows_read, plans.updated) == ("full", 30, 1)
    assert AnnuityPlan.objects.get(plan_code=plan_code(4)).short_name == "悄悄改名"
    assert Schedule.objects.get(name="refgov.preload_full").next_run > timezone.now()

    edit_config(config_dir, lambda d: d["preload"].pop("full_schedule"))
    assert sync_schedules(config=load_config()).deleted == ["refgov.preload_full"]


def test_source_without_its_incremental_column_is_read_in_full_with_a_warning(
    legacy, tmp_path, settings, caplog, client, django_user_model
):
    legacy.load(SMALL)
    settings.REFGOV_CONFIG_DIR = write_config(
        tmp_path / "config", legacy, sources={"组织架构": {"incremental_column": "updated_at"}}
    )

    with caplog.at_level(logging.WARNING, logger="refgov.preload"):
        first = run_preload()
        second = run_preload()

    for result in (first, second):
        assert result.run.status == RunStatus.SUCCESS, result.run.message
        orgs = results(result.run)["组织架构"]
        assert (orgs.status, orgs.mode, orgs.rows_read) == ("success", "full", 38)
        [warning] = orgs.warnings
        assert "incremental column 'updated_at'" in warning and "preload.sources.组织架构.incremental_column" in warning
        assert "read in full" in warning
        assert warning in orgs.message
        assert f"组织架构: warning: {warning}" in result.run.message
    assert not SyncWatermark.objects.filter(table="组织架构").exists()
    assert sum("incremental column 'updated_at'" in r.getMessage() for r in caplog.records) == 2

    login(client, django_user_model, STEWARD_GROUP)
    history = client.get("/admin/history/").content.decode()
    assert "preload.sources.组织架构.incremental_column" in history
    page = client.get(f"/admin/pipeline/syncrun/{second.run.pk}/change/").content.decode()
    assert "preload.sources.组织架构.incremental_column" in page
