"""Who changed a reference row, when, in which action, and what it was before: the context of a change and the
per-row history.

Triggers record every UPDATE and DELETE of the four reference tables, and INSERTs made inside a context (see
``reference/migrations/0005_history.py``). A context groups the changes of one stewardship action; ``undo`` reverts
one context as a unit (``stewardship.undo``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pghistory
import psycopg
from django.db import connection
from django.utils.translation import gettext_lazy
from pghistory import runtime
from pghistory.models import Context

from .history_models import EventLabel, ReferenceEvent
from .registry import get_table


class Action:
    """Action names stewardship services put in their context (free text is allowed, these are the known ones)."""

    EDIT = "edit"
    ADD = "add"
    DELETE = "delete"
    BULK_COMPLETE = "bulk_complete"
    IMPORT = "import"
    PROMOTE = "promote"
    MERGE = "merge"
    UNDO = "undo"
    PRELOAD = "preload"
    BACKFILL = "backfill"


ACTION_LABELS = {
    Action.EDIT: gettext_lazy("edit"),
    Action.ADD: gettext_lazy("add"),
    Action.DELETE: gettext_lazy("delete"),
    Action.BULK_COMPLETE: gettext_lazy("bulk completion"),
    Action.IMPORT: gettext_lazy("import"),
    Action.PROMOTE: gettext_lazy("promote to authoritative"),
    Action.MERGE: gettext_lazy("merge"),
    Action.UNDO: gettext_lazy("undo"),
    Action.PRELOAD: gettext_lazy("preload"),
    Action.BACKFILL: gettext_lazy("backfill of pending rows"),
}


def action_label(action: str | None) -> str:
    """The action's name for people (an unknown action shows as it was recorded)."""
    if not action:
        return str(gettext_lazy("no action recorded"))
    return str(ACTION_LABELS.get(action, action))


def _context_active() -> bool:
    return hasattr(runtime._tracker, "value")


def _forget_context() -> None:
    """pghistory sets its context as transaction-local settings: clear them, so that later statements of the same
    transaction (a preload's inserts after its recorded update, say) are not attributed to this context."""
    raw = connection.connection
    if raw is not None and raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT set_config('pghistory.context_id', '', true), "
                "set_config('pghistory.context_metadata', '', true)"
            )


@contextmanager
def change_context(*, action: str, user=None, **extra: Any) -> Iterator[uuid.UUID]:
    """Record the reference changes made inside as one unit, with the action, the user (if any) and ``extra``.

    Nested inside another context, it adds its metadata to the outer one (pghistory's rule): one unit remains.
    Yields the context id, which ``undo(context_id=...)`` accepts."""
    metadata: dict[str, Any] = {"action": action, **extra}
    if user is not None:
        metadata.update(user=user.pk, username=user.get_username())
    outermost = not _context_active()
    try:
        with pghistory.context(**metadata) as ctx:
            yield ctx.id
    finally:
        if outermost:
            _forget_context()


@contextmanager
def stewardship_context(*, user, action: str, **extra: Any) -> Iterator[uuid.UUID]:
    """The context of a steward's change: every stewardship service wraps its writes in it."""
    with change_context(action=action, user=user, **extra) as context_id:
        yield context_id


@dataclass(frozen=True)
class FieldChange:
    column: str
    label: str
    before: Any
    after: Any


@dataclass(frozen=True)
class RowEvent:
    id: int
    at: dt.datetime
    label: str
    table: str
    key: str
    context_id: uuid.UUID | None
    metadata: dict = field(default_factory=dict)
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def action(self) -> str | None:
        return self.metadata.get("action")

    @property
    def label_display(self) -> str:
        return str(EventLabel(self.label).label)

    @property
    def action_label(self) -> str:
        return action_label(self.action)

    @property
    def username(self) -> str | None:
        return self.metadata.get("username")

    @property
    def user_id(self) -> int | None:
        return self.metadata.get("user")


def field_changes(*, table: str, label: str, before: dict | None, after: dict | None) -> list[FieldChange]:
    """The columns an event changed (for an insert or delete: the columns that had a value), in model order."""
    before, after = before or {}, after or {}
    changes = []
    for f in get_table(table).model._meta.concrete_fields:
        old, new = before.get(f.column), after.get(f.column)
        if label == EventLabel.UPDATE and old == new:
            continue
        if label != EventLabel.UPDATE and old is None and new is None:
            continue
        changes.append(FieldChange(column=f.column, label=f.verbose_name, before=old, after=new))
    return changes


def _row_events(events, contexts: dict[uuid.UUID, dict]) -> list[RowEvent]:
    return [
        RowEvent(
            id=e.id,
            at=e.created_at,
            label=e.label,
            table=e.table,
            key=e.key,
            context_id=e.context_id,
            metadata=contexts.get(e.context_id, {}),
            changes=field_changes(table=e.table, label=e.label, before=e.before, after=e.after),
        )
        for e in events
    ]


def _metadata(context_ids) -> dict[uuid.UUID, dict]:
    ids = {c for c in context_ids if c is not None}
    return dict(Context.objects.filter(id__in=ids).values_list("id", "metadata")) if ids else {}


def row_history(*, table: str, key: str, limit: int | None = None) -> list[RowEvent]:
    """Events of one reference row, newest first, each with its context and the per-field before/after."""
    get_table(table)
    events = list(ReferenceEvent.objects.filter(table=table, key=key).order_by("-id")[:limit])
    return _row_events(events, _metadata(e.context_id for e in events))


def context_events(*, context_id: uuid.UUID, limit: int | None = None) -> list[RowEvent]:
    """Events of one context in the order they happened (what an undo of it reverts)."""
    events = list(ReferenceEvent.objects.filter(context_id=context_id).order_by("id")[:limit])
    return _row_events(events, _metadata([context_id]))


def context_touches_row(*, context_id: uuid.UUID, table: str, key: str) -> bool:
    """Whether the context changed this row (an undo offered on a row's history must be one of the row's changes)."""
    return ReferenceEvent.objects.filter(context_id=context_id, table=table, key=key).exists()


def context_size(*, context_id: uuid.UUID) -> int:
    return ReferenceEvent.objects.filter(context_id=context_id).count()
