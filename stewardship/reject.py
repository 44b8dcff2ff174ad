"""Reject an auto-derived key that facts use: its fact rows go to the quarantine (隔离行), the row is deleted, and the
key is remembered (``RejectedKey``): later loads quarantine its rows instead of deriving it again.

The other way out for such a row is a merge into the right key; a rejection is for a key that means nothing (junk the
key rules did not catch). Nothing is dropped: the fact rows wait in the quarantine, whole, until a steward corrects
their key and resubmits them. The rows are moved by one statement per fact column, whatever their number.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from pipeline.fact_tables import fact_table
from pipeline.facts.quarantine import quarantine_rows_of_key
from pipeline.facts.usage import refresh_usage
from pipeline.models import RejectedKey
from pipeline.selectors import fact_relations
from reference.history import Action, stewardship_context
from reference.models import Source
from reference.registry import child_relations, get_table
from refgov.db.sql import column_name


class RejectRefused(Exception):
    """The key cannot be rejected (not auto-derived, other reference rows point at it, no reason); nothing changed."""


@dataclass(frozen=True)
class RejectResult:
    rows: int  # fact rows moved to the quarantine
    context_id: uuid.UUID


@transaction.atomic
def reject_to_quarantine(*, table: str, key: str, reason: str, user: AbstractBaseUser) -> RejectResult:
    """Move every fact row that uses ``key`` of ``table`` to the quarantine (problem: rejected by a steward, with
    ``reason``) and delete the auto-derived row, as one stewardship change. Refused for an authoritative row and for a
    row other reference rows point at (a plan with portfolios: reject or merge those first)."""
    reason = reason.strip()
    if not reason:
        raise RejectRefused("a reason is required")
    model = get_table(table).model
    row = model._default_manager.select_for_update().filter(pk=key).first()
    if row is None:
        raise RejectRefused(f"{table}: no row with key {key!r}")
    if row.source != Source.AUTO_DERIVED:
        raise RejectRefused(f"{table}: {key!r} is authoritative; only auto-derived rows can be rejected")
    for child in child_relations(model):
        used = child.model._default_manager.filter(**{child.attr: key}).count()
        if used:
            raise RejectRefused(f"{table}: {used} rows of {child.table} point at {key!r}; merge or reject them first")
    user_name = getattr(user, "username", "")
    moved = 0
    with stewardship_context(user=user, action=Action.REJECT, table=table, key=key, reason=reason) as context_id:
        with connection.cursor() as cur:
            for fact, attr in fact_relations(model):
                moved += quarantine_rows_of_key(
                    cur,
                    fact=fact_table(fact._meta.db_table),
                    column=column_name(fact, attr),
                    table=table,
                    key=key,
                    note=reason,
                )
        row.delete()
        RejectedKey.objects.update_or_create(
            table=table, key=key, defaults={"reason": reason, "rejected_by": user_name, "rejected_at": timezone.now()}
        )
    refresh_usage(table=table, keys=[key])
    return RejectResult(rows=moved, context_id=context_id)
