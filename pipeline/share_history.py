"""The auto-derived share and pending count over time: one snapshot per table and day (drawn by
``operations.share_chart``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from django.utils import timezone

from pipeline.models import ShareSnapshot
from reference.selectors import Share


def record_share_snapshot(*, shares: Mapping[str, Share], day: dt.date | None = None) -> None:
    """Store today's counts per table (``auto_derived_shares()``), replacing an earlier check of the same day."""
    day = day or timezone.localdate()
    for table, s in shares.items():
        ShareSnapshot.objects.update_or_create(
            day=day,
            table=table,
            defaults={"total": s["total"], "auto_derived": s["auto_derived"], "pending": s["pending"]},
        )
