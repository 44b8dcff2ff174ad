"""Records of pipeline runs: one SyncRun per preload invocation, one result row per table, upgrades, watermarks."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RunStatus(models.TextChoices):
    RUNNING = "running", _("running")
    SUCCESS = "success", _("success")
    PARTIAL = "partial", _("partial")
    FAILED = "failed", _("failed")
    # The process running it ended without recording an outcome (killed, crashed); closed by a later run.
    ABANDONED = "abandoned", _("abandoned")


class SyncRun(models.Model):
    started_at = models.DateTimeField(_("started at"), default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    trigger = models.CharField(_("trigger"), max_length=20, default="command")
    full = models.BooleanField(_("full sync"), default=False)
    tables_requested = models.JSONField(_("tables requested"), default=list, blank=True)
    message = models.TextField(_("message"), blank=True, default="")
    integrity = models.JSONField(_("integrity check"), default=dict, blank=True)

    class Meta:
        verbose_name = _("preload run")
        verbose_name_plural = _("preload runs")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.started_at:%Y-%m-%d %H:%M} {self.get_status_display()}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class TableStatus(models.TextChoices):
    SUCCESS = "success", _("success")
    FAILED = "failed", _("failed")
    SKIPPED = "skipped", _("skipped")


class SyncTableResult(models.Model):
    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="tables", verbose_name=_("run"))
    table = models.CharField(_("table"), max_length=50)
    source = models.CharField(_("source"), max_length=200)
    mode = models.CharField(_("mode"), max_length=12)
    status = models.CharField(_("status"), max_length=10, choices=TableStatus.choices)
    rows_read = models.IntegerField(_("rows read"), default=0)
    inserted = models.IntegerField(_("inserted"), default=0)
    updated = models.IntegerField(_("updated"), default=0)
    upgraded = models.IntegerField(_("upgraded"), default=0)
    confirmed = models.IntegerField(
        _("promoted rows confirmed"),
        default=0,
        help_text=_("rows stewards promoted that the source brought for the first time"),
    )
    unchanged = models.IntegerField(_("unchanged"), default=0)
    errors = models.IntegerField(_("rejected rows"), default=0)
    error_samples = models.JSONField(_("rejected rows (first ones)"), default=list, blank=True)
    missing_at_source = models.IntegerField(_("missing at source"), default=0)
    missing_samples = models.JSONField(_("missing at source (first ones)"), default=list, blank=True)
    awaiting_source = models.IntegerField(
        _("awaiting the source"),
        default=0,
        help_text=_("rows stewards promoted that the source does not have yet (what the feedback export carries)"),
    )
    awaiting_samples = models.JSONField(_("awaiting the source (first ones)"), default=list, blank=True)
    columns_not_in_source = models.JSONField(_("columns the source lacks"), default=list, blank=True)
    watermark_from = models.CharField(_("watermark before"), max_length=64, blank=True, default="")
    watermark_to = models.CharField(_("watermark after"), max_length=64, blank=True, default="")
    message = models.TextField(_("message"), blank=True, default="")
    warnings = models.JSONField(
        _("warnings"),
        default=list,
        blank=True,
        help_text=_("where the sync departed from its configuration (e.g. read in full, not incrementally)"),
    )
    duration_ms = models.IntegerField(_("duration (ms)"), default=0)
    timings_ms = models.JSONField(_("time per phase (ms)"), default=dict, blank=True)

    class Meta:
        verbose_name = _("table result")
        verbose_name_plural = _("table results")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.table}: {self.get_status_display()}"


class SyncUpgrade(models.Model):
    """An auto-derived row that the preload made authoritative, or a row stewards promoted that the source brought for
    the first time (``promoted``), with the steward's values it replaced or kept. A row with a record here has been
    confirmed by the source: later preloads treat it as any authoritative row."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="upgrades", verbose_name=_("run"))
    table = models.CharField(_("table"), max_length=50)
    key = models.CharField(_("key"), max_length=100)
    derived_from_domain = models.CharField(_("derived from domain"), max_length=50, null=True, blank=True)
    changed = models.JSONField(_("changed values (before, after)"), default=dict, blank=True)
    kept = models.JSONField(_("steward values kept"), default=dict, blank=True)
    promoted = models.BooleanField(
        _("promoted by a steward"),
        default=False,
        db_default=False,
        help_text=_("already authoritative (promoted by a steward) before the source brought it"),
    )

    class Meta:
        verbose_name = _("upgrade to authoritative")
        verbose_name_plural = _("upgrades to authoritative")
        ordering = ["table", "key"]
        indexes = [models.Index(fields=["table", "key"])]

    def __str__(self) -> str:
        return f"{self.table} {self.key}"


class SyncWatermark(models.Model):
    """High-water mark of an incremental source, written in the same transaction as the table's rows."""

    table = models.CharField(_("table"), max_length=50, unique=True)
    column = models.CharField(_("column"), max_length=64)
    value = models.CharField(_("value"), max_length=64)
    rows = models.BigIntegerField(
        _("source rows"),
        null=True,
        blank=True,
        help_text=_("rows the source had when the watermark was taken: an unchanged source is not read again"),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("incremental watermark")
        verbose_name_plural = _("incremental watermarks")

    def __str__(self) -> str:
        return f"{self.table}.{self.column} ≥ {self.value}"
