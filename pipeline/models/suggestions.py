"""Typo suggestions: for an auto-derived key, the existing rows it probably means, ranked, with their evidence."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .facts import FactBatch


class KeySuggestion(models.Model):
    """``key`` (auto-derived by ``batch``) probably means the existing row ``candidate`` of ``table``.

    ``evidence`` holds the signals that matched: ``key`` (levenshtein distance, the kind of edit, same shape and
    prefix), ``names`` (trigram similarity per name column) and ``found_by`` (how the candidate was found)."""

    table = models.CharField(_("table"), max_length=50)
    key = models.CharField(_("key"), max_length=100)
    candidate = models.CharField(_("suggested key"), max_length=100)
    rank = models.PositiveSmallIntegerField(_("rank"))
    score = models.FloatField(_("score"))
    key_distance = models.IntegerField(_("key distance"), null=True, blank=True)
    name_similarity = models.FloatField(_("name similarity"), null=True, blank=True)
    evidence = models.JSONField(_("evidence"), default=dict, blank=True)
    batch = models.ForeignKey(
        FactBatch, on_delete=models.CASCADE, null=True, blank=True, related_name="suggestions", verbose_name=_("batch")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("typo suggestion")
        verbose_name_plural = _("typo suggestions")
        ordering = ["table", "key", "rank"]
        constraints = [models.UniqueConstraint(fields=["table", "key", "candidate"], name="keysuggestion_once")]
        indexes = [models.Index(fields=["table", "key", "rank"], name="keysuggestion_key")]

    def __str__(self) -> str:
        return f"{self.table} {self.key} → {self.candidate} ({self.score:.2f})"
