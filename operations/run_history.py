"""Run history: preload runs, fact batches, django-q2 tasks and alerts of a time range on one timeline.

A run or batch belongs to the q2 task during whose execution it started (the task runs it in its own process), so
"what happened last night" is answered from one list: task → the runs and batches it made → their results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_q.models import Task

from pipeline.models import Alert, FactBatch, FactStatus, InboxFile, InboxState, RunStatus, SyncRun, TableStatus

TASK_PREFIXES = ("operations.tasks.", "pipeline.tasks.")  # refgov's tasks; the second, before they moved


class EntryKind(StrEnum):
    TASK = "task"
    PRELOAD = "preload"
    FACTS = "facts"
    ALERT = "alert"


class AlertState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


STATUS_LABELS = {
    **dict(RunStatus.choices),
    **dict(FactStatus.choices),
    AlertState.OPEN.value: gettext_lazy("open"),
    AlertState.RESOLVED.value: gettext_lazy("resolved"),
}
RUN_TROUBLE = {RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.ABANDONED}
BATCH_TROUBLE = {FactStatus.REJECTED, FactStatus.FAILED, FactStatus.ABANDONED}


@dataclass
class Entry:
    at: dt.datetime
    kind: EntryKind
    title: str
    status: str
    url: str
    details: str = ""
    degraded: bool = False
    children: list[Entry] = field(default_factory=list)

    @property
    def status_label(self) -> str:
        return str(STATUS_LABELS.get(self.status, self.status))


@dataclass
class History:
    since: dt.datetime
    until: dt.datetime
    entries: list[Entry]

    def counts(self) -> dict[str, int]:
        flat = list(self.entries) + [c for e in self.entries for c in e.children]
        return {
            "tasks_failed": sum(e.kind == EntryKind.TASK and e.status == RunStatus.FAILED for e in flat),
            "runs_failed": sum(e.kind == EntryKind.PRELOAD and e.status in RUN_TROUBLE for e in flat),
            "batches_rejected": sum(e.kind == EntryKind.FACTS and e.status in BATCH_TROUBLE for e in flat),
            "batches_degraded": sum(e.kind == EntryKind.FACTS and e.degraded for e in flat),
        }


def _run_entry(run: SyncRun) -> Entry:
    tables = list(run.tables.all())
    failed = [t.table for t in tables if t.status != TableStatus.SUCCESS]
    details = _("%(ok)d of %(n)d tables synced") % {"ok": len(tables) - len(failed), "n": len(tables)}
    if failed:
        details += " · " + _("not synced: %s") % ", ".join(failed)
    upgrades = run.upgrades.filter(promoted=False).count()
    if upgrades:
        details += " · " + _("%d rows upgraded to authoritative") % upgrades
    confirmed = run.upgrades.filter(promoted=True).count()
    if confirmed:
        details += " · " + _("%d promoted rows confirmed by the source") % confirmed
    warnings = [f"{t.table}: {w}" for t in tables for w in t.warnings]
    if warnings:
        details += " · " + _("warnings: %s") % "; ".join(warnings)
    return Entry(
        at=run.started_at,
        kind=EntryKind.PRELOAD,
        title=_("preload run #%(pk)d (%(trigger)s)") % {"pk": run.pk, "trigger": run.trigger},
        status=run.status,
        url=reverse("admin:pipeline_syncrun_change", args=[run.pk]),
        details=details,
    )


def _batch_entry(batch: FactBatch) -> Entry:
    return Entry(
        at=batch.started_at,
        kind=EntryKind.FACTS,
        title=f"{batch.domain} · {batch.file_name}",
        status=batch.status,
        url=reverse("admin:pipeline_factbatch_change", args=[batch.pk]),
        details=batch.message,
        degraded=batch.degraded,
    )


def _task_entry(task: Task) -> Entry:
    view = "admin:django_q_success_change" if task.success else "admin:django_q_failure_change"
    result = task.result
    if isinstance(result, dict):
        details = str(result.get("outcome") or "")  # a preload's own status shows on its run below
    else:
        lines = str(result or "").strip().splitlines()
        details = lines[-1] if lines else ""
    return Entry(
        at=task.started,
        kind=EntryKind.TASK,
        title=f"{task.name} ({task.func.rsplit('.', 1)[-1]})",
        status=RunStatus.SUCCESS.value if task.success else RunStatus.FAILED.value,
        url=reverse(view, args=[task.id]),
        details=details[:300],
    )


def run_history(*, since: dt.datetime, until: dt.datetime) -> History:
    """Everything the pipeline did in [since, until), newest first; runs and batches under the task that made them."""
    in_range = Q(started_at__gte=since, started_at__lt=until)
    runs = [_run_entry(r) for r in SyncRun.objects.filter(in_range).prefetch_related("tables")]
    batches = [_batch_entry(b) for b in FactBatch.objects.filter(in_range)]
    tasks = Task.objects.filter(
        Q(func__startswith=TASK_PREFIXES[0]) | Q(func__startswith=TASK_PREFIXES[1]),
        started__gte=since,
        started__lt=until,
    )
    spans = [(t.started, t.stopped, _task_entry(t)) for t in tasks.order_by("started")]
    entries: list[Entry] = []
    for entry in runs + batches:
        owner = next((e for start, stop, e in spans if start <= entry.at <= stop), None)
        (owner.children if owner else entries).append(entry)
    entries.extend(e for _, _, e in spans)
    for alert in Alert.objects.filter(
        Q(first_seen__gte=since, first_seen__lt=until) | Q(resolved_at__gte=since, resolved_at__lt=until)
    ):
        entries.append(
            Entry(
                at=alert.first_seen,
                kind=EntryKind.ALERT,
                title=alert.subject,
                status=AlertState.RESOLVED.value if alert.resolved_at else AlertState.OPEN.value,
                url=reverse("admin:pipeline_alert_change", args=[alert.pk]),
                details=alert.resolution or _("seen %d times") % alert.times_seen,
            )
        )
    for entry in entries:
        entry.children.sort(key=lambda e: e.at)
    entries.sort(key=lambda e: e.at, reverse=True)
    return History(since=since, until=until, entries=entries)


def night_range(day: dt.date | None = None, *, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The local calendar day ``day``; without it, the last 24 hours."""
    if day is None:
        until = now or timezone.now()
        return until - dt.timedelta(hours=24), until
    start = timezone.make_aware(dt.datetime.combine(day, dt.time()))
    return start, start + dt.timedelta(days=1)


def inbox_attention() -> list[InboxFile]:
    """What waits in the inbox with nothing to process it (no domain matches it, or it cannot be moved out), now."""
    return list(InboxFile.objects.filter(state__in=[InboxState.UNMATCHED, InboxState.STUCK]).order_by("first_seen"))
