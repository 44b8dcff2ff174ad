"""The preload and what stewards filled in: a promoted row keeps the steward's values the source leaves empty until
the source has confirmed it, every such sync is recorded, and rows awaiting the source are not reported as deletions.
Real MariaDB and PostgreSQL."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from operations.run_history import run_history
from pipeline.demo.legacy import LegacyDataset, plan_code
from pipeline.models import RunStatus, SyncRun, SyncTableResult, SyncUpgrade
from pipeline.preload import run_preload
from pipeline.selectors import promoted_rows
from reference.models import AnnuityPlan, Source
from stewardship.promote import promote

pytestmark = pytest.mark.django_db

SMALL = LegacyDataset(plans=30, portfolios=40)
NEW = "NEW0001"


def plans(run: SyncRun) -> SyncTableResult:
    return run.tables.get(table="年金计划")


def insert_source_plan(legacy, key: str, **values) -> None:
    columns = {"年金计划号": key, "updated_at": "2024-12-01 00:00:00", **values}
    names = ", ".join(f"`{c}`" for c in columns)
    legacy.execute(
        legacy.hub,
        f"INSERT INTO `年金计划` ({names}) VALUES ({', '.join(['%s'] * len(columns))})",
        list(columns.values()),
    )


def steward_promotes(django_user_model, key: str = NEW) -> None:
    """A fact file brought an unknown plan; a steward completes the auto-derived row and promotes it."""
    AnnuityPlan.objects.create(
        plan_code=key,
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=timezone.now(),
        short_name="自动派生简称",
    )
    AnnuityPlan.objects.filter(pk=key).update(
        short_name="管理员简称",
        plan_type="单一计划",
        customer_name="管理员填写的客户",
        remark="管理员备注",
        company_id="600000001",
    )
    user = django_user_model.objects.create_user(f"steward-{key}")
    assert promote(queryset=AnnuityPlan.objects.filter(pk=key), user=user).promoted == 1
    assert AnnuityPlan.objects.get(pk=key).source == Source.AUTHORITATIVE


def test_source_bringing_a_promoted_key_with_empty_columns_keeps_the_stewards_values(
    legacy, config_dir, django_user_model
):
    legacy.load(SMALL)
    run_preload()
    steward_promotes(django_user_model)
    insert_source_plan(
        legacy, NEW, 计划简称="源系统简称", 计划类型="单一计划", 客户名称=None, 备注=None, company_id=None
    )

    result = run_preload(full=True)

    assert result.run.status == RunStatus.SUCCESS, result.run.message
    plan = AnnuityPlan.objects.get(pk=NEW)
    assert plan.short_name == "源系统简称"  # the source's own value wins
    assert (plan.customer_name, plan.remark, plan.company_id) == ("管理员填写的客户", "管理员备注", "600000001")
    assert plan.source == Source.AUTHORITATIVE
    upgrade = SyncUpgrade.objects.get(run=result.run, key=NEW)
    assert upgrade.promoted is True
    assert upgrade.changed == {"计划简称": ["管理员简称", "源系统简称"]}
    assert upgrade.kept == {"客户名称": "管理员填写的客户", "备注": "管理员备注", "company_id": "600000001"}
    table = plans(result.run)
    assert (table.confirmed, table.upgraded, table.awaiting_source, table.missing_at_source) == (1, 0, 0, 0)
    assert (
        table.rows_read
        == table.inserted + table.updated + table.upgraded + table.confirmed + table.unchanged + table.errors
    )
    summary = result.summary()
    assert summary["upgrades"][0]["key"] == NEW and summary["upgrades"][0]["promoted"] is True
    assert not promoted_rows(table="年金计划").filter(pk=NEW).exists()  # the feedback export no longer carries it
    entry = next(
        e for e in run_history(since=result.run.started_at, until=timezone.now()).entries if e.kind == "preload"
    )
    assert "1 行已提升的记录获源系统确认" in entry.details and "升级" not in entry.details


def test_a_promoted_key_brought_by_an_incremental_sync_keeps_the_stewards_values(legacy, config_dir, django_user_model):
    legacy.load(SMALL)
    run_preload()
    steward_promotes(django_user_model)
    insert_source_plan(legacy, NEW, 计划简称="源系统简称", 客户名称=None, 备注=None)

    result = run_preload()

    assert plans(result.run).mode == "incremental"
    plan = AnnuityPlan.objects.get(pk=NEW)
    assert (plan.short_name, plan.customer_name, plan.remark) == ("源系统简称", "管理员填写的客户", "管理员备注")
    assert SyncUpgrade.objects.get(run=result.run, key=NEW).kept["客户名称"] == "管理员填写的客户"


def test_once_the_source_confirmed_a_promoted_row_the_source_wins_even_with_empty_values(
    legacy, config_dir, django_user_model
):
    legacy.load(SMALL)
    run_preload()
    steward_promotes(django_user_model)
    insert_source_plan(legacy, NEW, 计划简称="源系统简称", 客户名称=None)
    run_preload(full=True)
    legacy.execute(
        legacy.hub,
        "UPDATE `年金计划` SET `计划简称` = NULL, `updated_at` = '2024-12-02 00:00:00' WHERE `年金计划号` = %s",
        [NEW],
    )

    result = run_preload(full=True)

    plan = AnnuityPlan.objects.get(pk=NEW)
    assert plan.short_name is None  # the source is authoritative for a row it has confirmed
    assert not SyncUpgrade.objects.filter(run=result.run).exists()
    assert plans(result.run).updated == 1


def test_an_unchanged_confirmation_rewrites_nothing_and_is_still_recorded(legacy, config_dir, django_user_model):
    legacy.load(SMALL)
    run_preload()
    steward_promotes(django_user_model)
    plan = AnnuityPlan.objects.get(pk=NEW)
    insert_source_plan(
        legacy,
        NEW,
        计划简称=plan.short_name,
        计划类型=plan.plan_type,
        客户名称=plan.customer_name,
        company_id=plan.company_id,
        备注=None,
    )

    result = run_preload(full=True)

    table = plans(result.run)
    assert (table.confirmed, table.updated, table.unchanged) == (1, 0, 30)
    upgrade = SyncUpgrade.objects.get(run=result.run, key=NEW)
    assert upgrade.changed == {} and upgrade.kept == {"备注": "管理员备注"}
    assert AnnuityPlan.objects.get(pk=NEW).remark == "管理员备注"


def test_promoted_rows_awaiting_the_source_are_reported_apart_from_deletions(legacy, config_dir, django_user_model):
    legacy.load(SMALL)
    run_preload()
    steward_promotes(django_user_model, "NEW0001")
    steward_promotes(django_user_model, "NEW0002")
    legacy.execute(legacy.hub, "DELETE FROM `年金计划` WHERE `年金计划号` = %s", [plan_code(3)])
    legacy.execute(legacy.hub, "DELETE FROM `组合计划` WHERE `年金计划号` = %s", [plan_code(3)])

    result = run_preload(full=True)

    table = plans(result.run)
    assert (table.missing_at_source, table.missing_samples) == (1, [plan_code(3)])
    assert (table.awaiting_source, table.awaiting_samples) == (2, ["NEW0001", "NEW0002"])
    assert "1 authoritative keys no longer at the source" in table.message
    assert "2 rows promoted by stewards await the source" in table.message
    assert sorted(promoted_rows(table="年金计划").values_list("pk", flat=True)) == table.awaiting_samples
    tables = {t["table"]: t for t in result.summary()["tables"]}
    assert tables["年金计划"]["awaiting_source"] == 2 and tables["年金计划"]["awaiting_samples"] == [
        "NEW0001",
        "NEW0002",
    ]
    assert tables["年金计划"]["missing_at_source"] == 1

    # Once the source has had a promoted key, losing it again is a deletion.
    insert_source_plan(legacy, "NEW0001", 计划简称="源系统简称")
    run_preload(full=True)
    legacy.execute(legacy.hub, "DELETE FROM `年金计划` WHERE `年金计划号` = 'NEW0001'")
    later = plans(run_preload(full=True).run)
    assert (later.missing_at_source, later.missing_samples) == (2, ["NEW0001", plan_code(3)])
    assert (later.awaiting_source, later.awaiting_samples) == (1, ["NEW0002"])


def test_command_output_and_run_page_show_the_rows_awaiting_the_source(
    legacy, config_dir, django_user_model, admin_client
):
    legacy.load(SMALL)
    run_preload()
    steward_promotes(django_user_model)

    out = io.StringIO()
    call_command("preload", "--full", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    plans_json = next(t for t in payload["tables"] if t["table"] == "年金计划")
    assert (plans_json["awaiting_source"], plans_json["missing_at_source"]) == (1, 0)

    text = io.StringIO()
    call_command("preload", "--full", stdout=text)
    assert "1 rows promoted by stewards await the source" in text.getvalue()

    run = SyncRun.objects.order_by("-pk").first()
    page = admin_client.get(reverse("admin:pipeline_syncrun_change", args=[run.pk])).content.decode()
    assert "待源系统确认" in page and NEW in page


def test_a_row_a_steward_added_by_hand_awaits_the_source_and_is_not_a_deletion(legacy, config_dir, admin_client):
    legacy.load(SMALL)
    run_preload()
    data = {"plan_code": "HAND001", "short_name": "手工计划", "plan_type": "单一计划", "customer_name": "丁公司"}

    response = admin_client.post(reverse("admin:reference_annuityplan_add"), {**data, "is_umbrella": "unknown"})

    assert response.status_code == 302
    assert AnnuityPlan.objects.get(pk="HAND001").source == Source.AUTHORITATIVE
    table = plans(run_preload(full=True).run)
    assert (table.missing_at_source, table.awaiting_source, table.awaiting_samples) == (0, 1, ["HAND001"])
    assert promoted_rows(table="年金计划").filter(pk="HAND001").exists()  # the feedback export carries it
