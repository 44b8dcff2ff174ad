"""Reference history on the real PostgreSQL schema: what the triggers record, the context of a change, undo."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from reference.history import Action, change_context, row_history, stewardship_context
from reference.history_models import ReferenceEvent
from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP
from stewardship.undo import UndoRefused, undo

pytestmark = pytest.mark.django_db

TABLES = ("年金计划", "组合计划", "产品线", "组织架构")


def make_user(django_user_model, username: str, group: str):
    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def steward(django_user_model):
    return make_user(django_user_model, "steward", STEWARD_GROUP)


@pytest.fixture
def other_steward(django_user_model):
    return make_user(django_user_model, "steward2", STEWARD_GROUP)


@pytest.fixture
def viewer(django_user_model):
    return make_user(django_user_model, "viewer", VIEWER_GROUP)


@pytest.fixture
def superuser(django_user_model):
    """Undoing inserts of authoritative rows, the system's and other users' changes is a superuser's."""
    return django_user_model.objects.create_superuser("root", password="pw")


@pytest.fixture
def rows():
    derived_at = timezone.make_aware(dt.datetime(2026, 11, 3, 1, 2, 3, 456789), dt.UTC)
    plan = AnnuityPlan.objects.create(
        plan_code="P0001", short_name="甲公司企业年金计划", customer_name="甲公司", portfolio_count=3, is_umbrella=False
    )
    AnnuityPlan.objects.create(
        plan_code="P9001",
        short_name="乙公司",
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=derived_at,
    )
    PortfolioPlan.objects.create(
        portfolio_code="QTAN001", plan=plan, name="甲公司固收组合", start_date=dt.date(2020, 2, 29), is_deposit=True
    )
    PortfolioPlan.objects.create(
        portfolio_code="QTAN901",
        name="乙公司组合",
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=derived_at,
    )
    ProductLine.objects.create(code="PL201", name="企年投资", line_no=1)
    Organization.objects.create(code="G01", name="北京分公司", region="华北")


def snapshot() -> dict[str, list[tuple]]:
    """Every column of every row of the four tables, as PostgreSQL returns them."""
    result = {}
    with connection.cursor() as cur:
        for table in TABLES:
            cur.execute(f'SELECT * FROM "{table}" ORDER BY 1')
            result[table] = cur.fetchall()
    return result


def test_plain_insert_without_context_writes_no_events():
    PortfolioPlan.objects.bulk_create(PortfolioPlan(portfolio_code=f"QP{i:05d}") for i in range(1000))
    with connection.cursor() as cur:  # what the preload's set-based INSERT does
        cur.execute("""INSERT INTO "年金计划" ("年金计划号", _source) SELECT 'PX' || g, 'authoritative'
                       FROM generate_series(1, 1000) g""")

    assert PortfolioPlan.objects.count() == 1000 and AnnuityPlan.objects.count() == 1000
    assert ReferenceEvent.objects.count() == 0


def test_bulk_update_of_10k_rows_in_a_context_writes_10k_events_with_user_and_action(steward):
    PortfolioPlan.objects.bulk_create(
        PortfolioPlan(portfolio_code=f"QP{i:05d}", source=Source.AUTO_DERIVED, needs_review=True) for i in range(10_000)
    )
    with stewardship_context(user=steward, action=Action.PROMOTE) as context_id:
        changed = PortfolioPlan.objects.filter(needs_review=True).update(
            source=Source.AUTHORITATIVE, needs_review=False
        )

    assert changed == 10_000
    events = ReferenceEvent.objects.filter(table="组合计划")
    assert events.count() == 10_000
    assert set(events.values_list("context_id", flat=True)) == {context_id}
    assert set(events.values_list("label", flat=True)) == {"update"}
    [history] = row_history(table="组合计划", key="QP00042")
    assert (history.username, history.user_id, history.action) == ("steward", steward.pk, "promote")
    assert {c.column: (c.before, c.after) for c in history.changes} == {
        "_source": ("auto_derived", "authoritative"),
        "_needs_review": (True, False),
    }


def test_update_that_changes_nothing_writes_no_event(rows, steward):
    with stewardship_context(user=steward, action=Action.EDIT):
        AnnuityPlan.objects.filter(plan_code="P0001").update(short_name="甲公司企业年金计划")

    assert ReferenceEvent.objects.count() == 0


def test_row_history_newest_first_with_before_and_after(rows, steward):
    with stewardship_context(user=steward, action=Action.EDIT):
        AnnuityPlan.objects.filter(plan_code="P9001").update(full_name="乙公司企业年金计划")
    with stewardship_context(user=steward, action=Action.PROMOTE):
        AnnuityPlan.objects.filter(plan_code="P9001").update(source=Source.AUTHORITATIVE, needs_review=False)

    promote, edit = row_history(table="年金计划", key="P9001")
    assert (promote.action, edit.action) == ("promote", "edit")
    assert [(c.column, c.before, c.after) for c in edit.changes] == [("计划全称", None, "乙公司企业年金计划")]
    assert str(edit.changes[0].label) == "计划全称"  # the field's verbose name, in Chinese by default


def test_insert_and_delete_inside_a_context_are_recorded(rows, steward):
    with stewardship_context(user=steward, action=Action.ADD):
        ProductLine.objects.create(code="PL999", name="新产品线")
    with stewardship_context(user=steward, action=Action.DELETE):
        ProductLine.objects.filter(code="PL999").delete()

    deleted, inserted = row_history(table="产品线", key="PL999")
    assert (inserted.label, inserted.action) == ("insert", "add")
    assert {c.column: c.after for c in inserted.changes}["产品线"] == "新产品线"
    assert (deleted.label, deleted.action) == ("delete", "delete")
    assert {c.column: c.before for c in deleted.changes}["产品线"] == "新产品线"


def test_update_without_context_is_recorded_without_user(rows):
    AnnuityPlan.objects.filter(plan_code="P0001").update(remark="直接修改")

    [event] = row_history(table="年金计划", key="P0001")
    assert (event.label, event.context_id, event.username, event.action) == ("update", None, None, None)


def test_context_does_not_leak_into_later_statements_of_the_transaction(steward):
    with transaction.atomic():
        with change_context(action=Action.PRELOAD, run_id=7):
            pass
        ProductLine.objects.create(code="PL998")  # a plain insert after the context, same transaction

    assert ReferenceEvent.objects.count() == 0


def test_undo_restores_every_column_exactly(rows, steward, superuser):
    before = snapshot()
    with stewardship_context(user=steward, action=Action.MERGE) as context_id:
        PortfolioPlan.objects.filter(plan_id="P0001").update(plan_id="P9001", remark="并入")
        AnnuityPlan.objects.filter(plan_code="P0001").delete()
        AnnuityPlan.objects.filter(plan_code="P9001").update(
            source=Source.AUTHORITATIVE, needs_review=False, derived_at=None, portfolio_count=7, is_umbrella=True
        )
        AnnuityPlan.objects.create(plan_code="P7777", short_name="新计划")
        PortfolioPlan.objects.create(portfolio_code="QTAN777", plan_id="P7777", start_date=dt.date(2024, 1, 1))
        PortfolioPlan.objects.filter(portfolio_code="QTAN001").update(start_date=dt.date(2021, 1, 1))
    assert snapshot() != before

    result = undo(context_id=context_id, user=superuser)

    assert snapshot() == before
    assert (result.restored, result.reinserted, result.removed) == (2, 1, 2)
    assert result.tables == {"年金计划": 3, "组合计划": 2}
    undo_events = ReferenceEvent.objects.filter(context_id=result.undo_context_id)
    assert undo_events.count() == 5
    [last] = row_history(table="年金计划", key="P0001", limit=1)
    assert (last.action, last.username, last.label) == ("undo", "root", "insert")
    assert last.metadata["undone_context"] == str(context_id)


def test_undo_refused_when_a_row_was_changed_again_later(rows, steward, other_steward):
    with stewardship_context(user=steward, action=Action.BULK_COMPLETE) as context_id:
        AnnuityPlan.objects.filter(plan_code__in=["P0001", "P9001"]).update(full_name="补全")
    with stewardship_context(user=other_steward, action=Action.EDIT):
        AnnuityPlan.objects.filter(plan_code="P9001").update(full_name="再改")
    state = snapshot()

    with pytest.raises(UndoRefused) as refused:
        undo(context_id=context_id, user=steward)

    message = str(refused.value)
    assert "年金计划 P9001" in message and "steward2" in message and "修改" in message
    assert snapshot() == state
    assert not ReferenceEvent.objects.filter(context__metadata__action="undo").exists()


def test_undo_refused_twice(rows, steward):
    with stewardship_context(user=steward, action=Action.EDIT) as context_id:
        Organization.objects.filter(code="G01").update(region="华东")
    undo(context_id=context_id, user=steward)

    with pytest.raises(UndoRefused):
        undo(context_id=context_id, user=steward)
    assert Organization.objects.get(code="G01").region == "华北"


def test_undo_refused_for_a_viewer(rows, steward, viewer):
    from django.core.exceptions import PermissionDenied

    with stewardship_context(user=steward, action=Action.EDIT) as context_id:
        Organization.objects.filter(code="G01").update(region="华东")

    with pytest.raises(PermissionDenied):
        undo(context_id=context_id, user=viewer)
    assert Organization.objects.get(code="G01").region == "华东"


def test_undo_of_a_preload_upgrade(rows, superuser):
    with change_context(action=Action.PRELOAD, run_id=42) as context_id:
        AnnuityPlan.objects.filter(plan_code="P9001").update(source=Source.AUTHORITATIVE, needs_review=False)
    [event] = row_history(table="年金计划", key="P9001")
    assert (event.action, event.metadata["run_id"], event.username) == ("preload", 42, None)

    undo(context_id=context_id, user=superuser)
    assert AnnuityPlan.objects.get(plan_code="P9001").source == Source.AUTO_DERIVED


def test_preload_records_its_upgrades_under_the_run_but_not_its_inserts(legacy, config_dir):
    from pipeline.demo.legacy import LegacyDataset, plan_code
    from pipeline.preload import run_preload

    legacy.load(LegacyDataset(plans=30, portfolios=40))
    AnnuityPlan.objects.create(
        plan_code=plan_code(7),
        short_name="管理员填写的简称",
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=timezone.now(),
    )

    result = run_preload()

    assert AnnuityPlan.objects.count() == 30 and PortfolioPlan.objects.count() == 40
    [event] = ReferenceEvent.objects.all()
    assert (event.table, event.key, event.label) == ("年金计划", plan_code(7), "update")
    [history] = row_history(table="年金计划", key=plan_code(7))
    assert (history.action, history.metadata["run_id"]) == ("preload", result.run.pk)
    changed = {c.column: (c.before, c.after) for c in history.changes}
    assert changed["_source"] == ("auto_derived", "authoritative")
    assert changed["计划简称"][0] == "管理员填写的简称"


def test_undo_refused_when_a_row_changed_outside_the_history(rows, steward):
    with stewardship_context(user=steward, action=Action.DELETE) as context_id:
        ProductLine.objects.filter(code="PL201").delete()
    with connection.cursor() as cur:  # a plain insert (preload, fact load) is not recorded
        cur.execute("""INSERT INTO "产品线" ("产品线代码", "产品线") VALUES ('PL201', '企年投资（新）')""")

    with pytest.raises(UndoRefused, match="产品线 PL201"):
        undo(context_id=context_id, user=steward)
    assert ProductLine.objects.get(code="PL201").name == "企年投资（新）"


def test_undo_refused_when_facts_use_a_row_it_would_remove(rows, steward, superuser):
    from pipeline.models import FactBatch, ScaleFact
    from tests.facts_support import month_partition

    with stewardship_context(user=steward, action=Action.ADD) as context_id:
        AnnuityPlan.objects.create(plan_code="P7777", short_name="新计划")
    month_partition("规模明细", dt.date(2024, 11, 1))
    batch = FactBatch.objects.create(domain="annuity_performance", file_name="f.xlsx", file_path="/tmp/f.xlsx")
    ScaleFact.objects.create(month=dt.date(2024, 11, 1), batch=batch, plan_id="P7777", closing_assets=Decimal("1"))

    with pytest.raises(UndoRefused, match="break a reference|破坏引用"):
        undo(context_id=context_id, user=superuser)
    assert AnnuityPlan.objects.filter(plan_code="P7777").exists()
