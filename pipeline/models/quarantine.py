"""Rows a load kept out of the fact table because a new key broke the key rules, until a steward corrects them."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .facts import FactBatch


class QuarantineState(models.TextChoices):
    PENDING = "pending", _("pending")
    RESUBMITTED = "resubmitted", _("resubmitted")
    SUPERSEDED = "superseded", _("superseded by a later load")  # a later file of the same scope was loaded


class KeyProblem(models.TextChoices):
    JUNK = "junk", _("white space, quotes or control characters")
    PATTERN = "pattern", _("does not match the key pattern")
    REJECTED = "rejected", _("rejected by a steward")  # an auto-derived key a steward took out (with a note)


class QuarantinedRow(models.Model):
    """One fact row a load did not load: the normalised row (fact column → value), where it came from, and why.

    ``problems`` lists each bad key: ``{"column", "table", "key", "reason"}`` (``reason``: a ``KeyProblem``)."""

    batch = models.ForeignKey(FactBatch, on_delete=models.CASCADE, related_name="quarantined", verbose_name=_("batch"))
    domain = models.CharField(_("domain"), max_length=50)
    fact_table = models.CharField(_("fact table"), max_length=50)
    file_name = models.CharField(_("file"), max_length=255)
    sheet = models.CharField(_("sheet"), max_length=100, blank=True, default="")
    row_number = models.IntegerField(_("row in the file"))
    month = models.DateField(_("month"), null=True, blank=True)
    bad_keys = models.CharField(_("bad keys"), max_length=500, help_text=_("column=key of each key that broke a rule"))
    problems = models.JSONField(_("problems"), default=list)
    data = models.JSONField(_("row"), default=dict, help_text=_("the row as loaded (fact column → value)"))
    state = models.CharField(
        _("state"), max_length=12, choices=QuarantineState.choices, default=QuarantineState.PENDING
    )
    resubmitted_batch = models.ForeignKey(
        FactBatch,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("resubmitted as batch"),
    )
    resolved_by = models.CharField(_("resolved by"), max_length=150, blank=True, default="")
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    created_at = models.DateTimeField(_("quarantined at"), default=timezone.now)

    class Meta:
        verbose_name = _("quarantined row")
        verbose_name_plural = _("quarantined rows")
        ordering = ["-batch_id", "row_number"]
        indexes = [models.Index(fields=["state", "fact_table"], name="quarantinedrow_state")]
        constraints = [models.UniqueConstraint(fields=["batch", "row_number"], name="quarantinedrow_once")]

    def __str__(self) -> str:
        return f"{self.file_name} row {self.row_number}: {self.bad_keys}"


class RejectedKey(models.Model):
    """A key a steward rejected (``stewardship.reject``): later loads quarantine its rows instead of deriving it again
    while no reference row has it."""

    table = models.CharField(_("table"), max_length=50)
    key = models.CharField(_("key"), max_length=100)
    reason = models.TextField(_("reason"))
    rejected_by = models.CharField(_("rejected by"), max_length=150, blank=True, default="")
    rejected_at = models.DateTimeField(_("rejected at"), default=timezone.now)

    class Meta:
        verbose_name = _("rejected key")
        verbose_name_plural = _("rejected keys")
        constraints = [models.UniqueConstraint(fields=["table", "key"], name="rejectedkey_once")]

    def __str__(self) -> str:
        return f"{self.table} {self.key}"
