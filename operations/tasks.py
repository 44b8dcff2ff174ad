"""django-q2 entry points: thin callers of the same services as the management commands.

A task that finds a failure raises, so that django-q2 records it as failed where operators look."""

from __future__ import annotations

import logging

from django_q.tasks import async_task

from operations.alert_checks import check_alerts
from operations.orchestration import after_preload, run_fact_window
from pipeline.config import load_config
from pipeline.facts.uploads import load_upload
from pipeline.facts.usage import refresh_pending_usage
from pipeline.models import FactUpload, UploadState
from pipeline.preload import run_preload
from pipeline.reports import send_review_report
from pipeline.runs_liveness import close_abandoned_runs

logger = logging.getLogger("refgov.orchestration")
FACTS_TASK = "operations.tasks.process_inbox_task"
UPLOAD_TASK = "operations.tasks.load_upload_task"


class TaskFailed(RuntimeError):
    pass


def preload_task(trigger: str = "schedule", full: bool = False) -> dict:
    """The nightly preload; when it synced every table, the waiting fact files are processed right after."""
    config = load_config()
    result = run_preload(trigger=trigger, config=config, full=full)
    summary = result.summary()
    if after_preload(run=result.run, config=config):
        summary["facts_task"] = async_task(
            FACTS_TASK, "preload", task_name=f"refgov.facts after preload #{result.run.pk}"
        )
        logger.info("preload run %s: fact processing queued as task %s", result.run.pk, summary["facts_task"])
    if not result.ok:
        raise TaskFailed(f"preload run {result.run.pk} {result.run.status}: {result.run.message}")
    return summary


def preload_full_task() -> dict:
    """``preload.full_schedule``: every source row, ignoring watermarks, so that deletions at the source and changes
    that do not move the incremental column are seen."""
    return preload_task(trigger="schedule-full", full=True)


def process_inbox_task(trigger: str = "schedule") -> dict:
    result = run_fact_window(trigger=trigger)
    if result.refused:
        raise TaskFailed(f"inbox not processed: {result.refused}")
    if result.rejected:
        raise TaskFailed(
            f"{len(result.rejected)} inbox file(s) rejected: " + "; ".join(r.errors[0] for r in result.rejected)
        )
    return result.summary()


def poll_inbox_task() -> dict:
    return process_inbox_task(trigger="poll")


def review_report_task() -> str:
    """The weekly review report, written to the reports directory and sent through the notifiers (xlsx attached)."""
    config = load_config().config
    html, xlsx, counts = send_review_report(
        channel=config.review_report.channel or config.backfill.notification_channel
    )
    logger.info("review report %s (%s): %s", html, xlsx.name, counts)
    return str(html)


def check_alerts_task() -> dict:
    """Every few minutes: close runs whose process is gone, refresh the review queue's weights, check the alerts."""
    config = load_config()
    abandoned = close_abandoned_runs(config=config)
    weights = refresh_pending_usage()
    return {**check_alerts(config=config).summary(), "review_weights": weights, **abandoned.summary()}


def load_upload_task(upload_id: int) -> dict:
    """A fact file a steward uploaded and confirmed in the admin (上传事实文件)."""
    upload = load_upload(upload_id=upload_id)
    summary = {"upload": upload.pk, "file": upload.file_name, "state": upload.state, "results": upload.results}
    if upload.state != UploadState.LOADED:
        raise TaskFailed(f"upload #{upload.pk} {upload.file_name} not loaded: {upload.message}")
    return summary


def enqueue_upload(*, upload_id: int) -> str:
    """Queue the load of a confirmed upload (with ``Q_CLUSTER['sync']`` it runs before this returns)."""
    task_id = str(async_task(UPLOAD_TASK, upload_id, task_name=f"refgov.upload #{upload_id}"))
    FactUpload.objects.filter(pk=upload_id).update(task_id=task_id)
    return task_id
