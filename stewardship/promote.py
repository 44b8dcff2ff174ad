"""Promote auto-derived rows to authoritative once their required fields are filled."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, QuerySet

from reference.history import Action, stewardship_context
from reference.models import Source, TrackedReference
from reference.registry import for_model
from stewardship.required import blank_q, missing_q, required_fields

REFUSED_SAMPLE = 10


@dataclass
class PromoteResult:
    promoted: int = 0
    refused: int = 0
    refused_by_field: dict[str, int] = field(default_factory=dict)
    refused_keys: list[str] = field(default_factory=list)
    context_id: uuid.UUID | None = None


@transaction.atomic
def promote(*, queryset: QuerySet[TrackedReference], user: AbstractBaseUser) -> PromoteResult:
    """Make the rows of ``queryset`` that are auto-derived or pending review authoritative and reviewed, except the
    ones missing a required field (counted and named per field). Set-based: one UPDATE however many rows."""
    table = for_model(queryset.model).name
    fields = required_fields(table)
    candidates = queryset.filter(source=Source.AUTO_DERIVED) | queryset.filter(needs_review=True)
    refused = candidates.filter(missing_q(fields)) if fields else candidates.none()
    result = PromoteResult()
    if fields:
        counts = refused.order_by().aggregate(
            total=Count("pk"), **{f.column: Count("pk", filter=blank_q(f)) for f in fields}
        )
        result.refused = counts.pop("total")
        result.refused_by_field = counts
        result.refused_keys = [str(k) for k in refused.order_by("pk").values_list("pk", flat=True)[:REFUSED_SAMPLE]]
    promotable = candidates.exclude(missing_q(fields)) if fields else candidates
    with stewardship_context(user=user, action=Action.PROMOTE, table=table) as result.context_id:
        result.promoted = queryset.model.objects.filter(pk__in=promotable.values("pk")).update(
            source=Source.AUTHORITATIVE, needs_review=False
        )
    return result
