"""The nightly rhythm end to end on real databases: chaining, the fact window, degraded mode and healing, the
preload lock, and alerts sent once per condition. Transactional: commits happen as in production (on_commit
notifications, one connection per preload thread)."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from types import SimpleNamespace

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule, Task

from operations.alert_checks import check_alerts
from operations.orchestration import CATCH_UP_TRIGGER, preload_state, run_fact_window
from operations.schedules import sync_schedules
from operations.tasks import TaskFailed, preload_task
from pipeline.alerts import raise_alert, resolve_alerts
from pipeline.config import load_config
from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset, plan_code
from pipeline.models import Alert, AlertKind, FactBatch, FactStatus, SyncRun, SyncUpgrade
from pipeline.preload import PreloadBusy, run_preload
from pipeline.preload.service import PRELOAD_LOCK
from reference.models import AnnuityPlan, Source
from tests.legacy import edit_config

pytestmark = pytest.mark.django_db(transaction=True)
DOWN = "mysql://root@127.0.0.1:1"


@pytest.fixture
def night(legacy, config_dir, tmp_path, settings):
    shutil.copytree(django_settings.BASE_DIR / "config" / "domains", config_dir / "domains")
    dataset = LegacyDataset(plans=30, portfolios=40)
    legacy.load(dataset)
    settings.REFGOV_INBOX_DIR = tmp_path / "inbox"
    settings.REFGOV_NOTIFIERS = ["log"]
    return SimpleNamespace(
        config=config_dir, dataset=dataset, inbox=tmp_path / "inbox", legacy_url=settings.LEGACY_MYSQL_URL
    )


@pytest.fixture
def sent(caplog):
    """Subjects of the notifications sent so far (the log notifier)."""
    caplog.set_level(logging.WARNING, logger="refgov.notify")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "refgov.notify"]


def drop_workbook(night, month: str = "202411", *, new_keys: bool = True) -> str:
    name = f"{month}_年金业务明细.xlsx"
    workbook = FactWorkbook(
        month=month, scale_rows=300, income_rows=100, legacy=night.dataset, new_share=0.004 if new_keys else 0.0
    )
    workbook.write(night.inbox / name)
    return name


def other_session():
    params = connection.get_connection_params()
    keep = {"host", "port", "user", "dbname", "password"}
    return psycopg.connect(**{k: v for k, v in params.items() if k in keep}, autocommit=True)


def test_a_due_preload_runs_and_chains_the_waiting_files(night):
    from django_q.scheduler import scheduler

    name = drop_workbook(night)
    sync_schedules(config=load_config())
    Schedule.objects.filter(name="refgov.preload").update(next_run=timezone.now() - dt.timedelta(minutes=1))

    scheduler()

    run = SyncRun.objects.get()
    assert (run.trigger, run.status) == ("schedule", "success")
    batches = FactBatch.objects.order_by("domain")
    assert [(b.domain, b.status, b.degraded) for b in batches] == [
        ("annuity_income", FactStatus.LOADED, False),
        ("annuity_performance", FactStatus.LOADED, False),
    ]
    assert (night.inbox / "processed" / name).exists() and not (night.inbox / name).exists()
    chained = Task.objects.get(name=f"refgov.facts after preload #{run.pk}")
    assert chained.success and chained.result["trigger"] == "preload" and chained.result["outcome"] == "processed"


def test_outage_loads_degraded_alerts_once_and_the_next_preload_heals(night, settings, sent):
    settings.LEGACY_MYSQL_URL = DOWN
    with pytest.raises(TaskFailed, match="partial"):
        preload_task()  # 产品线 (a config file) syncs, the legacy tables do not
    assert not FactBatch.objects.exists()
    [alert] = Alert.objects.filter(kind=AlertKind.PRELOAD_FAILED)
    assert alert.is_open and "年金计划" in alert.subject

    first = drop_workbook(night, "202410")
    window = run_fact_window(trigger="schedule")

    assert window.catch_up_run is not None and window.degraded and window.outcome == "degraded"
    assert SyncRun.objects.get(pk=window.catch_up_run).trigger == CATCH_UP_TRIGGER
    assert set(FactBatch.objects.values_list("status", "degraded")) == {(FactStatus.LOADED, True)}
    assert FactBatch.objects.filter(message__startswith="degraded").count() == 2
    known = plan_code(1)
    assert AnnuityPlan.objects.get(plan_code=known).source == Source.AUTO_DERIVED  # the preload did not bring it

    drop_workbook(night, "202411")
    again = run_fact_window(trigger="poll")
    assert again.degraded and again.catch_up_run is None  # one catch-up sync per window, not one per poll
    assert (night.inbox / "processed" / first).exists()

    messages = sent()
    assert sum(m.startswith("[data-quality-alerts] 预加载运行") for m in messages) == 1  # two failed runs, one alert
    assert sum("降级模式" in m for m in messages) == 1
    assert Alert.objects.get(kind=AlertKind.DEGRADED).times_seen == 2

    settings.LEGACY_MYSQL_URL = night.legacy_url
    preload_task()

    healed = AnnuityPlan.objects.get(plan_code=known)
    assert healed.source == Source.AUTHORITATIVE and not healed.needs_review
    assert SyncUpgrade.objects.filter(table="年金计划", key=known).exists()
    assert not Alert.objects.filter(resolved_at__isnull=True, kind__in=[AlertKind.PRELOAD_FAILED, AlertKind.DEGRADED])
    resolved = [m for m in sent() if m.startswith("[") and "已解除：" in m]
    assert len(resolved) == 2 and any("已升级为权威记录" in m for m in resolved)
    assert preload_state(config=load_config()).current


def test_preload_only_facts_wait_for_the_preload(night, settings, sent):
    edit_config(night.config, lambda d: d.update(strategy="preload_only"))
    settings.LEGACY_MYSQL_URL = DOWN
    name = drop_workbook(night, new_keys=False)

    for _ in range(2):
        window = run_fact_window(trigger="schedule")
        assert window.outcome.startswith("waiting") and window.inbox is None
    assert not FactBatch.objects.exists() and (night.inbox / name).exists()
    assert SyncRun.objects.filter(trigger=CATCH_UP_TRIGGER).count() == 1
    assert sum("个事实文件在等待预加载" in m for m in sent()) == 1

    settings.LEGACY_MYSQL_URL = night.legacy_url
    preload_task()  # succeeds and hands the waiting files on

    assert set(FactBatch.objects.values_list("status", "degraded")) == {(FactStatus.LOADED, False)}
    assert not Alert.objects.filter(kind=AlertKind.FACTS_WAITING, resolved_at__isnull=True).exists()


def test_a_current_preload_is_not_repeated(night):
    run_preload(trigger="schedule")
    drop_workbook(night)
    window = run_fact_window(trigger="schedule")
    assert window.catch_up_run is None and not window.degraded and window.outcome == "processed"
    assert SyncRun.objects.count() == 1


def test_without_a_preload_in_the_window_the_fact_run_syncs_first(night):
    yesterday = timezone.now() - dt.timedelta(days=2)
    SyncRun.objects.create(trigger="schedule", status="success", started_at=yesterday, finished_at=yesterday)
    drop_workbook(night)

    window = run_fact_window(trigger="schedule")

    catch_up = SyncRun.objects.get(pk=window.catch_up_run)
    assert (catch_up.trigger, catch_up.status) == (CATCH_UP_TRIGGER, "success")
    assert window.outcome == "processed" and not FactBatch.objects.filter(degraded=True).exists()


def test_the_preload_lock_keeps_a_second_preload_and_the_fact_run_out(night):
    drop_workbook(night)
    other = other_session()
    try:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [PRELOAD_LOCK])
        with pytest.raises(PreloadBusy, match="another preload is running"):
            run_preload()
        window = run_fact_window(trigger="poll")
        assert window.outcome.startswith("waiting: a preload is running")
        other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [PRELOAD_LOCK])  # close() alone releases it later
    finally:
        other.close()
    assert not SyncRun.objects.exists() and not FactBatch.objects.exists()
    assert run_preload().ok


def test_alerts_are_sent_once_per_condition(night, sent):
    for _ in range(3):
        raise_alert(
            kind=AlertKind.BATCH_REJECTED, key="batch_rejected:x:a.xlsx", subject="a.xlsx rejected", channel="ops"
        )
    assert sent() == ["[ops] a.xlsx rejected: "]
    assert Alert.objects.get().times_seen == 3

    assert resolve_alerts(key="batch_rejected:x:a.xlsx", channel="ops", resolution="loaded") == 1
    assert resolve_alerts(key="batch_rejected:x:a.xlsx", channel="ops", resolution="loaded") == 0
    raise_alert(kind=AlertKind.BATCH_REJECTED, key="batch_rejected:x:a.xlsx", subject="a.xlsx rejected", channel="ops")
    assert sent() == ["[ops] a.xlsx rejected: ", "[ops] 已解除：a.xlsx rejected: loaded", "[ops] a.xlsx rejected: "]


def test_stale_reviews_and_missed_schedules_alert_once_and_clear(night, sent):
    config = load_config()
    sync_schedules(config=config)
    late = timezone.now() - dt.timedelta(hours=2)
    Schedule.objects.filter(name="refgov.preload").update(next_run=late)
    old = timezone.now() - dt.timedelta(days=20)
    AnnuityPlan.objects.create(plan_code="OLD1", source=Source.AUTO_DERIVED, needs_review=True, derived_at=old)

    first = check_alerts(config=config)
    second = check_alerts(config=config)

    assert first.open == second.open
    stale = [m for m in sent() if "待审核已超过 14 天" in m]
    missed = [m for m in sent() if "定时任务 refgov.preload 未运行" in m]
    assert len(stale) == 1 and "年金计划：1 行" in stale[0]
    assert len(missed) == 1 and "qcluster 是否在运行？" in missed[0]
    assert Alert.objects.get(kind=AlertKind.MISSED_SCHEDULE).times_seen == 2

    AnnuityPlan.objects.filter(plan_code="OLD1").update(needs_review=False, source=Source.AUTHORITATIVE)
    Schedule.objects.filter(name="refgov.preload").update(next_run=timezone.now() + dt.timedelta(hours=20))
    assert check_alerts(config=config).open == []
    resolved = [m for m in sent() if "已解除：" in m]
    assert sum("待审核已超过" in m for m in resolved) == 1
    assert sum("定时任务 refgov.preload 未运行" in m for m in resolved) == 1


def test_a_rejected_inbox_file_alerts_once(night, sent):
    run_preload()
    (night.inbox).mkdir(parents=True)
    for _ in range(2):
        (night.inbox / "202409_规模明细.xlsx").write_bytes(b"not a workbook")
        window = run_fact_window(trigger="poll")
        assert window.rejected
    assert FactBatch.objects.filter(status=FactStatus.REJECTED).count() == 2
    assert sum("202409_规模明细.xlsx" in m and "未加载任何数据" in m for m in sent()) == 1


def test_a_failure_after_a_success_in_the_same_window_counts(night, settings):
    assert run_preload().ok and preload_state(config=load_config()).current
    settings.LEGACY_MYSQL_URL = DOWN
    run_preload()
    state = preload_state(config=load_config())
    assert not state.current and state.describe().endswith("部分成功")
