"""Every lookup fallback visible and fixable: values derived_columns cannot map are recorded per batch, reported, and
mapped once by a steward (later loads use the mapping; rows already loaded are re-pointed, recorded and undoable)."""

from __future__ import annotations

import random

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.urls import reverse

from pipeline.config import load_config
from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts.lookups import MappingRefused, map_value, unmap_value
from pipeline.facts.service import process_fact_file
from pipeline.models import ScaleFact, UnmappedValue, ValueMapping
from pipeline.reports import report_batch, send_review_report
from pipeline.selectors import open_unmapped
from reference.history import Action
from reference.models import AnnuityPlan
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP, ensure_groups
from stewardship.undo import undo
from tests.facts_support import PLANS, PORTFOLIOS, create_references, scale_row, write_csv, write_xlsx

pytestmark = pytest.mark.django_db

MARS, NEW_LINE = "火星分公司", "企年新业务"


@pytest.fixture
def users(db):
    ensure_groups()
    steward = User.objects.create_user("steward", password="pw", is_staff=True)
    steward.groups.add(Group.objects.get(name=STEWARD_GROUP))
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER_GROUP))
    return steward, viewer


@pytest.fixture
def references(config_copy):
    create_references()


def rows(n: int, *, month: str = "202411", seed: int = 5) -> list[dict]:
    """``n`` rows: most on known branches and business types; every 40th on 火星分公司 (new plans N8xxx among them),
    every 90th with an unknown 业务类型."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        p = rnd.randrange(1, PORTFOLIOS + 1)
        row = scale_row(
            月度=month, 计划号=plan_code(1 + (p - 1) % PLANS), 组合代码=portfolio_code(p), 期末资产规模=1000 + i
        )
        if i % 40 == 0:
            row.update(机构=MARS, 计划号=f"N8{i % 3:03d}")
        if i % 90 == 1:
            row["业务类型"] = NEW_LINE
        out.append(row)
    return out


def load(path):
    return process_fact_file(domain="annuity_performance", path=path, config=load_config())


def test_fallbacks_are_recorded_per_batch_and_reported(references, tmp_path, settings):
    settings.REFGOV_NOTIFIERS = ["email"]
    settings.REFGOV_NOTIFY_EMAILS = ["stewards@example.com"]
    result = load(write_csv(tmp_path / "202411_规模明细.csv", rows(12_000)))
    batch = result.batch
    found = {(u.column, u.value): (u.rows, u.fallback) for u in UnmappedValue.objects.filter(batch=batch)}
    assert found == {("机构代码", MARS): (300, "G00"), ("产品线代码", NEW_LINE): (134, None)}
    assert ScaleFact.objects.filter(batch=batch, branch_name=MARS, branch_id="G00").count() == 300
    assert ScaleFact.objects.filter(batch=batch, business_type=NEW_LINE, product_line_id=None).count() == 134
    assert f"机构名称 {MARS} → 机构代码 G00 (300 rows)" in batch.message
    assert f"业务类型 {NEW_LINE} → 产品线代码 NULL (134 rows)" in batch.message
    assert {u["value"] for u in result.summary()["unmapped"]} == {MARS, NEW_LINE}

    report_batch(batch.pk, channel="data-quality-alerts", alert_share=1.0)
    assert MARS in mail.outbox[-1].body and "未映射值" in mail.outbox[-1].body
    assert "2 unmapped values" in mail.outbox[-1].subject or "2" in mail.outbox[-1].subject
    html, xlsx, _ = send_review_report(channel="data-quality-alerts")
    assert MARS in html.read_text(encoding="utf-8") and "未映射值" in mail.outbox[-1].body
    from openpyxl import load_workbook

    sheet = load_workbook(xlsx)["未映射值"]
    assert {sheet.cell(r, 3).value for r in range(2, sheet.max_row + 1)} == {MARS, NEW_LINE}


def test_a_mapping_repoints_loaded_rows_later_loads_use_it_and_undo_puts_them_back(references, tmp_path, users):
    steward, _ = users
    load(write_csv(tmp_path / "202411_规模明细.csv", rows(10_000)))
    derived = AnnuityPlan.objects.filter(plan_code__startswith="N8")
    assert set(derived.values_list("lead_branch", "lead_branch_code")) == {(MARS, "G00")}
    with pytest.raises(MappingRefused):
        map_value(table="组织架构", match="机构", value=MARS, key="G99", user=steward)
    result = map_value(table="组织架构", match="机构", value=MARS, key="G05", user=steward)
    assert result.fact_rows == {"规模明细": 250, "收入明细": 0} and result.reference_rows == {"年金计划": 3}
    assert ScaleFact.objects.filter(branch_name=MARS, branch_id="G05").count() == 250
    assert set(derived.values_list("lead_branch_code", flat=True)) == {"G05"}
    assert open_unmapped() and all(v.value != MARS for v in open_unmapped())
    # the history holds the reference change under the mapping's context
    mapping = ValueMapping.objects.get(value=MARS)
    from pghistory.models import Context

    assert Context.objects.get(pk=mapping.context_id).metadata["action"] == Action.MAP_VALUE

    later = load(write_xlsx(tmp_path / "202412_规模明细.xlsx", {"规模明细": rows(2_000, month="202412", seed=9)}))
    assert ScaleFact.objects.filter(batch=later.batch, branch_name=MARS).values_list("branch_id", flat=True).distinct()
    assert set(ScaleFact.objects.filter(batch=later.batch, branch_name=MARS).values_list("branch_id", flat=True)) == {
        "G05"
    }
    assert not UnmappedValue.objects.filter(batch=later.batch, value=MARS).exists()

    undo(context_id=mapping.context_id, user=steward)
    assert not ValueMapping.objects.filter(value=MARS).exists()
    assert set(ScaleFact.objects.filter(branch_name=MARS).values_list("branch_id", flat=True)) == {"G00"}
    assert set(derived.values_list("lead_branch_code", flat=True)) == {"G00"}


def test_unmap_puts_the_fallback_back(references, tmp_path, users):
    steward, _ = users
    load(write_csv(tmp_path / "202411_规模明细.csv", rows(10_000)))
    map_value(table="产品线", match="产品线", value=NEW_LINE, key="PL201", user=steward)
    assert ScaleFact.objects.filter(business_type=NEW_LINE, product_line_id="PL201").count() == 112
    changed = unmap_value(mapping_id=ValueMapping.objects.get().pk, user=steward)
    assert changed == 112
    assert ScaleFact.objects.filter(business_type=NEW_LINE, product_line_id=None).count() == 112


def test_admin_lists_unmapped_values_stewards_map_viewers_only_see(references, tmp_path, users, client):
    steward, viewer = users
    load(write_csv(tmp_path / "202411_规模明细.csv", rows(10_000)))
    url = reverse("admin:pipeline_unmappedvalue_changelist")
    mars = str(UnmappedValue.objects.get(value=MARS).pk)
    client.force_login(viewer)
    text = client.get(url).content.decode()
    assert "未映射值" in text and MARS in text and "G00" in text
    assert "map_selected" not in text
    client.post(url, {"action": "map_selected", "_selected_action": [mars], "_apply": "1", "key": "G05"})
    assert not ValueMapping.objects.exists()

    index = client.get(reverse("admin:index")).content.decode()
    assert '<span class="refgov-unmapped" style="color:#c62828;font-weight:bold">2<' in index

    client.force_login(steward)
    text = client.get(url).content.decode()
    assert "map_selected" in text
    done = client.post(
        url, {"action": "map_selected", "_selected_action": [mars], "_apply": "1", "key": "G05"}, follow=True
    )
    assert "250" in done.content.decode()
    assert ValueMapping.objects.get().key == "G05"
    assert ScaleFact.objects.filter(branch_name=MARS, branch_id="G05").count() == 250
    still = client.get(url + "?mapped=no").content.decode()
    assert NEW_LINE in still and MARS not in still
    index = client.get(reverse("admin:index")).content.decode()
    assert '<span class="refgov-unmapped" style="color:#c62828;font-weight:bold">1<' in index
