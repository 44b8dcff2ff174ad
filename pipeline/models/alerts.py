"""Operational alerts: one row per condition while it lasts, so that an operator is told once, not every run."""

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AlertKind(models.TextChoices):
    PRELOAD_FAILED = "preload_failed", _("preload failed or partial")
    BATCH_REJECTED = "batch_rejected", _("fact batch rejected")
    FACTS_WAITING = "facts_waiting", _("facts wait for the preload")
    DEGRADED = "degraded", _("facts loaded in degraded mode")
    SHARE_HIGH = "share_high", _("auto-derived share above threshold")
    STALE_REVIEWS = "stale_reviews", _("reviews waiting too long")
    MISSED_SCHEDULE = "missed_schedule", _("schedule did not run")
    INBOX_REJECTED = "inbox_rejected", _("inbox file rejected")
    INBOX_UNMATCHED = "inbox_unmatched", _("inbox file no domain matches")
    INBOX_REFUSED = "inbox_refused", _("inbox cannot be processed safely")


class Alert(models.Model):
    kind = models.CharField(_("kind"), max_length=20, choices=AlertKind.choices)
    key = models.CharField(
        _("condition"), max_length=200, help_text=_("what the alert is about; one open alert per condition")
    )
    subject = models.CharField(_("subject"), max_length=300)
    text = models.TextField(_("details"), blank=True, default="")
    data = models.JSONField(_("data"), default=dict, blank=True)
    first_seen = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now)
    times_seen = models.IntegerField(_("times seen"), default=1)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True, db_index=True)
    resolution = models.TextField(_("resolution"), blank=True, default="")

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(resolved_at__isnull=True), name="alert_open_once")
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class ShareSnapshot(models.Model):
    """One table's counts on one day (the latest check of the day wins): the dashboard's chart over time."""

    day = models.DateField(_("day"))
    table = models.CharField(_("table"), max_length=50)
    total = models.IntegerField(_("rows"), default=0)
    auto_derived = models.IntegerField(_("auto-derived"), default=0)
    pending = models.IntegerField(_("pending review"), default=0)

    class Meta:
        verbose_name = _("share snapshot")
        verbose_name_plural = _("share snapshots")
        ordering = ["day", "table"]
        constraints = [models.UniqueConstraint(fields=["day", "table"], name="sharesnapshot_once_a_day")]

    @property
    def share(self) -> float:
        return self.auto_derived / self.total if self.total else 0.0
