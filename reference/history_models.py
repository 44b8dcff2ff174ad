"""The change log of the reference tables, written by PostgreSQL triggers (migration ``0005_history``).

One table for the four reference tables: its id gives one order across tables, which is the order an undo reverses.
``before`` and ``after`` are the whole row (db column → value) before and after the change.
"""

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _


class EventLabel(models.TextChoices):
    INSERT = "insert", _("insert")
    UPDATE = "update", _("update")
    DELETE = "delete", _("delete")


class ReferenceEvent(models.Model):
    created_at = models.DateTimeField(_("time"), db_default=Now())
    label = models.CharField(_("change"), max_length=10, choices=EventLabel.choices)
    table = models.CharField(_("table"), max_length=50, db_column="table")
    key = models.CharField(_("key"), max_length=50)
    before = models.JSONField(_("before"), null=True)
    after = models.JSONField(_("after"), null=True)
    context = models.ForeignKey(
        "pghistory.Context",
        verbose_name=_("context"),
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        verbose_name = _("reference change")
        verbose_name_plural = _("reference changes")
        indexes = [models.Index(fields=["table", "key", "id"], name="referenceevent_row")]

    def __str__(self) -> str:
        return f"{self.table} {self.key} {self.label}"
