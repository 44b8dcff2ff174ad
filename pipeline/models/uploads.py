"""Fact files uploaded in the admin: the kept file, the preview a steward confirmed, and the load's progress."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UploadState(models.TextChoices):
    PREVIEWED = "previewed", _("previewed, awaiting confirmation")
    REFUSED = "refused", _("refused by the preview")
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("loading")
    LOADED = "loaded", _("loaded")
    FAILED = "failed", _("not loaded")


class FactUpload(models.Model):
    """One file a steward uploaded: kept under REFGOV_UPLOADS_DIR (``stored_path`` is also the file path its batches
    record), previewed by a dry run of each domain, then loaded by a q task that writes its progress here."""

    file_name = models.CharField(_("file"), max_length=255)
    stored_path = models.TextField(_("stored file"), blank=True, default="")
    size_bytes = models.BigIntegerField(_("size (bytes)"), default=0)
    checksum = models.CharField(_("SHA-256"), max_length=64, blank=True, default="")
    domains = models.JSONField(_("domains"), default=list, blank=True)
    domains_detected = models.BooleanField(_("domains detected from the file name"), default=False)
    state = models.CharField(_("state"), max_length=10, choices=UploadState.choices, default=UploadState.PREVIEWED)
    preview = models.JSONField(_("preview"), default=dict, blank=True)
    progress = models.SmallIntegerField(_("progress (%)"), default=0)
    progress_domain = models.CharField(_("domain in progress"), max_length=50, blank=True, default="")
    progress_message = models.CharField(_("progress message"), max_length=255, blank=True, default="")
    results = models.JSONField(_("results per domain"), default=list, blank=True)
    message = models.TextField(_("message"), blank=True, default="")
    task_id = models.CharField(_("task"), max_length=32, blank=True, default="")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("uploaded by"),
    )
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("confirmed by"),
    )
    uploaded_at = models.DateTimeField(_("uploaded at"), default=timezone.now, db_index=True)
    confirmed_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("fact file upload")
        verbose_name_plural = _("fact file uploads")
        ordering = ["-uploaded_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.file_name}"

    @property
    def in_progress(self) -> bool:
        return self.state in (UploadState.QUEUED, UploadState.RUNNING)
