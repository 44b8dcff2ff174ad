"""django-q2 entry points: thin callers of the same services as the management commands.

A task that finds a failure raises, so that django-q2 records it as failed where operators look."""

from __future__ import annotations

from django.utils import timezone

from pipeline.facts.inbox import process_inbox
from pipeline.preload import run_preload
from pipeline.reports import pending_review, reports_dir, write_html


class TaskFailed(RuntimeError):
    pass


def preload_task() -> dict:
    result = run_preload(trigger="schedule")
    if not result.ok:
        raise TaskFailed(f"preload run {result.run.pk} {result.run.status}: {result.run.message}")
    return result.summary()


def process_inbox_task() -> dict:
    result = process_inbox()
    if result.rejected:
        raise TaskFailed(f"{len(result.rejected)} inbox file(s) rejected: " + "; ".join(r["errors"][0] for r in result.rejected))
    return result.summary()


def review_report_task() -> str:
    rows = pending_review()
    path = reports_dir() / f"review_{timezone.localtime():%Y%m%d_%H%M%S}.html"
    write_html(rows, path, title="待审核参考数据")
    return str(path)
