"""Operational alerts, each sent once per condition: raised while the condition holds, resolved when it clears.

``raise_alert`` notifies only when it opens an alert; seeing the condition again only counts it. ``resolve_alerts``
closes and says so once. ``check_shares`` holds the share-too-high alert of every table and records the day's share
snapshot. The periodic checks of the conditions no run reports by itself are ``operations.alert_checks``."""

from __future__ import annotations

from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from pipeline.config.loader import LoadedConfig
from pipeline.models import Alert, AlertKind
from pipeline.notify import notify
from pipeline.share_history import record_share_snapshot
from reference.selectors import Share, auto_derived_shares


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
                partial(notify, channel=channel, subject=subject, text=resolution, data={"alert": alert.key})
            )
    return len(closing)


def hold(
    condition: bool,
    *,
    kind: AlertKind,
    key: str,
    subject: str,
    text: str = "",
    data: dict | None = None,
    channel: str,
    resolution: str,
) -> None:
    """Raise the alert while ``condition`` holds, resolve it once it no longer does."""
    if condition:
        raise_alert(kind=kind, key=key, subject=subject, text=text, data=data, channel=channel)
    else:
        resolve_alerts(key=key, channel=channel, resolution=resolution)


def check_shares(*, threshold: float, channel: str) -> dict[str, Share]:
    """Alert on every table whose auto-derived share is above ``threshold``, resolve the others, and record today's
    share snapshot (drawn on the dashboard). Returns the shares."""
    shares = auto_derived_shares()
    for table, s in shares.items():
        hold(
            s["share"] > threshold,
            kind=AlertKind.SHARE_HIGH,
            key=f"share_high:{table}",
            subject=_("%(table)s: auto-derived share %(share)s above %(threshold)s")
            % {"table": table, "share": f"{s['share']:.1%}", "threshold": f"{threshold:.0%}"},
            text=_("%(table)s: %(auto)d of %(total)d rows auto-derived, %(pending)d pending review")
            % {"table": table, "auto": s["auto_derived"], "total": s["total"], "pending": s["pending"]},
            data={"table": table, **s, "threshold": threshold},
            channel=channel,
            resolution=_("%(table)s: auto-derived share %(share)s, at or below %(threshold)s")
            % {"table": table, "share": f"{s['share']:.1%}", "threshold": f"{threshold:.0%}"},
        )
    record_share_snapshot(shares=shares)
    return shares
