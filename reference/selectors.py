"""Read-only queries on the reference tables (no writes, no other app): what admin pages, reports and alerts show."""

from __future__ import annotations

from typing import TypedDict

from django.db.models import Count, Q

from reference.models import Source, TrackedReference
from reference.registry import all_tables, child_relations


class Share(TypedDict):
    """A table's rows: all of them, the auto-derived ones, the ones pending review, and auto-derived / all."""

    total: int
    auto_derived: int
    pending: int
    share: float


def auto_derived_shares() -> dict[str, Share]:
    """Per table: total, auto_derived, pending (needs review), share — one aggregate over each table (filtered
    counts, not a GROUP BY: no hashing of a million source values)."""
    shares: dict[str, Share] = {}
    for ref in all_tables():
        counts = ref.model.objects.aggregate(
            total=Count("*"),
            auto=Count("needs_review", filter=Q(source=Source.AUTO_DERIVED)),
            pending=Count("needs_review", filter=Q(needs_review=True)),
        )
        total, auto = counts["total"], counts["auto"]
        shares[ref.name] = {
            "total": total,
            "auto_derived": auto,
            "pending": counts["pending"],
            "share": auto / total if total else 0.0,
        }
    return shares


def child_rows(*, model: type[TrackedReference], key: str) -> dict[str, int]:
    """Reference table → number of its rows pointing at ``key`` of ``model`` (tables with none are left out)."""
    counts = {}
    for name, child, attr in child_relations(model):
        n = child.objects.filter(**{attr: key}).count()
        if n:
            counts[name] = n
    return counts
