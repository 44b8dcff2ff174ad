"""Confirm-keep: a steward reviewed auto-derived rows and keeps them as they are (still auto-derived, no longer
pending), with a reason recorded in the history. The path for rows whose fields can never be completed."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from reference.history import Action, stewardship_context
from reference.models import Source, TrackedReference
from reference.registry import for_model

REASON_MAX_LENGTH = 500


class ReasonRequired(ValueError):
    """Confirm-keep needs a reason; nothing was changed."""


@transaction.atomic
def confirm_keep(*, queryset: QuerySet[TrackedReference], reason: str, user: AbstractBaseUser) -> int:
    """Mark the auto-derived rows of ``queryset`` that are pending review as reviewed (``needs_review = false``); they
    stay ``auto_derived``. One UPDATE, one history context carrying ``reason``. Returns the rows changed."""
    reason = " ".join(reason.split())
    if not reason:
        raise ReasonRequired("a reason is required to keep rows as auto-derived")
    if len(reason) > REASON_MAX_LENGTH:
        raise ReasonRequired(f"the reason is longer than {REASON_MAX_LENGTH} characters")
    table = for_model(queryset.model).name
    pending = queryset.filter(source=Source.AUTO_DERIVED, needs_review=True)
    with stewardship_context(user=user, action=Action.CONFIRM_KEEP, table=table, reason=reason):
        return queryset.model.objects.filter(pk__in=pending.values("pk")).update(needs_review=False)
