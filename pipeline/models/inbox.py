"""What the fact inbox saw at its previous scans: one row per file (or month folder) still in the inbox."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class InboxState(models.TextChoices):
    WAITING = "waiting", _("settling")
    PROCESSING = "processing", _("being processed")
    UNMATCHED = "unmatched", _("no domain matches")
    STUCK = "stuck", _("processed, could not be moved")


class InboxFile(models.Model):
    """A file the inbox has seen, with the state it was in: whether it is still being copied (``signature`` changes
    between scans), being processed (an attempt that never finishes was killed), matched by no domain, or processed
    but not movable out of the inbox (it is not processed again)."""

    inbox = models.TextField(_("inbox"))
    path = models.TextField(_("path in the inbox"))
    state = models.CharField(_("state"), max_length=12, choices=InboxState.choices, default=InboxState.WAITING)
    signature = models.CharField(_("size, times and inode"), max_length=200, blank=True, default="")
    size_bytes = models.BigIntegerField(_("size (bytes)"), default=0)
    stable_since = models.DateTimeField(_("unchanged since"), default=timezone.now)
    first_seen = models.DateTimeField(_("first seen"), default=timezone.now)
    started_at = models.DateTimeField(_("processing started at"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, blank=True, default="")
    message = models.TextField(_("message"), blank=True, default="")

    class Meta:
        verbose_name = _("inbox file")
        verbose_name_plural = _("inbox files")
        ordering = ["inbox", "path"]
        constraints = [models.UniqueConstraint(fields=["inbox", "path"], name="inboxfile_once")]

    def __str__(self) -> str:
        return self.path
