"""Operational alerts, each sent once per condition: raised while the condition holds, resolved when it clears.

``raise_alert`` notifies only when it opens an alert; seeing the condition again only counts it. ``resolve_alerts``
closes and says so once. ``check_alerts`` evaluates the conditions no run reports by itself (share too high, stale
reviews, missed schedules) and keeps the day's share snapshot for the dashboard chart; the q2 task and
``manage.py check_alerts`` call it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.utils.translation import gettext as _
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.models import Schedule

from pipeline.config.loader import LoadedConfig
from pipeline.models import Alert, AlertKind
from pipeline.notify import notify
from pipeline.schedules import PREFIX
from pipeline.share_history import record_share_snapshot
from reference.registry import all_tables


def alert_channel(config: LoadedConfig) -> str:
    return config.config.alerts.channel or config.config.backfill.notification_channel


def raise_alert(
    *, kind: AlertKind, key: str, subject: str, text: str = "", data: dict | None = None, channel: str
) -> tuple[Alert, bool]:
    """Open the alert of ``key`` and notify, or, when it is already open, only count it. Returns (alert, opened)."""
    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(key=key, resolved_at__isnull=True).first()
        if alert is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        kind=kind, key=key, subject=subject, text=text, data=data or {}, first_seen=now, last_seen=now
                    )
            except IntegrityError:  # opened by a concurrent run a moment ago
                alert = Alert.objects.select_for_update().get(key=key, resolved_at__isnull=True)
            else:
                transaction.on_commit(
                    lambda: notify(channel=channel, subject=subject, text=text, data={"alert": key, **(data or {})})
                )
                return alert, True
        alert.last_seen, alert.times_seen = now, alert.times_seen + 1
        alert.subject, alert.text, alert.data = subject, text, data or {}
        alert.save(update_fields=["last_seen", "times_seen", "subject", "text", "data"])
    return alert, False


def resolve_alerts(*, channel: str, resolution: str, key: str | None = None, kind: AlertKind | None = None) -> int:
    """Close the open alerts of ``key`` (or of ``kind``) and tell the channel once that each has cleared."""
    if key is None and kind is None:
        raise ValueError("resolve_alerts needs a key or a kind")
    wanted = Q(resolved_at__isnull=True)
    if key is not None:
        wanted &= Q(key=key)
    if kind is not None:
        wanted &= Q(kind=kind)
    with transaction.atomic():
        closing = list(Alert.objects.select_for_update().filter(wanted))
        now = timezone.now()
        for alert in closing:
            alert.resolved_at, alert.resolution = now, resolution
            alert.save(update_fields=["resolved_at", "resolution"])
            subject = _("resolved: %(subject)s") % {"subject": alert.subject}
            transaction.on_commit(
                lambda s=subject, k=alert.key: notify(channel=channel, subject=s, text=resolution, data={"alert": k})
            )
    return len(closing)


def hold(
    condition: bool, *, kind: AlertKind, key: str, subject: str, text: str = "", data: dict | None = None,
    channel: str, resolution: str,
) -> None:  # fmt: skip
    """Raise the alert while ``condition`` holds, resolve it once it no longer does."""
    if condition:
        raise_alert(kind=kind, key=key, subject=subject, text=text, data=data, channel=channel)
    else:
        resolve_alerts(key=key, channel=channel, resolution=resolution)


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


def check_shares(*, threshold: float, channel: str) -> dict[str, dict]:
    """Alert on every table whose auto-derived share is above ``threshold``; resolve the others. Returns the shares."""
    from pipeline.reports import auto_derived_shares

    shares = auto_derived_shares()
    for table, s in shares.items():
        hold(
            s["share"] > threshold, kind=AlertKind.SHARE_HIGH, key=f"share_high:{table}",
            subject=_("%(table)s: auto-derived share %(share)s above %(threshold)s")
            % {"table": table, "share": f"{s['share']:.1%}", "threshold": f"{threshold:.0%}"},
            text=_("%(table)s: %(auto)d of %(total)d rows auto-derived, %(pending)d pending review")
            % {"table": table, "auto": s["auto_derived"], "total": s["total"], "pending": s["pending"]},
            data={"table": table, **s, "threshold": threshold}, channel=channel,
            resolution=_("%(table)s: auto-derived share %(share)s, at or below %(threshold)s")
            % {"table": table, "share": f"{s['share']:.1%}", "threshold": f"{threshold:.0%}"},
        )  # fmt: skip
    return shares


def check_alerts(*, config: LoadedConfig, now: dt.datetime | None = None) -> AlertCheck:
    """Share above threshold, reviews older than ``stale_review_days``, schedules that did not run."""
    now = now or timezone.now()
    settings = config.config.alerts
    channel = alert_channel(config)
    shares = check_shares(threshold=config.config.backfill.alert_share, channel=channel)
    record_share_snapshot(shares=shares)
    cutoff = now - dt.timedelta(days=settings.stale_review_days)
    for ref in all_tables():
        stale = ref.model.objects.filter(needs_review=True, derived_at__lt=cutoff).count()
        hold(
            stale > 0, kind=AlertKind.STALE_REVIEWS, key=f"stale_reviews:{ref.name}",
            subject=_("%(table)s: %(rows)d rows pending review for more than %(days)d days")
            % {"table": ref.name, "rows": stale, "days": settings.stale_review_days},
            data={"table": ref.name, "rows": stale, "days": settings.stale_review_days}, channel=channel,
            resolution=_("%(table)s: no row pending review for more than %(days)d days")
            % {"table": ref.name, "days": settings.stale_review_days},
        )  # fmt: skip
    late = {s.name: s for s in late_schedules(grace_minutes=settings.missed_schedule_minutes, now=now)}
    prefix = f"{AlertKind.MISSED_SCHEDULE.value}:"
    names = set(Schedule.objects.filter(name__startswith=PREFIX).values_list("name", flat=True)) | {
        key.removeprefix(prefix)
        for key in Alert.objects.filter(kind=AlertKind.MISSED_SCHEDULE, resolved_at__isnull=True).values_list("key", flat=True)
    }
    for name in sorted(names):
        s = late.get(name)
        due = f"{timezone.localtime(s.next_run):%Y-%m-%d %H:%M}" if s else ""
        hold(
            s is not None, kind=AlertKind.MISSED_SCHEDULE, key=f"{prefix}{name}",
            subject=_("schedule %(name)s did not run (due %(due)s, %(late)d min late); is qcluster running?")
            % {"name": name, "due": due, "late": s.minutes_late} if s else "",
            data={"schedule": name, "minutes_late": s.minutes_late} if s else None, channel=channel,
            resolution=_("schedule %(name)s is on time again") % {"name": name},
        )  # fmt: skip
    result = AlertCheck()
    result.open = list(Alert.objects.filter(resolved_at__isnull=True).order_by("first_seen").values_list("subject", flat=True))
    return result
