"""django-q2 entry points: thin callers of the same services as the management commands.

A task that finds a failure raises, so that django-q2 records it as failed where operators look."""

from __future__ import annotations

from pipeline.facts.inbox import process_inbox
from pipeline.preload import run_preload
from pipeline.reports import write_review_report


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
    path, _ = write_review_report()
    return str(path)
