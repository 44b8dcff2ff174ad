"""Every review path closes: an auto-derived key that facts use and that means nothing is rejected — its fact rows go
to the quarantine (隔离行), whole, and the row is deleted; merge stays the way for a typo of an existing key."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from pipeline.config import load_config
from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts.quarantine import QuarantineError, correct_quarantined, resubmit_quarantined
from pipeline.facts.service import process_fact_file
from pipeline.models import FactBatch, FactKind, QuarantinedRow, ScaleFact
from reference.history import Action, row_history
from reference.models import AnnuityPlan, PortfolioPlan, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP, ensure_groups
from stewardship.reject import RejectRefused, reject_to_quarantine
from tests.facts_support import PLANS, PORTFOLIOS, create_references, scale_row, write_csv

pytestmark = pytest.mark.django_db

JUNK_PLAN = "N9999"  # passes every key rule, means nothing: a steward rejects it


@pytest.fixture
def users(db):
    ensure_groups()
    steward = User.objects.create_user("steward", password="pw", is_staff=True)
    steward.groups.add(Group.objects.get(name=STEWARD_GROUP))
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER_GROUP))
    return steward, viewer


@pytest.fixture
def loaded(config_copy, tmp_path: Path) -> FactBatch:
    """A 12k-row month in which 240 rows carry the junk plan key (their portfolios exist: no child row)."""
    create_references()
    rows = [
        scale_row(
            计划号=JUNK_PLAN if i % 50 == 7 else plan_code(1 + (i % PORTFOLIOS) % PLANS),
            组合代码=portfolio_code(1 + i % PORTFOLIOS),
            期末资产规模=1000 + i,
        )
        for i in range(12_000)
    ]
    path = write_csv(tmp_path / "202411_规模明细.csv", rows)
    batch = process_fact_file(domain="annuity_performance", path=path, config=load_config()).batch
    assert AnnuityPlan.objects.get(pk=JUNK_PLAN).source == Source.AUTO_DERIVED
    return batch


def test_a_steward_rejects_a_key_its_fact_rows_wait_in_the_quarantine(loaded, users, client):
    steward, _ = users
    junk_rows = sorted(ScaleFact.objects.filter(plan_id=JUNK_PLAN).values_list("source_row", flat=True))
    assert len(junk_rows) == 240
    client.force_login(steward)
    change = client.get(reverse("admin:reference_annuityplan_change", args=[JUNK_PLAN])).content.decode()
    url = reverse("admin:reference_annuityplan_reject", args=[JUNK_PLAN])
    assert url in change and "驳回" in change
    page = client.get(url).content.decode()
    assert "240" in page and "隔离" in page
    refused = client.post(url, {"reason": "  "})
    assert refused.status_code == 200 and AnnuityPlan.objects.filter(pk=JUNK_PLAN).exists()
    done = client.post(url, {"reason": "不是计划号：导出时误填"}, follow=True)
    assert done.status_code == 200
    assert "240" in done.content.decode() and JUNK_PLAN in done.content.decode()
    assert not AnnuityPlan.objects.filter(pk=JUNK_PLAN).exists()
    assert not ScaleFact.objects.filter(plan_id=JUNK_PLAN).exists()
    assert ScaleFact.objects.count() == 12_000 - 240
    quarantined = QuarantinedRow.objects.filter(batch=loaded)
    assert sorted(quarantined.values_list("row_number", flat=True)) == junk_rows
    row = quarantined.first()
    assert row.file_name == "202411_规模明细.csv" and row.month.isoformat() == "2024-11-01"
    assert row.data["计划代码"] == JUNK_PLAN and row.data["期末资产规模"] is not None
    (problem,) = row.problems
    assert problem["reason"] == "rejected" and problem["note"] == "不是计划号：导出时误填"
    events = row_history(table="年金计划", key=JUNK_PLAN)
    assert events[0].metadata.get("action") == Action.REJECT.value


def test_rejected_rows_are_resubmitted_only_once_corrected(loaded, users):
    steward, _ = users
    result = reject_to_quarantine(table="年金计划", key=JUNK_PLAN, reason="junk", user=steward)
    assert result.rows == 240
    ids = list(QuarantinedRow.objects.values_list("pk", flat=True))
    with pytest.raises(QuarantineError, match="rejected"):
        resubmit_quarantined(ids=ids, user=steward)
    assert not AnnuityPlan.objects.filter(pk=JUNK_PLAN).exists()
    right = plan_code(1)
    assert correct_quarantined(
        ids=ids, table="年金计划", wrong_key=JUNK_PLAN, right_key=right, remember_alias=False, user=steward
    ) == len(ids)
    (again,) = resubmit_quarantined(ids=ids, user=steward).batches
    assert again.kind == FactKind.RESUBMIT and again.rows_loaded == 240
    assert ScaleFact.objects.filter(batch=again, plan_id=right).count() == 240
    assert ScaleFact.objects.count() == 12_000


def test_a_viewer_cannot_reject(loaded, users, client):
    _, viewer = users
    client.force_login(viewer)
    url = reverse("admin:reference_annuityplan_reject", args=[JUNK_PLAN])
    assert client.post(url, {"reason": "x"}).status_code == 403
    assert ScaleFact.objects.filter(plan_id=JUNK_PLAN).count() == 240 and not QuarantinedRow.objects.exists()


def test_authoritative_rows_and_rows_others_point_at_are_not_rejected(loaded, users):
    steward, _ = users
    with pytest.raises(RejectRefused, match="authoritative"):
        reject_to_quarantine(table="年金计划", key=plan_code(1), reason="x", user=steward)
    AnnuityPlan.objects.filter(pk=plan_code(2)).update(source=Source.AUTO_DERIVED)
    assert PortfolioPlan.objects.filter(plan_id=plan_code(2)).exists()
    with pytest.raises(RejectRefused, match="组合计划"):
        reject_to_quarantine(table="年金计划", key=plan_code(2), reason="x", user=steward)
    with pytest.raises(RejectRefused, match="reason"):
        reject_to_quarantine(table="年金计划", key=JUNK_PLAN, reason=" ", user=steward)
    assert ScaleFact.objects.count() == 12_000 and not QuarantinedRow.objects.exists()


def test_a_rejected_key_is_never_derived_again_its_rows_wait_in_the_quarantine(loaded, users, tmp_path):
    steward, _ = users
    reject_to_quarantine(table="年金计划", key=JUNK_PLAN, reason="不是计划号", user=steward)
    rows = [scale_row(月度="202412", 计划号=JUNK_PLAN.lower(), 组合代码=portfolio_code(i + 1)) for i in range(30)]
    rows += [scale_row(月度="202412", 计划号=plan_code(3), 组合代码=portfolio_code(3))]
    path = write_csv(tmp_path / "202412_规模明细.csv", rows)
    batch = process_fact_file(domain="annuity_performance", path=path, config=load_config()).batch
    assert batch.rows_loaded == 1 and not AnnuityPlan.objects.filter(pk=JUNK_PLAN).exists()
    again = QuarantinedRow.objects.filter(batch=batch)
    assert again.count() == 30
    assert {p["reason"] for q in again for p in q.problems} == {"rejected"}
