"""The nightly rhythm: the preload window, the fact run that follows it, and what happens when the preload failed.

The *window* starts at the last time the preload's cron string fired (01:00 Asia/Shanghai by default). The preload
is *current* when the latest finished run of this window synced every table (a later failure means the source is
down now, whatever an earlier run brought). A fact run with files waiting and no current
preload waits while a preload is running, tries one incremental sync (``facts.preload_missing: sync_first``), and
then loads in degraded mode (hybrid) or leaves the files waiting (preload_only / backfill disabled)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from croniter import croniter
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from pipeline.alerts import alert_channel, raise_alert, resolve_alerts
from pipeline.config import load_config
from pipeline.config.loader import LoadedConfig
from pipeline.config.schema import PreloadMissing, Strategy
from pipeline.facts.inbox import InboxResult, Rejected, process_inbox, waiting_files
from pipeline.facts.service import FactOutcome, blocks_unknown_keys
from pipeline.models import AlertKind, RunStatus, SyncRun, TableStatus
from pipeline.preload import PreloadBusy, preload_running, run_preload

logger = logging.getLogger("refgov.orchestration")
CATCH_UP_TRIGGER = "facts-window"


@dataclass
class PreloadState:
    expected: bool
    window_start: dt.datetime | None = None
    succeeded: SyncRun | None = None
    last_run: SyncRun | None = None
    running: bool = False
    catch_up_tried: bool = False

    @property
    def current(self) -> bool:
        return not self.expected or self.succeeded is not None

    def describe(self) -> str:
        if not self.expected:
            return _("no preload configured")
        start = f"{timezone.localtime(self.window_start):%Y-%m-%d %H:%M}"
        if self.succeeded:
            return _("preload run #%(run)d of the window from %(start)s synced every table") % {
                "run": self.succeeded.pk,
                "start": start,
            }
        if self.last_run:
            return _("preload run #%(run)d of the window from %(start)s: %(status)s") % {
                "run": self.last_run.pk,
                "start": start,
                "status": self.last_run.get_status_display(),
            }
        return _("no preload run since %(start)s") % {"start": start}


def covered_every_table(runs: QuerySet[SyncRun]) -> QuerySet[SyncRun]:
    """Finished runs in which every table synced (rejected rows alone make a run partial, not uncovered)."""
    return (
        runs.filter(status__in=[RunStatus.SUCCESS, RunStatus.PARTIAL], finished_at__isnull=False)
        .exclude(tables__status__in=[TableStatus.FAILED, TableStatus.SKIPPED])
        .exclude(tables__isnull=True)
    )


def preload_state(*, config: LoadedConfig, now: dt.datetime | None = None) -> PreloadState:
    c = config.config
    if not c.preload.enabled or c.strategy == Strategy.BACKFILL_ONLY:
        return PreloadState(expected=False)
    start = croniter(c.preload.schedule, timezone.localtime(now or timezone.now())).get_prev(dt.datetime)
    runs = SyncRun.objects.filter(started_at__gte=start).order_by("-started_at")
    latest = runs.filter(finished_at__isnull=False).first()
    return PreloadState(
        expected=True,
        window_start=start,
        succeeded=latest if latest and covered_every_table(runs.filter(pk=latest.pk)).exists() else None,
        last_run=runs.first(),
        running=preload_running(),
        catch_up_tried=runs.filter(trigger=CATCH_UP_TRIGGER).exists(),
    )


class WindowOutcome(StrEnum):
    """What a fact run did with the waiting files (the ``outcome`` of its summary and of its task result)."""

    NOTHING_WAITING = "nothing waiting"
    PRELOAD_RUNNING = "waiting: a preload is running; its success processes the files"
    NO_CURRENT_PRELOAD = "waiting: facts are not loaded without a current preload under this strategy"
    INBOX_BUSY = "waiting: another fact run holds the inbox"
    DEGRADED = "degraded"
    PROCESSED = "processed"


@dataclass
class FactWindowResult:
    trigger: str
    waiting: list[str] = field(default_factory=list)
    outcome: WindowOutcome | None = None
    preload: str = ""
    catch_up_run: int | None = None
    degraded: bool = False
    inbox: InboxResult | None = None
    screened: InboxResult | None = None  # no file loaded: only what is never read or matched was dealt with

    @property
    def rejected(self) -> list[Rejected]:
        seen = self.inbox or self.screened
        return seen.rejected if seen else []

    @property
    def refused(self) -> str:
        seen = self.inbox or self.screened
        return seen.refused if seen else ""

    def summary(self) -> dict:
        seen = self.inbox or self.screened
        return {
            "trigger": self.trigger,
            "outcome": self.outcome.value if self.outcome else "",
            "preload": self.preload,
            "waiting": self.waiting,
            "catch_up_run": self.catch_up_run,
            "degraded": self.degraded,
            **(seen.summary() if seen else {}),
        }


def run_fact_window(
    *, trigger: str, config: LoadedConfig | None = None, inbox: Path | None = None, now: dt.datetime | None = None
) -> FactWindowResult:
    """Process the waiting inbox files if the preload of the window allows it (see the module docstring)."""
    config = config or load_config()
    result = FactWindowResult(trigger=trigger, waiting=[p.name for p in waiting_files(inbox=inbox)])

    def screened(outcome: WindowOutcome) -> FactWindowResult:
        # nothing is loaded now, but links, unmatched files and killed attempts are dealt with all the same
        result.outcome, result.screened = outcome, process_inbox(inbox=inbox, config=config, load=False)
        return result

    if not result.waiting:
        return screened(WindowOutcome.NOTHING_WAITING)
    state = preload_state(config=config, now=now)
    if not state.current and state.running:
        result.preload = state.describe()
        return screened(WindowOutcome.PRELOAD_RUNNING)
    if (
        not state.current
        and config.config.facts.preload_missing == PreloadMissing.SYNC_FIRST
        and not state.catch_up_tried
    ):
        logger.warning("fact run (%s): %s; incremental sync first", trigger, state.describe())
        try:
            result.catch_up_run = run_preload(trigger=CATCH_UP_TRIGGER, config=config).run.pk
        except PreloadBusy:
            return screened(WindowOutcome.PRELOAD_RUNNING)
        state = preload_state(config=config, now=now)
    result.preload = state.describe()
    channel = alert_channel(config)
    if not state.current and blocks_unknown_keys(config):
        screened(WindowOutcome.NO_CURRENT_PRELOAD)
        raise_alert(
            kind=AlertKind.FACTS_WAITING,
            key=AlertKind.FACTS_WAITING.value,
            channel=channel,
            subject=_("%(n)d fact files wait for the preload (%(state)s)")
            % {"n": len(result.waiting), "state": state.describe()},
            text="\n".join(result.waiting),
            data={"files": result.waiting},
        )
        return result
    result.degraded = not state.current
    result.inbox = process_inbox(inbox=inbox, config=config, degraded=result.degraded)
    if result.inbox.busy:
        result.outcome = WindowOutcome.INBOX_BUSY
        return result
    result.outcome = WindowOutcome.DEGRADED if result.degraded else WindowOutcome.PROCESSED
    loaded = [b for p in result.inbox.processed for b in p.batches if b.outcome == FactOutcome.LOADED]
    if loaded or result.inbox.rejected:
        resolve_alerts(
            key=AlertKind.FACTS_WAITING.value, channel=channel, resolution=_("the waiting files were processed")
        )
    if result.degraded and loaded:
        raise_alert(
            kind=AlertKind.DEGRADED,
            key=AlertKind.DEGRADED.value,
            channel=channel,
            subject=_("fact files loaded in degraded mode: %(state)s") % {"state": state.describe()},
            text="\n".join(f"{b.domain}: {b.file} batch #{b.batch_id}" for b in loaded),
            data={"batches": [b.batch_id for b in loaded]},
        )
    return result


def after_preload(*, run: SyncRun, config: LoadedConfig, inbox: Path | None = None) -> bool:
    """Chain: whether a finished preload should hand the waiting files to a fact run now."""
    facts = config.config.facts
    if not (facts.enabled and facts.after_preload):
        return False
    if not covered_every_table(SyncRun.objects.filter(pk=run.pk)).exists():
        return False
    return bool(waiting_files(inbox=inbox))
