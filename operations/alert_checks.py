"""The alert conditions no run reports by itself, evaluated every 15 minutes (``check_alerts_task``) and by
``manage.py check_alerts``: auto-derived share too high, reviews waiting too long, schedules that did not run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.models import Schedule

from operations.schedules import PREFIX
from pipeline.alerts import alert_channel, check_shares, hold
from pipeline.config.loader import LoadedConfig
from pipeline.models import Alert, AlertKind
from reference.registry import all_tables


@dataclass
class LateSchedule:
    name: str
    func: str
    next_run: dt.datetime
    minutes_late: int


@dataclass
class AlertCheck:
    open: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"open": self.open}


def late_schedules(*, grace_minutes: int, now: dt.datetime | None = None) -> list[LateSchedule]:
    """refgov schedules whose next run is more than ``grace_minutes`` in the past: the cluster did not run them."""
    now = now or timezone.now()
    late = []
    overdue = Schedule.objects.filter(name__startswith=PREFIX, next_run__lt=now - dt.timedelta(minutes=grace_minutes))
    for s in overdue.exclude(repeats=0).order_by("next_run"):
        late.append(LateSchedule(s.name, s.func, s.next_run, int((now - s.next_run).total_seconds() // 60)))
    return late


def check_alerts(*, config: LoadedConfig, now: dt.datetime | None = None) -> AlertCheck:
    """Share above threshold, reviews older than ``stale_review_days``, schedules that did not run."""
    now = now or timezone.now()
    settings = config.config.alerts
    channel = alert_channel(config)
    check_shares(threshold=config.config.backfill.alert_share, channel=channel)
    cutoff = now - dt.timedelta(days=settings.stale_review_days)
    for ref in all_tables():
        stale = ref.model._default_manager.filter(needs_review=True, derived_at__lt=cutoff).count()
        hold(
            stale > 0,
            kind=AlertKind.STALE_REVIEWS,
            key=f"stale_reviews:{ref.name}",
            subject=_("%(table)s: %(rows)d rows pending review for more than %(days)d days")
            % {"table": ref.name, "rows": stale, "days": settings.stale_review_days},
            data={"table": ref.name, "rows": stale, "days": settings.stale_review_days},
            channel=channel,
            resolution=_("%(table)s: no row pending review for more than %(days)d days")
            % {"table": ref.name, "days": settings.stale_review_days},
        )
    late = {s.name: s for s in late_schedules(grace_minutes=settings.missed_schedule_minutes, now=now)}
    prefix = f"{AlertKind.MISSED_SCHEDULE.value}:"
    names = set(Schedule.objects.filter(name__startswith=PREFIX).values_list("name", flat=True)) | {
        key.removeprefix(prefix)
        for key in Alert.objects.filter(kind=AlertKind.MISSED_SCHEDULE, resolved_at__isnull=True).values_list(
            "key", flat=True
        )
    }
    for name in sorted(names):
        s = late.get(name)
        due = f"{timezone.localtime(s.next_run):%Y-%m-%d %H:%M}" if s else ""
        hold(
            s is not None,
            kind=AlertKind.MISSED_SCHEDULE,
            key=f"{prefix}{name}",
            subject=_("schedule %(name)s did not run (due %(due)s, %(late)d min late); is qcluster running?")
            % {"name": name, "due": due, "late": s.minutes_late}
            if s
            else "",
            data={"schedule": name, "minutes_late": s.minutes_late} if s else None,
            channel=channel,
            resolution=_("schedule %(name)s is on time again") % {"name": name},
        )
    result = AlertCheck()
    result.open = list(
        Alert.objects.filter(resolved_at__isnull=True).order_by("first_seen").values_list("subject", flat=True)
    )
    return result
