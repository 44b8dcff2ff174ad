"""The admin index shows how provisional each reference table is, and the last runs."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from django_q.models import Schedule

from pipeline.models import FactBatch, FactStatus, RunStatus, SyncRun
from reference.models import AnnuityPlan, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP

pytestmark = pytest.mark.django_db


def login(client, django_user_model, group):
    user = django_user_model.objects.create_user(f"u_{group}", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)


@pytest.mark.parametrize("group", [STEWARD_GROUP, VIEWER_GROUP])
def test_admin_index_dashboard(client, django_user_model, group):
    AnnuityPlan.objects.bulk_create(AnnuityPlan(plan_code=f"P{i}") for i in range(8))
    old = timezone.now() - timezone.timedelta(days=9)
    AnnuityPlan.objects.create(
        plan_code="N1", source=Source.AUTO_DERIVED, needs_review=True, derived_from_domain="d", derived_at=old
    )
    AnnuityPlan.objects.create(
        plan_code="N2",
        source=Source.AUTO_DERIVED,
        needs_review=False,
        derived_from_domain="d",
        derived_at=timezone.now(),
    )
    run = SyncRun.objects.create(status=RunStatus.PARTIAL)
    batch = FactBatch.objects.create(
        domain="annuity_performance", file_name="202411.xlsx", file_path="/x", checksum="c", status=FactStatus.LOADED
    )
    login(client, django_user_model, group)

    page = client.get("/admin/").content.decode()

    assert 'id="refgov-dashboard"' in page
    row = page[page.index('href="/admin/reference/annuityplan/"') :].split("</tr>")[0]
    cells = [c.split(">", 1)[1].split("<")[0].strip() for c in row.split("<td")[1:]]
    assert cells[:3] == ["10", "8", "2"]
    assert '?needs_review__exact=1">1</a>' in row
    assert "20.0%" in row and "refgov-over" in row  # above the default 10% threshold
    assert cells[-1] == "9"
    assert f"/admin/pipeline/syncrun/{run.pk}/change/" in page and "部分成功" in page
    assert "参考数据健康度" in page and "告警阈值（自动派生占比）：10%" in page
    assert f"/admin/pipeline/factbatch/{batch.pk}/change/" in page and "202411.xlsx" in page


def test_no_dashboard_without_reference_permission(client, django_user_model):
    user = django_user_model.objects.create_user("plain", password="pw", is_staff=True)
    client.force_login(user)
    assert 'id="refgov-dashboard"' not in client.get("/admin/").content.decode()


def test_a_broken_config_shows_the_problem_and_uses_the_schema_defaults(client, django_user_model, settings, tmp_path):
    (tmp_path / "reference_management.yml").write_text("strategy: sometimes\n", encoding="utf-8")
    settings.REFGOV_CONFIG_DIR = tmp_path
    now = timezone.now()
    for name, minutes_late in (("refgov.preload", 40), ("refgov.facts", 20)):
        Schedule.objects.create(name=name, func="x", schedule_type=Schedule.CRON, cron="0 1 * * *")
        Schedule.objects.filter(name=name).update(next_run=now - timedelta(minutes=minutes_late))
    login(client, django_user_model, STEWARD_GROUP)

    page = client.get("/admin/").content.decode()

    assert "告警阈值（自动派生占比）：10%" in page  # backfill.alert_share's default
    assert "reference_management.yml" in page and "sometimes" in page
    late = page[page.index('id="refgov-alerts"') :].split("</table>")[0]
    assert "refgov.preload" in late and "refgov.facts" not in late  # alerts.missed_schedule_minutes's default: 30
