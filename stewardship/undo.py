"""Undo one context: every reference change it made is reverted in one transaction, set-based per table.

Per row, the state before the context's first event is restored: updated rows get their old values back, deleted
rows are inserted again, inserted rows are deleted. A row changed again after the context (by anyone else) blocks the
undo, as does a row whose current state is not the one the context left.

Who may undo (``check_undo_permission``): an undo needs the permissions of what it does — restoring updated rows is a
change, re-inserting deleted rows an add, removing inserted rows a delete (and removing authoritative rows is a
superuser's, as in the admin). A user undoes only their own changes; other users' changes and the system's (preload,
backfill: no user) are undone by superusers only.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from pghistory.models import Context
from psycopg import sql

from pipeline.facts.lookups import undo_value_mappings
from reference.history import Action, action_label, change_context
from reference.history_models import EventLabel, ReferenceEvent
from reference.models import Source
from reference.registry import ReferenceTable, dependency_order, get_table, tracking_column
from refgov.db.sql import ident, idents
from refgov.errors import first_line
from stewardship.merge import undo_merges

SAMPLES = 5
_SOURCE_COLUMN = tracking_column("source")

#: permission an undo needs → why it is refused without it
PERMISSION_REFUSALS = {
    "change": gettext_lazy(
        "Undoing this change restores changed rows of %(table)s: that needs the permission to change them."
    ),
    "add": gettext_lazy(
        "Undoing this change re-inserts deleted rows of %(table)s: that needs the permission to add them."
    ),
    "delete": gettext_lazy(
        "Undoing this change deletes rows added to %(table)s: that needs the permission to delete them."
    ),
}


class UndoRefused(Exception):
    """The context cannot be undone; the message says why (table, key and the later change)."""


@dataclass(frozen=True)
class UndoResult:
    context_id: uuid.UUID
    undo_context_id: uuid.UUID
    restored: int = 0
    reinserted: int = 0
    removed: int = 0
    tables: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.restored + self.reinserted + self.removed


def undo(*, context_id: uuid.UUID, user: User) -> UndoResult:
    """Revert all reference changes of ``context_id`` as one unit; recorded as an ``undo`` action of ``user``."""
    context_id = uuid.UUID(str(context_id))
    tables = list(
        ReferenceEvent.objects.filter(context_id=context_id).values_list("table", flat=True).distinct().order_by()
    )
    if not tables:
        raise UndoRefused(_("Nothing to undo: no reference change belongs to this context."))
    check_undo_permission(context_id=context_id, user=user)
    with transaction.atomic():
        undone_by = Context.objects.filter(metadata__undone_context=str(context_id)).values_list("id", flat=True)
        if undone_by:
            raise UndoRefused(_("This change was already undone (context %(undo)s).") % {"undo": undone_by[0]})
        with connection.cursor() as cur:
            for name in tables:
                cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(ident(name)))
            _collect(cur, context_id)
            _refuse_later_changes(cur)
            for name in tables:
                _refuse_drifted_rows(cur, get_table(name))
            try:
                with transaction.atomic():
                    with change_context(action=Action.UNDO, user=user, undone_context=str(context_id)) as undo_id:
                        counts = _apply(cur, tables)
                        undo_merges(context_id=context_id)  # facts and aliases a merge re-pointed
                        undo_value_mappings(context_id=context_id)  # facts a value mapping re-pointed
                    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    cur.execute("SET CONSTRAINTS ALL DEFERRED")
            except IntegrityError as exc:
                raise UndoRefused(_("Undo would break a reference: %(error)s") % {"error": first_line(exc)}) from None
            cur.execute("DROP TABLE _undo")
    restored, reinserted, removed = (sum(c[i] for c in counts.values()) for i in range(3))
    return UndoResult(
        context_id=context_id,
        undo_context_id=undo_id,
        restored=restored,
        reinserted=reinserted,
        removed=removed,
        tables={name: sum(c) for name, c in counts.items()},
    )


@dataclass(frozen=True)
class UndoEffect:
    """What undoing a context does to one table: rows restored, re-inserted, removed (of those, authoritative)."""

    table: str
    restore: int
    reinsert: int
    remove: int
    remove_authoritative: int


def undo_effects(*, context_id: uuid.UUID) -> list[UndoEffect]:
    """Per table of the context, what its undo would do (from the recorded events, one query)."""
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL(
                """
                SELECT r."table",
                       count(*) FILTER (WHERE f.before IS NOT NULL AND l.after IS NOT NULL),
                       count(*) FILTER (WHERE f.before IS NOT NULL AND l.after IS NULL),
                       count(*) FILTER (WHERE f.before IS NULL AND l.after IS NOT NULL),
                       count(*) FILTER (WHERE f.before IS NULL AND l.after ->> %s = %s)
                FROM {rows}
                GROUP BY r."table" ORDER BY r."table"
                """
            ).format(rows=_rows_of_context()),
            [_SOURCE_COLUMN, Source.AUTHORITATIVE.value, context_id],
        )
        return [UndoEffect(*row) for row in cur.fetchall()]


def check_undo_permission(*, context_id: uuid.UUID, user: User) -> None:
    """Raise ``PermissionDenied`` (saying why) unless ``user`` may undo the context; see the module's rule."""
    context_id = uuid.UUID(str(context_id))
    metadata = Context.objects.filter(id=context_id).values_list("metadata", flat=True).first() or {}
    if not user.is_superuser and metadata.get("user") != user.pk:
        action = action_label(metadata.get("action"))
        who = metadata.get("username") or _("the system (%(action)s)") % {"action": action}
        raise PermissionDenied(
            _("Only a superuser may undo this change: it was made by %(who)s, and you may undo only your own changes.")
            % {"who": who}
        )
    for effect in undo_effects(context_id=context_id):
        opts = get_table(effect.table).model._meta
        for action, count in (("change", effect.restore), ("add", effect.reinsert), ("delete", effect.remove)):
            if count and not user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}"):
                raise PermissionDenied(PERMISSION_REFUSALS[action] % {"table": opts.verbose_name_plural})
        if effect.remove_authoritative and not user.is_superuser:
            raise PermissionDenied(
                _(
                    "Undoing this change would delete %(n)d authoritative rows of %(table)s; only superusers delete "
                    "authoritative rows."
                )
                % {"n": effect.remove_authoritative, "table": opts.verbose_name_plural}
            )


def _rows_of_context() -> sql.Composed:
    """``FROM`` part: per row a context changed (parameter: the context id), its first (``f``) and last (``l``)
    event."""
    return sql.SQL(
        """
        (SELECT "table", key, min(id) AS first_id, max(id) AS last_id FROM {events}
         WHERE context_id = %s GROUP BY "table", key) r
        JOIN {events} f ON f.id = r.first_id
        JOIN {events} l ON l.id = r.last_id
        """
    ).format(events=ident(ReferenceEvent._meta.db_table))


def _collect(cur: CursorWrapper, context_id: uuid.UUID) -> None:
    """Per row of the context: its state before the first event and after the last one."""
    cur.execute(
        sql.SQL(
            """
            CREATE TEMP TABLE _undo ON COMMIT DROP AS
            SELECT r."table", r.key, f.before, l.after, r.last_id FROM {rows}
            """
        ).format(rows=_rows_of_context()),
        [context_id],
    )
    cur.execute('CREATE INDEX ON _undo ("table", key)')
    cur.execute("ANALYZE _undo")


def _refuse_later_changes(cur: CursorWrapper) -> None:
    cur.execute(
        sql.SQL(
            """
            SELECT e."table", e.key, e.label, e.created_at, c.metadata
            FROM _undo u
            CROSS JOIN LATERAL (
                SELECT * FROM {events} e
                WHERE e."table" = u."table" AND e.key = u.key AND e.id > u.last_id ORDER BY e.id LIMIT 1
            ) e
            LEFT JOIN {contexts} c ON c.id = e.context_id
            ORDER BY e.id LIMIT %s
            """
        ).format(events=ident(ReferenceEvent._meta.db_table), contexts=ident(Context._meta.db_table)),
        [SAMPLES],
    )
    later = cur.fetchall()
    if not later:
        return
    described = "; ".join(
        _describe(table, key, label, at, json.loads(metadata or "{}")) for table, key, label, at, metadata in later
    )
    raise UndoRefused(_("Cannot undo: rows were changed again later. %(changes)s") % {"changes": described})


def _describe(table: str, key: str, label: str, at: dt.datetime, metadata: dict[str, Any]) -> str:
    return _("%(table)s %(key)s: %(label)s at %(at)s by %(who)s (%(action)s)") % {
        "table": table,
        "key": key,
        "label": EventLabel(label).label,
        "at": localtime(at).strftime("%Y-%m-%d %H:%M:%S"),
        "who": metadata.get("username") or _("the system"),
        "action": action_label(metadata.get("action")),
    }


def _refuse_drifted_rows(cur: CursorWrapper, table: ReferenceTable) -> None:
    """A row's current state must be the one the context left (a change outside the record would be lost)."""
    cur.execute(
        sql.SQL(
            """
            SELECT u.key FROM _undo u LEFT JOIN {table} t ON t.{key} = u.key
            WHERE u."table" = %s AND CASE WHEN u.after IS NULL THEN t.{key} IS NOT NULL
                                          ELSE t IS DISTINCT FROM jsonb_populate_record(NULL::{table}, u.after) END
            ORDER BY u.key LIMIT %s
            """
        ).format(table=ident(table.name), key=ident(table.key_column)),
        [table.name, SAMPLES],
    )
    keys = [k for (k,) in cur.fetchall()]
    if keys:
        raise UndoRefused(
            _("Cannot undo: %(table)s %(keys)s no longer match this change (changed outside the history).")
            % {"table": table.name, "keys": ", ".join(keys)}
        )


def _apply(cur: CursorWrapper, tables: list[str]) -> dict[str, list[int]]:
    """Re-insert deleted rows (parents first), restore updated rows, delete inserted rows (children first)."""
    order = dependency_order(tables)
    counts = {name: [0, 0, 0] for name in order}
    for name in order:
        cur.execute(
            sql.SQL(
                """
                INSERT INTO {table} SELECT r.* FROM _undo u, jsonb_populate_record(NULL::{table}, u.before) r
                WHERE u."table" = %s AND u.before IS NOT NULL AND u.after IS NULL
                """
            ).format(table=ident(name)),
            [name],
        )
        counts[name][1] = cur.rowcount
    for name in order:
        table = get_table(name)
        columns = [f.column for f in table.model._meta.concrete_fields]
        cur.execute(
            sql.SQL(
                """
                UPDATE {table} t SET ({columns}) = ({values})
                FROM _undo u, jsonb_populate_record(NULL::{table}, u.before) r
                WHERE u."table" = %s AND u.before IS NOT NULL AND u.after IS NOT NULL AND t.{key} = u.key
                """
            ).format(
                table=ident(name),
                columns=idents(columns),
                values=idents(columns, prefix="r"),
                key=ident(table.key_column),
            ),
            [name],
        )
        counts[name][0] = cur.rowcount
    for name in reversed(order):
        table = get_table(name)
        cur.execute(
            sql.SQL(
                """
                DELETE FROM {table} t USING _undo u
                WHERE u."table" = %s AND u.before IS NULL AND u.after IS NOT NULL AND t.{key} = u.key
                """
            ).format(table=ident(name), key=ident(table.key_column)),
            [name],
        )
        counts[name][2] = cur.rowcount
    return counts
