"""Stewardship services on real PostgreSQL: promote with required fields, bulk completion, merge with remembered
aliases that later fact loads resolve."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pipeline.demo.legacy import plan_code
from pipeline.facts.service import process_fact_file
from pipeline.models import IncomeFact, ScaleFact
from reference.models import AnnuityPlan, KeyAlias, PortfolioPlan, Source
from stewardship.complete import complete, complete_preview
from stewardship.merge import MergeRefused, merge, merge_impact
from stewardship.promote import promote
from tests.facts_support import create_references, scale_row, write_xlsx
from tests.legacy import edit_config

pytestmark = pytest.mark.django_db


def derived(code: str, **values) -> AnnuityPlan:
    return AnnuityPlan.objects.create(
        plan_code=code,
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        **values,
    )


def test_promote_refuses_rows_missing_required_fields_and_says_which(config_copy, django_user_model):
    steward = django_user_model.objects.create_user("s")
    derived("N1", short_name="计划一", plan_type="单一计划", customer_name="客户一")
    derived("N2", short_name="计划二", plan_type="单一计划", customer_name=" ")
    derived("N3", plan_type="集合计划")
    AnnuityPlan.objects.create(plan_code="P1", short_name="权威")

    result = promote(queryset=AnnuityPlan.objects.all(), user=steward)

    assert result.promoted == 1 and result.refused == 2
    assert result.refused_by_field == {"计划简称": 1, "计划类型": 0, "客户名称": 2}
    assert result.refused_keys == ["N2", "N3"]
    assert set(AnnuityPlan.objects.filter(source=Source.AUTHORITATIVE).values_list("pk", flat=True)) == {"N1", "P1"}
    n1 = AnnuityPlan.objects.get(pk="N1")
    assert not n1.needs_review and n1.derived_from_domain == "annuity_performance"  # provenance kept
    assert AnnuityPlan.objects.get(pk="N3").needs_review


def test_required_fields_come_from_the_config(config_copy, django_user_model):
    edit_config(config_copy, lambda d: d["stewardship"]["required_fields"].update({"年金计划": ["计划全称"]}))
    derived("N1", full_name="全称")
    derived("N2", short_name="只有简称")
    result = promote(queryset=AnnuityPlan.objects.all(), user=django_user_model.objects.create_user("s"))
    assert (result.promoted, result.refused_by_field) == (1, {"计划全称": 1})


def test_promoting_ten_thousand_rows_is_one_statement(config_copy, django_user_model, django_assert_max_num_queries):
    AnnuityPlan.objects.bulk_create(
        AnnuityPlan(
            plan_code=f"N{i:05d}",
            source=Source.AUTO_DERIVED,
            needs_review=True,
            short_name="s",
            plan_type="t",
            customer_name="c" if i % 10 else None,
        )
        for i in range(10_000)
    )
    user = django_user_model.objects.create_user("s")
    with django_assert_max_num_queries(6):
        result = promote(queryset=AnnuityPlan.objects.filter(needs_review=True), user=user)
    assert (result.promoted, result.refused) == (9_000, 1_000)
    assert AnnuityPlan.objects.filter(source=Source.AUTHORITATIVE).count() == 9_000


def test_bulk_completion_only_where_empty_or_overwrite_and_clear(config_copy, django_user_model):
    user = django_user_model.objects.create_user("s")
    derived("N1", customer_name="已有客户")
    derived("N2")
    derived("N3", customer_name="", remark="旧备注")
    rows = AnnuityPlan.objects.filter(pk__in=["N1", "N2", "N3"])

    assert complete_preview(queryset=rows, values={"customer_name": "新客户"}, clear=[], overwrite=False) == 2
    changed = complete(queryset=rows, values={"customer_name": "新客户"}, clear=["remark"], overwrite=False, user=user)

    assert changed == 2  # N2, N3 filled (N3's remark cleared); N1 keeps its customer and had no remark
    assert dict(rows.values_list("pk", "customer_name")) == {"N1": "已有客户", "N2": "新客户", "N3": "新客户"}
    assert AnnuityPlan.objects.get(pk="N3").remark is None
    assert complete(queryset=rows, values={"customer_name": "新客户"}, clear=[], overwrite=False, user=user) == 0

    assert complete_preview(queryset=rows, values={"customer_name": "统一"}, clear=[], overwrite=True) == 3
    complete(
        queryset=rows, values={"customer_name": "统一", "plan_type": "单一计划"}, clear=[], overwrite=True, user=user
    )
    assert set(rows.values_list("customer_name", "plan_type")) == {("统一", "单一计划")}
    with pytest.raises(ValueError, match="both set and cleared: customer_name"):
        complete(queryset=rows, values={"customer_name": "x"}, clear=["customer_name"], overwrite=True, user=user)


def load(tmp_path, name, rows, domain="annuity_performance"):
    sheet = "规模明细" if domain == "annuity_performance" else "收入明细"
    return process_fact_file(domain=domain, path=write_xlsx(tmp_path / name, {sheet: rows}))


def test_merge_repoints_facts_and_children_and_later_loads_resolve_the_typo(config_copy, tmp_path, django_user_model):
    create_references()
    right, typo = plan_code(1), "P0O01"
    user = django_user_model.objects.create_user("s")
    load(
        tmp_path,
        "a.xlsx",
        [scale_row(计划号=typo, 组合代码="XNP1"), scale_row(计划号=typo, 月度="202410"), scale_row()],
    )
    assert AnnuityPlan.objects.get(pk=typo).source == Source.AUTO_DERIVED
    assert PortfolioPlan.objects.get(pk="XNP1").plan_id == typo

    impact = merge_impact(table="年金计划", wrong_key=typo)
    assert impact.fact_rows == {"规模明细": 2} and impact.months == ["2024-10", "2024-11"]
    assert impact.child_rows == {"组合计划": 1}

    result = merge(table="年金计划", wrong_key=typo, right_key=right, user=user)

    assert result.impact.total_fact_rows == 2
    assert not AnnuityPlan.objects.filter(pk=typo).exists()
    assert ScaleFact.objects.filter(plan_id=right).count() == 3 and not ScaleFact.objects.filter(plan_id=typo).exists()
    assert PortfolioPlan.objects.get(pk="XNP1").plan_id == right
    assert KeyAlias.objects.get(table="年金计划", alias=typo).canonical == right

    later = load(tmp_path, "b.xlsx", [scale_row(计划号=typo, 月度="202412")])
    income = load(tmp_path, "c.xlsx", [scale_row(计划号=typo.lower(), 月度="202412")], domain="annuity_income")
    assert (
        later.batch.new_references["年金计划"] == 0 and "merged keys resolved: 年金计划 1 rows" in later.batch.message
    )
    assert income.batch.new_references["年金计划"] == 0
    assert not AnnuityPlan.objects.filter(pk=typo).exists()
    assert ScaleFact.objects.filter(plan_id=right, month__year=2024, month__month=12).count() == 1
    assert IncomeFact.objects.filter(plan_id=right).count() == 1

    backfill_only = process_fact_file(
        domain="annuity_performance",
        path=write_xlsx(tmp_path / "d.xlsx", {"规模明细": [scale_row(计划号=typo)]}),
        load_facts=False,
    )
    assert backfill_only.batch.new_references["年金计划"] == 0
    assert "merged keys resolved: 年金计划 1 rows" in backfill_only.batch.message


def test_merge_refusals_change_nothing(config_copy, django_user_model):
    user = django_user_model.objects.create_user("s")
    AnnuityPlan.objects.create(plan_code="P1")
    AnnuityPlan.objects.create(plan_code="P2")
    derived("N1")
    with pytest.raises(MergeRefused, match="'P2' is authoritative"):
        merge(table="年金计划", wrong_key="P2", right_key="P1", user=user)
    with pytest.raises(MergeRefused, match="no row with key 'P9' to merge 'N1' into"):
        merge(table="年金计划", wrong_key="N1", right_key="P9", user=user)
    with pytest.raises(MergeRefused, match="into itself"):
        merge(table="年金计划", wrong_key="N1", right_key="N1", user=user)
    assert AnnuityPlan.objects.count() == 3 and not KeyAlias.objects.exists()


def test_a_chain_of_merges_keeps_aliases_pointing_at_the_surviving_key(config_copy, django_user_model):
    user = django_user_model.objects.create_user("s")
    AnnuityPlan.objects.create(plan_code="P1")
    derived("N1")
    derived("N2")
    merge(table="年金计划", wrong_key="N1", right_key="N2", user=user)
    AnnuityPlan.objects.filter(pk="N2").update(source=Source.AUTO_DERIVED)
    merge(table="年金计划", wrong_key="N2", right_key="P1", user=user)
    assert dict(KeyAlias.objects.values_list("alias", "canonical")) == {"N1": "P1", "N2": "P1"}


def test_review_weights_follow_loads_merges_and_the_periodic_refresh(config_copy, tmp_path, django_user_model):
    from pipeline.facts.usage import refresh_pending_usage

    create_references()
    rows = [
        scale_row(计划号="N7", 期末资产规模=100.0),
        scale_row(计划号="N7", 期末资产规模=50.5),
        scale_row(计划号="N8"),
    ]
    load(tmp_path, "a.xlsx", rows)
    usage = AnnuityPlan.objects.get(pk="N7").usage
    assert (usage.fact_rows, usage.closing_assets, usage.months) == (2, Decimal("150.50"), 1)

    load(tmp_path, "b.xlsx", [scale_row(计划号="N7", 月度="202412", 期末资产规模=1.0)])  # N7 exists: not refreshed yet
    assert refresh_pending_usage()["年金计划"] == 2
    usage = AnnuityPlan.objects.get(pk="N7").usage
    assert (usage.fact_rows, usage.months) == (3, 2)

    merge(table="年金计划", wrong_key="N8", right_key="N7", user=django_user_model.objects.create_user("s"))
    assert AnnuityPlan.objects.get(pk="N7").usage.fact_rows == 4
    assert list(
        AnnuityPlan.objects.filter(needs_review=True).order_by("-usage__fact_rows").values_list("pk", flat=True)
    ) == ["N7"]


def snapshot() -> dict:
    """Every reference row, every fact's reference keys and the aliases, to compare states exactly."""
    from django.forms.models import model_to_dict

    from reference.registry import all_tables

    state = {t.name: {r.pk: model_to_dict(r) for r in t.model.objects.all()} for t in all_tables()}
    state["facts"] = {
        (m._meta.db_table, pk): keys
        for m in (ScaleFact, IncomeFact)
        for pk, *keys in m.objects.values_list("pk", "plan_id", "portfolio_id", "branch_id", "product_line_id")
    }
    state["aliases"] = set(KeyAlias.objects.values_list("table", "alias", "canonical"))
    return state


def steward_user(django_user_model):
    from django.contrib.auth.models import Group

    from reference.permissions import STEWARD_GROUP

    user = django_user_model.objects.create_user("steward", is_staff=True)
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    return user


def test_promote_is_recorded_per_row_and_undone_exactly(config_copy, django_user_model):
    from reference.history_models import ReferenceEvent
    from stewardship.undo import undo

    user = steward_user(django_user_model)
    for i in range(100):
        complete_code = f"N{i:03d}"
        derived(complete_code, short_name="s", plan_type="t", customer_name="c")
    before = snapshot()

    result = promote(queryset=AnnuityPlan.objects.all(), user=user)

    events = ReferenceEvent.objects.filter(context_id=result.context_id)
    assert events.count() == 100 and {e.after["_source"] for e in events} == {"authoritative"}
    assert (
        events.first().context.metadata["username"] == "steward"
        and events.first().context.metadata["action"] == "promote"
    )
    undo(context_id=result.context_id, user=user)
    assert snapshot() == before


def test_bulk_completion_is_recorded(config_copy, django_user_model):
    from reference.history_models import ReferenceEvent

    user = steward_user(django_user_model)
    derived("N1")
    derived("N2", customer_name="有")
    complete(queryset=AnnuityPlan.objects.all(), values={"customer_name": "新"}, clear=[], overwrite=False, user=user)
    [event] = ReferenceEvent.objects.all()
    assert (event.key, event.before["客户名称"], event.after["客户名称"]) == ("N1", None, "新")
    assert event.context.metadata["action"] == "bulk_complete"


def test_undo_of_a_merge_puts_facts_children_and_aliases_back_exactly(config_copy, tmp_path, django_user_model):
    from stewardship.undo import undo

    create_references()
    user = steward_user(django_user_model)
    typo, right = "P0O01", plan_code(1)
    load(
        tmp_path,
        "a.xlsx",
        [scale_row(计划号=typo, 组合代码="XNP1"), scale_row(计划号=typo, 月度="202410"), scale_row()],
    )
    derived("N5")
    merge(table="年金计划", wrong_key="N5", right_key=typo, user=user)  # an older alias pointing at the typo
    before = snapshot()

    result = merge(table="年金计划", wrong_key=typo, right_key=right, user=user)
    assert snapshot() != before and KeyAlias.objects.get(alias="N5").canonical == right

    undo(context_id=result.context_id, user=user)

    assert snapshot() == before
    assert ScaleFact.objects.filter(plan_id=typo).count() == 2 and PortfolioPlan.objects.get(pk="XNP1").plan_id == typo
    assert AnnuityPlan.objects.get(pk=typo).usage.fact_rows == 2
