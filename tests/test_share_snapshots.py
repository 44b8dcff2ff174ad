"""The day's share snapshot (drawn on the dashboard) is recorded by ``check_shares``, the one call path of both the
periodic alert check and a batch's report."""

from __future__ import annotations

import pytest
from django.utils import timezone

from operations.alert_checks import check_alerts
from pipeline.alerts import check_shares
from pipeline.config import load_config
from pipeline.models import FactBatch, FactStatus, ShareSnapshot
from pipeline.reports import report_batch
from reference.models import AnnuityPlan, Source

pytestmark = pytest.mark.django_db


def plans(*, authoritative: int, pending: int) -> None:
    AnnuityPlan.objects.bulk_create(AnnuityPlan(plan_code=f"A{i}") for i in range(authoritative))
    now = timezone.now()
    AnnuityPlan.objects.bulk_create(
        AnnuityPlan(plan_code=f"N{i}", source=Source.AUTO_DERIVED, needs_review=True, derived_at=now)
        for i in range(pending)
    )


def today(table: str = "年金计划") -> tuple[int, int, int]:
    snap = ShareSnapshot.objects.get(day=timezone.localdate(), table=table)
    return snap.total, snap.auto_derived, snap.pending


def test_checking_the_shares_records_one_snapshot_per_table_and_day():
    plans(authoritative=3, pending=1)
    check_shares(threshold=0.5, channel="dq")
    assert today() == (4, 1, 1) and today("组合计划") == (0, 0, 0)

    AnnuityPlan.objects.create(plan_code="N9", source=Source.AUTO_DERIVED, needs_review=True, derived_at=timezone.now())
    check_shares(threshold=0.5, channel="dq")
    assert today() == (5, 2, 2)
    assert ShareSnapshot.objects.filter(table="年金计划").count() == 1  # the later check of the day replaces it


def test_the_alert_check_and_a_batch_report_both_record_the_snapshot(settings, tmp_path):
    settings.REFGOV_REPORTS_DIR = tmp_path / "reports"
    settings.REFGOV_NOTIFIERS = ["log"]
    plans(authoritative=2, pending=2)
    check_alerts(config=load_config())
    assert today() == (4, 2, 2)

    ShareSnapshot.objects.all().delete()
    batch = FactBatch.objects.create(
        domain="annuity_performance", file_name="202411.xlsx", file_path="/x", checksum="c", status=FactStatus.LOADED
    )
    report_batch(batch.pk, channel="dq", alert_share=0.1)
    assert today() == (4, 2, 2)
