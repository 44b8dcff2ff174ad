"""Who changed a reference row, when, in which action, and what it was before: the context of a change and the
per-row history.

Triggers record every UPDATE and DELETE of the four reference tables, and INSERTs made inside a context (see
``reference/migrations/0007_history.py``). A context groups the changes of one stewardship action; ``undo`` reverts
one context as a unit (``stewardship.undo``).

pghistory's public ``pghistory.context`` sets the context: before each statement inside it, pghistory sets the
transaction settings ``pghistory.context_id`` and ``pghistory.context_metadata``, and the trigger function (migration
0007) stores the context row through pghistory's SQL function ``_pgh_attach_context()``. Those two settings and that
function are pghistory internals, not API: this module names them in one place (``PGHISTORY_SETTINGS``,
``_clear_pghistory_settings``), and ``tests/test_history_pghistory.py`` fails if an upgrade of pghistory changes
them.
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pghistory
import psycopg
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy
from pghistory.models import Context
from psycopg import sql

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

from .history_models import EventLabel, ReferenceEvent
from .registry import get_table


class Action(enum.StrEnum):
    """Action names stewardship services put in their context (the value is what the context's metadata holds)."""

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
    CONFIRM_KEEP = "confirm_keep"
    MAP_VALUE = "map_value"
    REJECT = "reject"


ACTION_LABELS: dict[str, Promise] = {
    Action.EDIT: gettext_lazy("edit"),
    Action.ADD: gettext_lazy("add"),
    Action.DELETE: gettext_lazy("delete"),
    Action.BULK_COMPLETE: gettext_lazy("bulk completion"),
    Action.IMPORT: gettext_lazy("import"),
    Action.PROMOTE: gettext_lazy("promote to authoritative"),
    Action.MERGE: gettext_lazy("merge"),
    Action.CONFIRM_KEEP: gettext_lazy("confirmed and kept (still auto-derived)"),
    Action.MAP_VALUE: gettext_lazy("unmapped value mapped"),
    Action.REJECT: gettext_lazy("rejected: fact rows moved to the quarantine"),
    Action.UNDO: gettext_lazy("undo"),
    Action.PRELOAD: gettext_lazy("preload"),
    Action.BACKFILL: gettext_lazy("backfill of pending rows"),
}


def action_label(action: str | None) -> str:
    """The action's name for people (an unknown action shows as it was recorded)."""
    if not action:
        return str(gettext_lazy("no action recorded"))
    return str(ACTION_LABELS.get(action, action))


#: The transaction settings pghistory sets before each statement inside a context (pghistory internals, read by the
#: trigger function of migration 0007).
PGHISTORY_SETTINGS = ("pghistory.context_id", "pghistory.context_metadata")

_nesting = threading.local()  # how deep this thread is inside change_context (pghistory's context is per thread too)


def _context_active() -> bool:
    return getattr(_nesting, "depth", 0) > 0


def _clear_pghistory_settings() -> None:
    """The one use of pghistory's internals in Python: clear the settings of its context, so that later statements of
    the same transaction (a preload's inserts after its recorded update, say) are not attributed to this context
    (pghistory sets them transaction-locally and leaves them when its context ends)."""
    raw = connection.connection
    if raw is not None and raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        with connection.cursor() as cur:
            cur.execute("SELECT set_config(%s, '', true), set_config(%s, '', true)", list(PGHISTORY_SETTINGS))


def _composed_as_text(
    execute: Callable[..., Any], statement: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """Execute wrapper: pghistory's own wrapper (which prefixes each statement with the context's settings) takes only
    text, so a statement composed with ``psycopg.sql`` becomes text before it gets there."""
    if isinstance(statement, sql.Composable):
        statement = statement.as_string(context["connection"].connection)
    return execute(statement, params, many, context)


@contextmanager
def change_context(*, action: Action, user: AbstractBaseUser | None = None, **extra: Any) -> Iterator[uuid.UUID]:
    """Record the reference changes made inside as one unit, with the action, the user (if any) and ``extra``.

    Nested inside another context, it adds its metadata to the outer one (pghistory's rule): one unit remains.
    Yields the context id, which ``undo(context_id=...)`` accepts."""
    metadata: dict[str, Any] = {"action": action, **extra}
    if user is not None:
        metadata.update(user=user.pk, username=user.get_username())
    outermost = not _context_active()
    with ExitStack() as stack:
        if outermost:
            # Registered before pghistory's wrapper, so it runs first (Django runs the earliest wrapper outermost).
            stack.enter_context(connection.execute_wrapper(_composed_as_text))
            stack.callback(_clear_pghistory_settings)
        _nesting.depth = getattr(_nesting, "depth", 0) + 1
        stack.callback(_leave)
        with pghistory.context(**metadata) as ctx:
            yield ctx.id


def _leave() -> None:
    _nesting.depth -= 1


@contextmanager
def stewardship_context(*, user: AbstractBaseUser, action: Action, **extra: Any) -> Iterator[uuid.UUID]:
    """The context of a steward's change: every stewardship service wraps its writes in it."""
    with change_context(action=action, user=user, **extra) as context_id:
        yield context_id


@dataclass(frozen=True)
class FieldChange:
    column: str
    label: StrOrPromise  # the field's verbose name, translated when shown
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
    metadata: dict[str, Any] = field(default_factory=dict)
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


def field_changes(
    *, table: str, label: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[FieldChange]:
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


def _row_events(events: Iterable[ReferenceEvent], contexts: dict[uuid.UUID, dict[str, Any]]) -> list[RowEvent]:
    return [
        RowEvent(
            id=e.id,
            at=e.created_at,
            label=e.label,
            table=e.table,
            key=e.key,
            context_id=e.context_id,
            metadata=contexts.get(e.context_id, {}) if e.context_id is not None else {},
            changes=field_changes(table=e.table, label=e.label, before=e.before, after=e.after),
        )
        for e in events
    ]


def _metadata(context_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, dict[str, Any]]:
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
