"""Lookup fallbacks made visible: the values a load's ``derived_columns`` could not map, and a steward's mappings."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .facts import FactBatch


class UnmappedValue(models.Model):
    """``value`` of fact column ``source_column`` matched no ``table.match`` (nor a mapping) in ``batch``: its
    ``rows`` got ``fallback`` (the configured default, or NULL) in ``column``."""

    batch = models.ForeignKey(
        FactBatch, on_delete=models.CASCADE, related_name="unmapped_values", verbose_name=_("batch")
    )
    domain = models.CharField(_("domain"), max_length=50)
    fact_table = models.CharField(_("fact table"), max_length=50)
    column = models.CharField(_("filled column"), max_length=50)
    source_column = models.CharField(_("from column"), max_length=50)
    table = models.CharField(_("lookup table"), max_length=50)
    match = models.CharField(_("matched column"), max_length=50)
    value = models.CharField(_("value"), max_length=255)
    rows = models.IntegerField(_("rows"))
    fallback = models.CharField(_("fallback"), max_length=100, null=True, blank=True)
    created_at = models.DateTimeField(_("seen at"), default=timezone.now)

    class Meta:
        verbose_name = _("unmapped value")
        verbose_name_plural = _("unmapped values")
        ordering = ["-batch_id", "column", "-rows"]
        constraints = [models.UniqueConstraint(fields=["batch", "column", "value"], name="unmappedvalue_once")]
        indexes = [models.Index(fields=["table", "match", "value"], name="unmappedvalue_value")]

    def __str__(self) -> str:
        return f"{self.source_column} {self.value} → {self.column} {self.fallback or 'NULL'} ({self.rows})"


class ValueMapping(models.Model):
    """A steward's decision: ``value`` of ``table.match`` means the key ``key`` (later loads use it; the rows that
    got the fallback were re-pointed, ``repointed``: relation → rows)."""

    table = models.CharField(_("lookup table"), max_length=50)
    match = models.CharField(_("matched column"), max_length=50)
    value = models.CharField(_("value"), max_length=255)
    key = models.CharField(_("key"), max_length=100)
    repointed = models.JSONField(_("rows re-pointed"), default=dict, blank=True)
    context_id = models.UUIDField(_("change context"), null=True, blank=True, db_index=True)
    created_by = models.CharField(_("mapped by"), max_length=150, blank=True, default="")
    created_at = models.DateTimeField(_("mapped at"), default=timezone.now)

    class Meta:
        verbose_name = _("value mapping")
        verbose_name_plural = _("value mappings")
        ordering = ["table", "match", "value"]
        constraints = [models.UniqueConstraint(fields=["table", "match", "value"], name="valuemapping_once")]

    def __str__(self) -> str:
        return f"{self.table}.{self.match} {self.value} → {self.key}"
