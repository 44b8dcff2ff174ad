"""Schedules from config, the tasks they run (django-q2 in sync mode) and the fact inbox."""

from __future__ import annotations

import datetime as dt
import io
import os
import time
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from operations.schedules import sync_schedules
from pipeline.config import load_config
from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset
from pipeline.facts.inbox import INBOX_LOCK, month_of, process_inbox
from pipeline.models import FactBatch, FactStatus, SyncRun
from tests.facts_support import create_references
from tests.legacy import edit_config

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_schedules_follow_the_config(config_copy):
    first = sync_schedules(config=load_config())
    assert sorted(first.created) == [
        "refgov.alerts",
        "refgov.facts",
        "refgov.facts_poll",
        "refgov.preload",
        "refgov.review_report",
    ]
    preload = Schedule.objects.get(name="refgov.preload")
    assert (preload.func, preload.cron, preload.schedule_type) == (
        "operations.tasks.preload_task",
        "0 1 * * *",
        Schedule.CRON,
    )
    local = preload.next_run.astimezone(SHANGHAI)
    assert (local.hour, local.minute) == (1, 0)  # 01:00 in Asia/Shanghai

    again = sync_schedules(config=load_config())
    assert again.created == again.updated == again.deleted == [] and len(again.unchanged) == 5

    edit_config(config_copy, lambda d: (d["preload"].update(schedule="30 0 * * *"), d["facts"].update(enabled=False)))
    changed = sync_schedules(config=load_config())
    assert changed.updated == ["refgov.preload"] and sorted(changed.deleted) == ["refgov.facts", "refgov.facts_poll"]
    assert Schedule.objects.get(name="refgov.preload").cron == "30 0 * * *"
    assert not Schedule.objects.filter(name="refgov.facts").exists()
    assert Schedule.objects.filter(name="other.job").count() == 0


def test_setup_schedules_keeps_schedules_of_others(config_copy):
    Schedule.objects.create(name="other.job", func="math.floor", args="1", schedule_type=Schedule.DAILY)
    sync_schedules(config=load_config())
    assert Schedule.objects.filter(name="other.job").exists()


def test_a_due_preload_schedule_runs(legacy, config_dir):
    from django_q.scheduler import scheduler

    legacy.load(LegacyDataset(plans=10, portfolios=12))
    sync_schedules(config=load_config())
    Schedule.objects.filter(name="refgov.preload").update(next_run=timezone.now() - dt.timedelta(minutes=1))

    scheduler()

    run = SyncRun.objects.get()
    assert run.trigger == "schedule" and run.status == "success"
    assert Schedule.objects.get(name="refgov.preload").next_run > timezone.now()


def test_inbox_files_are_processed_in_month_order_and_moved(config_copy, tmp_path, settings):
    create_references()
    inbox = tmp_path / "inbox"
    settings.REFGOV_INBOX_DIR = inbox
    legacy = LegacyDataset(plans=30, portfolios=40)
    FactWorkbook(month="202411", scale_rows=60, income_rows=30, legacy=legacy).write(
        inbox / "2024年11月_年金业务明细.xlsx"
    )
    FactWorkbook(month="202410", scale_rows=50, income_rows=20, legacy=legacy).write(inbox / "202410_年金业务明细.xlsx")
    (inbox / "202409_规模明细.xlsx").write_bytes(b"not a workbook")
    (inbox / "notes.txt").write_text("not a fact file", encoding="utf-8")

    result = process_inbox()

    assert [p.file for p in result.processed] == ["202410_年金业务明细.xlsx", "2024年11月_年金业务明细.xlsx"]
    loaded = list(FactBatch.objects.filter(status=FactStatus.LOADED).order_by("id").values_list("domain", "periods"))
    assert loaded == [
        ("annuity_income", ["2024-10-01"]),
        ("annuity_performance", ["2024-10-01"]),
        ("annuity_income", ["2024-11-01"]),
        ("annuity_performance", ["2024-11-01"]),
    ]
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == [
        "202410_年金业务明细.xlsx",
        "2024年11月_年金业务明细.xlsx",
    ]
    [rejected] = result.rejected
    assert rejected.file == "202409_规模明细.xlsx"
    error_text = (inbox / "rejected" / "202409_规模明细.xlsx.error.txt").read_text(encoding="utf-8")
    assert "annuity_performance: 202409_规模明细.xlsx" in error_text and "not a readable Excel workbook" in error_text
    assert result.unmatched == ["notes.txt"] and (inbox / "notes.txt").exists()

    assert process_inbox().processed == []  # nothing left: processed files were moved away


def test_only_one_inbox_run_at_a_time(config_copy, tmp_path, settings):
    import psycopg

    settings.REFGOV_INBOX_DIR = tmp_path
    params = connection.get_connection_params()
    other = psycopg.connect(
        **{k: v for k, v in params.items() if k in {"host", "port", "user", "dbname", "password"}}, autocommit=True
    )
    try:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", [INBOX_LOCK])
        assert process_inbox().busy is True
        other.execute("SELECT pg_advisory_unlock(hashtext(%s))", [INBOX_LOCK])  # close() alone releases it later
    finally:
        other.close()
    assert process_inbox().busy is False


@pytest.mark.parametrize(
    "name, month",
    [
        ("202411_规模明细.xlsx", dt.date(2024, 11, 1)),
        ("2024年3月_年金业务明细.xlsx", dt.date(2024, 3, 1)),
        ("规模明细_2024-12.csv", dt.date(2024, 12, 1)),
        ("明细.xlsx", None),
    ],
)
def test_month_in_file_names(name, month):
    assert month_of(name) == month


def test_tasks_run_through_django_q_in_sync_mode(config_copy, tmp_path, settings):
    from django_q.models import Task
    from django_q.tasks import async_task

    settings.REFGOV_INBOX_DIR = tmp_path / "empty-inbox"
    (tmp_path / "empty-inbox").mkdir()
    async_task("operations.tasks.review_report_task", task_name="review")
    async_task("operations.tasks.process_inbox_task", task_name="inbox")

    review, inbox = Task.objects.get(name="review"), Task.objects.get(name="inbox")
    assert review.success and str(review.result).endswith(".html")
    assert (settings.REFGOV_REPORTS_DIR / review.result.split("/")[-1]).exists()
    assert inbox.success and inbox.result["outcome"] == "nothing waiting" and inbox.result["waiting"] == []


def test_a_file_still_being_copied_waits(config_copy, tmp_path, settings):
    create_references()
    settings.REFGOV_INBOX_DIR = tmp_path
    settings.REFGOV_INBOX_SETTLE_SECONDS = 1
    path = FactWorkbook(
        month="202411", scale_rows=20, income_rows=10, legacy=LegacyDataset(plans=30, portfolios=40)
    ).write(tmp_path / "202411_年金业务明细.xlsx")
    assert process_inbox().processed == [] and path.exists() and not FactBatch.objects.exists()

    old = path.stat().st_mtime - 120
    os.utime(path, (old, old))  # cp -p, rsync -t: an old mtime proves nothing, the file changed since the last scan
    assert process_inbox().processed == [] and path.exists() and not FactBatch.objects.exists()
    time.sleep(1.1)  # unchanged across two scans the settle time apart
    assert [p.file for p in process_inbox().processed] == [path.name]


def test_enqueue_and_demo_workbook_commands(config_copy, tmp_path, settings):
    from django_q.models import Task

    settings.REFGOV_INBOX_DIR = tmp_path / "inbox"
    out = io.StringIO()
    call_command("demo_workbook", "--month", "2024年12月", "--plans", "30", "--portfolios", "40", stdout=out)
    written = tmp_path / "inbox" / "202412_年金业务明细.xlsx"
    assert out.getvalue().strip() == f"demo fact workbook: {written}" and written.exists()
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == [written.name]  # no partial file left behind
    create_references()
    edit_config(config_copy, lambda d: d.update(strategy="backfill_only"))  # no preload expected: not degraded

    call_command("enqueue", "facts", stdout=io.StringIO())  # sync mode in tests: runs at once

    task = Task.objects.get(name="refgov.facts (manual)")
    assert task.success and task.result["trigger"] == "manual" and task.result["outcome"] == "processed"
    assert FactBatch.objects.filter(status=FactStatus.LOADED).count() == 2
    with pytest.raises(CommandError):
        call_command("enqueue", "nonsense")
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("demo_workbook", "--month", "2024-13", stderr=err)
    assert "--month" in err.getvalue() and "2024-13" in err.getvalue()
