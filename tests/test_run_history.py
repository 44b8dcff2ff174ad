"""One admin page answers "what happened last night": q2 tasks with the runs and batches they made, and alerts;
the dashboard shows open alerts and late schedules; ``manage.py check_alerts`` for monitoring."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule, Task

from operations.schedules import sync_schedules
from pipeline.config import load_config
from pipeline.models import Alert, AlertKind, FactBatch, FactStatus, RunStatus, SyncRun, SyncTableResult
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP

pytestmark = pytest.mark.django_db


def login(client, django_user_model, group=None):
    user = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client.force_login(user)


def task(name: str, func: str, started, seconds: float, *, success: bool, result) -> Task:
    return Task.objects.create(
        id=f"{name}-id",
        name=name,
        func=f"operations.tasks.{func}",
        started=started,
        stopped=started + dt.timedelta(seconds=seconds),
        success=success,
        result=result,
    )


@pytest.fixture
def last_night():
    now = timezone.now()
    one = now - dt.timedelta(hours=8)
    three = now - dt.timedelta(hours=6)
    preload_task = task(
        "refgov.preload", "preload_task", one, 60, success=False, result="TaskFailed: preload run partial"
    )
    run = SyncRun.objects.create(
        started_at=one + dt.timedelta(seconds=1),
        finished_at=one + dt.timedelta(seconds=50),
        status=RunStatus.PARTIAL,
        trigger="schedule",
    )
    SyncTableResult.objects.create(run=run, table="年金计划", source="legacy", mode="full", status="failed")
    SyncTableResult.objects.create(run=run, table="产品线", source="file", mode="full", status="success")
    facts_task = task("refgov.facts", "process_inbox_task", three, 30, success=True, result={"outcome": "degraded"})
    batch = FactBatch.objects.create(
        domain="annuity_performance",
        file_name="202411_年金业务明细.xlsx",
        file_path="/inbox/x",
        checksum="c",
        status=FactStatus.LOADED,
        degraded=True,
        started_at=three + dt.timedelta(seconds=2),
        message="degraded: read 10",
    )
    stray = FactBatch.objects.create(
        domain="annuity_income",
        file_name="manual.csv",
        file_path="/x",
        checksum="d",
        status=FactStatus.REJECTED,
        started_at=now - dt.timedelta(hours=2),
    )
    alert = Alert.objects.create(
        kind=AlertKind.PRELOAD_FAILED,
        key="preload_failed",
        subject=f"preload run #{run.pk} partial",
        first_seen=one + dt.timedelta(seconds=51),
    )
    old = SyncRun.objects.create(started_at=now - dt.timedelta(days=3), status=RunStatus.SUCCESS)
    return {
        "run": run,
        "batch": batch,
        "stray": stray,
        "alert": alert,
        "old": old,
        "preload_task": preload_task,
        "facts_task": facts_task,
    }


@pytest.mark.parametrize("group", [STEWARD_GROUP, VIEWER_GROUP])
def test_run_history_shows_last_night_on_one_page(client, django_user_model, last_night, group):
    login(client, django_user_model, group)

    response = client.get("/admin/history/")

    assert response.status_code == 200
    page = response.content.decode()
    rows = page.split('id="refgov-history"')[1].split('<tr class="')[1:]
    kinds = [r.split('"')[0] for r in rows]
    # newest first; each run or batch right under the task that made it, the manual batch on its own
    assert kinds == [
        "entry entry-facts",
        "entry entry-task",
        "child entry-facts",
        "entry entry-alert",
        "entry entry-task",
        "child entry-preload",
    ]
    assert f"/admin/django_q/failure/{last_night['preload_task'].id}/change/" in rows[4]
    assert f"/admin/pipeline/syncrun/{last_night['run'].pk}/change/" in rows[5]
    assert "1 of 2 tables synced" in rows[5] or "2 张表中 1 张已同步" in rows[5]
    assert f"/admin/django_q/success/{last_night['facts_task'].id}/change/" in rows[1]
    assert f"/admin/pipeline/factbatch/{last_night['batch'].pk}/change/" in rows[2] and "status-partial" in rows[2]
    assert f"/admin/pipeline/syncrun/{last_night['old'].pk}/" not in page  # three days ago
    counts = page.split('id="refgov-history-counts">')[1].split("</p>")[0]
    assert [int(s) for s in re.findall(r"\d+", counts)] == [1, 1, 1, 1]

    day = (timezone.localdate() - dt.timedelta(days=3)).isoformat()
    assert (
        f"/admin/pipeline/syncrun/{last_night['old'].pk}/change/"
        in client.get(f"/admin/history/?day={day}").content.decode()
    )
    bad = client.get("/admin/history/?day=yesterday", follow=True).content.decode()
    assert "yesterday" in bad and 'class="entry' in bad  # says what is wrong, shows the last 24 hours


def test_run_history_needs_the_view_permission(client, django_user_model):
    login(client, django_user_model)
    assert client.get("/admin/history/").status_code == 403
    client.logout()
    assert client.get("/admin/history/").status_code == 302  # to the login page


def test_dashboard_shows_open_alerts_and_late_schedules(client, django_user_model, config_copy):
    sync_schedules(config=load_config())
    Schedule.objects.filter(name="refgov.preload").update(next_run=timezone.now() - dt.timedelta(hours=3))
    Alert.objects.create(kind=AlertKind.BATCH_REJECTED, key="batch_rejected:a:x.xlsx", subject="x.xlsx rejected")
    Alert.objects.create(kind=AlertKind.DEGRADED, key="degraded", subject="old news", resolved_at=timezone.now())
    login(client, django_user_model, VIEWER_GROUP)

    page = client.get("/admin/").content.decode()

    alerts = page.split('id="refgov-alerts"')[1].split("</table>")[0]
    assert "x.xlsx rejected" in alerts and "old news" not in alerts
    assert "refgov.preload" in alerts and "qcluster" in alerts
    assert "/admin/history/" in page


def test_check_alerts_command(config_copy):
    sync_schedules(config=load_config())
    out = io.StringIO()
    call_command("check_alerts", stdout=out)
    assert out.getvalue().strip() == "no open alerts"

    Schedule.objects.filter(name="refgov.alerts").update(next_run=timezone.now() - dt.timedelta(hours=1))
    out = io.StringIO()
    call_command("check_alerts", "--json", stdout=out)
    assert any("定时任务 refgov.alerts 未运行" in s for s in json.loads(out.getvalue())["open"])
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("check_alerts", "--strict", stdout=io.StringIO(), stderr=err)
    assert exit_info.value.code == 1 and "1 open alert(s)" in err.getvalue()


def test_the_dashboard_charts_share_and_pending_over_time(client, django_user_model, config_copy):
    from operations.alert_checks import check_alerts
    from pipeline.models import ShareSnapshot
    from reference.models import AnnuityPlan, Source

    today = timezone.localdate()
    for days_ago, auto, pending in [(30, 40, 40), (10, 20, 12)]:
        ShareSnapshot.objects.create(
            day=today - dt.timedelta(days=days_ago), table="年金计划", total=100, auto_derived=auto, pending=pending
        )
    AnnuityPlan.objects.bulk_create(AnnuityPlan(plan_code=f"P{i}") for i in range(9))
    AnnuityPlan.objects.create(plan_code="N1", source=Source.AUTO_DERIVED, needs_review=True, derived_at=timezone.now())

    check_alerts(config=load_config())  # today's snapshot
    check_alerts(config=load_config())  # the same day again: replaced, not added

    assert ShareSnapshot.objects.filter(day=today).count() == 4
    today_plans = ShareSnapshot.objects.get(day=today, table="年金计划")
    assert (today_plans.total, today_plans.auto_derived, today_plans.pending) == (10, 1, 1)
    login(client, django_user_model, VIEWER_GROUP)
    page = client.get("/admin/").content.decode()
    svg = page.split('id="refgov-share-chart"')[1].split("</svg>")[0]
    assert svg.count("<polyline") == 2  # 年金计划: share and pending, three days each
    assert "年金计划 10.0% · 1" in svg and "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "自动派生占比与待审核行数的变化" in page
