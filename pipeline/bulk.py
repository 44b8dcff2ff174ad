"""Bulk writes into a constrained table: rebuild its foreign keys and secondary indexes once, set-based."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from refgov.db.sql import ident


def use_bulk_memory(cur: CursorWrapper) -> None:
    """For the rest of this transaction: hash whole-table joins in memory and sort index builds in memory."""
    cur.execute(
        "SELECT set_config('work_mem', %s, true), set_config('maintenance_work_mem', %s, true)",
        [settings.REFGOV_SYNC_WORK_MEM, settings.REFGOV_SYNC_WORK_MEM],
    )


def skip_jit(cur: CursorWrapper) -> None:
    """For the rest of this transaction: no JIT compilation. On one-pass statements over a whole file it costs more
    (~0.7 s per statement at 1M rows) than it saves."""
    cur.execute("SELECT set_config('jit', 'off', true)")


@contextmanager
def planner_setting(cur: CursorWrapper, name: str, value: str) -> Iterator[None]:
    """For the statements of the block (in a transaction): the planner setting ``name`` (e.g. ``enable_sort``) at
    ``value``, where the plan that the estimates prefer is known to be the slower one."""
    cur.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
    before = cur.fetchone()[0]
    try:
        yield
    finally:
        cur.execute("SELECT set_config(%s, %s, true)", [name, before])


@contextmanager
def bulk_write_mode(cur: CursorWrapper, table: str, *, enabled: bool, primary_key: bool = False) -> Iterator[None]:
    """For a bulk insert: drop the table's foreign keys and secondary indexes, then rebuild them once, set-based.

    Foreign keys come back NOT VALID + VALIDATE (one anti-join instead of a trigger per row), indexes by a sorted
    build. Runs inside the table's transaction: a violation fails the VALIDATE and rolls the whole table back.
    ``primary_key``: the primary key too, for a table written without ON CONFLICT that no foreign key points to.
    Constraint and index definitions come from the catalog (``pg_get_constraintdef``, ``pg_get_indexdef``)."""
    if not enabled:
        yield
        return
    target = ident(table)
    # Fire this transaction's pending deferred checks now: ALTER TABLE refuses tables with pending trigger events.
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cur.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = quote_ident(%s)::regclass AND contype = 'f'",
        [table],
    )
    constraints = cur.fetchall()
    cur.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = quote_ident(%s)::regclass AND NOT i.indisunique AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        """,
        [table],
    )
    indexes = cur.fetchall()
    keys = []
    if primary_key:
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = quote_ident(%s)::regclass AND contype = 'p'",
            [table],
        )
        keys = cur.fetchall()
    for name, _ in constraints + keys:
        cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(target, sql.Identifier(name)))
    for name, _ in indexes:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    yield
    for name, definition in keys:
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(target, sql.Identifier(name), sql.SQL(definition))
        )
    for _, definition in indexes:
        cur.execute(sql.SQL(definition))
    for name, definition in constraints:
        constraint = sql.Identifier(name)
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID").format(target, constraint, sql.SQL(definition))
        )
        cur.execute(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(target, constraint))
    cur.execute("SET CONSTRAINTS ALL DEFERRED")
