"""A large plain CSV is copied into PostgreSQL in parts, one connection per part, so that PostgreSQL parses them in
parallel (COPY itself is single-threaded).

The file is cut after a line break outside quotes (PostgreSQL's own rule: every ``"`` toggles quoting), so every part
starts at a record. The first part goes into the load's own temporary table; every other part is copied by a worker
connection into an UNLOGGED table in the ``refgov_staging`` schema, committed so that the load's transaction can read
it. The load drops those tables in its transaction; a table left behind by a crash is swept by the next parallel load
once it is older than ``STALE_AFTER_SECONDS``.

Every range counts its records in the bytes it sends (``RecordCounter``), and a COPY that stored another number of
rows raises ``CopyIncomplete``: PostgreSQL's CSV COPY takes an unquoted line ``\\.`` for the end of the data and
silently drops every record after it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from django.db import DatabaseError, connection
from psycopg import sql

logger = logging.getLogger("refgov.facts")
STAGING_SCHEMA = "refgov_staging"
STALE_AFTER_SECONDS = 6 * 3600
BLOCK = 1 << 20


def record_ranges(path: Path, start: int, parts: int) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` covering the file from ``start``, each beginning at a record, at most ``parts``."""
    size = path.stat().st_size
    bounds = [start]
    with path.open("rb") as fh:
        fh.seek(start)
        position, quotes = start, 0
        for index in range(1, parts):
            target = start + (size - start) * index // parts
            while position < target:
                block = fh.read(min(BLOCK, target - position))
                quotes += block.count(b'"')
                position += len(block)
            boundary, position, quotes = _next_record(fh, position, quotes)
            if boundary is None or boundary >= size:
                break
            bounds.append(boundary)
    bounds.append(size)
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _next_record(fh: IO[bytes], position: int, quotes: int) -> tuple[int | None, int, int]:
    """The offset just after the next line break outside quotes, and the scan state (position, quotes) there."""
    while block := fh.read(1 << 16):
        offset = 0
        while (newline := block.find(b"\n", offset)) >= 0:
            quotes += block.count(b'"', offset, newline)
            offset = newline + 1
            if quotes % 2 == 0:
                fh.seek(position + offset)
                return position + offset, position + offset, quotes
        quotes += block.count(b'"', offset)
        position += len(block)
    return None, position, quotes


class CopyIncomplete(Exception):
    """COPY stored another number of rows than the bytes it was sent hold records (e.g. after a line ``\\.``)."""

    def __init__(self, path: Path, records: int, rows: int) -> None:
        super().__init__(f"{path.name}: COPY stored {rows} rows of {records} records")
        self.records, self.rows = records, rows


_NOT_QUOTE_OR_LINE_BREAK = bytes(b for b in range(256) if b not in b'"\n')


class RecordCounter:
    """Counts the CSV records of consecutive blocks by PostgreSQL's rule: a line break outside quotes ends a record
    (every ``"`` toggles quoting), and so does the end of the data after a last line without one.

    Done at C speed: a block without quotes is one ``count``; otherwise the block is reduced to its quotes and line
    breaks, pairs of adjacent quotes (which leave the quoting as it was) are dropped, and what remains splits into
    the few runs of line breaks inside and outside quotes."""

    def __init__(self) -> None:
        self.quoted = False
        self.complete = 0
        self.pending = False  # bytes after the last complete record

    def feed(self, block: bytes) -> None:
        if not block:
            return
        if b'"' in block:
            pieces = block.translate(None, _NOT_QUOTE_OR_LINE_BREAK).replace(b'""', b"").split(b'"')
            self.complete += b"".join(pieces[1 if self.quoted else 0 :: 2]).count(b"\n")
            self.quoted ^= len(pieces) % 2 == 0
        elif not self.quoted:
            self.complete += block.count(b"\n")
        self.pending = self.quoted or not block.endswith(b"\n")

    @property
    def records(self) -> int:
        return self.complete + self.pending


@dataclass(frozen=True)
class CsvCopy:
    """``COPY <table> (columns) FROM STDIN`` of CSV bytes, for the load's own table and for each part's."""

    columns: sql.Composable
    delimiter: str
    encoding: str

    def into(self, table: sql.Composable) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, DELIMITER {}, ENCODING {})").format(
            table, self.columns, sql.Literal(self.delimiter), sql.Literal(self.encoding)
        )


def copy_range(
    cur: psycopg.Cursor[Any],
    statement: sql.Composed,
    path: Path,
    start: int,
    end: int,
    on_block: Callable[[int], None] | None = None,
) -> int:
    """COPY the bytes ``[start, end)`` of ``path`` through ``statement``; returns the rows copied, which are checked
    against the records counted in the same bytes (``CopyIncomplete`` if they differ)."""
    counter = RecordCounter()
    with path.open("rb") as fh:
        fh.seek(start)
        with cur.copy(statement) as copy:
            remaining = end - start
            while remaining and (block := fh.read(min(BLOCK, remaining))):
                copy.write(block)
                counter.feed(block)
                remaining -= len(block)
                if on_block is not None:
                    on_block(len(block))
        if cur.rowcount != counter.records:
            raise CopyIncomplete(path, counter.records, cur.rowcount)
        return cur.rowcount


def part_table(token: str, index: int) -> sql.Identifier:
    return sql.Identifier(STAGING_SCHEMA, f"fact_{token}_{index}")


def _listed(tables: list[sql.Identifier]) -> sql.Composed:
    return sql.SQL(", ").join(tables)


def new_token() -> str:
    """Names this load's part tables: creation time (for the sweep) and a random suffix."""
    return f"{int(time.time())}_{secrets.token_hex(4)}"


def worker_connection() -> psycopg.Connection:
    """A connection of its own to the load's database, in autocommit (each part commits when copied)."""
    params = {k: v for k, v in connection.get_connection_params().items() if k not in {"cursor_factory", "context"}}
    return psycopg.connect(**params, autocommit=True, application_name="refgov fact copy part")


def copy_part(
    token: str,
    index: int,
    columns: sql.Composable,
    copy: CsvCopy,
    path: Path,
    start: int,
    end: int,
    then: Callable[[sql.Identifier], sql.Composed],
) -> tuple[int, list[tuple[Any, ...]]]:
    """Create the part's table and COPY its range into it, then run the query ``then(table)`` on it, on a worker
    connection; returns the rows copied and the query's rows. A failed part leaves no table."""
    table = part_table(token, index)
    with worker_connection() as conn, conn.cursor() as cur:
        cur.execute("SET jit = off")
        cur.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (_seq integer GENERATED ALWAYS AS IDENTITY (CACHE 100000), {})").format(
                table, columns
            )
        )
        try:
            copied = copy_range(cur, copy.into(table), path, start, end)
            cur.execute(then(table))
            return copied, cur.fetchall()
        except BaseException:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            raise


def normalised_table(token: str, index: int) -> sql.Identifier:
    return sql.Identifier(STAGING_SCHEMA, f"fact_{token}_{index}_n")


def set_aside_table(token: str, index: int) -> sql.Identifier:
    """The rows of a normalised part that the load keeps in ``_fact`` (new keys: a few percent)."""
    return sql.Identifier(STAGING_SCHEMA, f"fact_{token}_{index}_u")


def normalise_part(
    target: sql.Identifier,
    make: Sequence[sql.Composed],
    after: Sequence[tuple[sql.Composed, Sequence[Any] | None]] = (),
    made: Sequence[sql.Identifier] = (),
) -> list[int]:
    """On a worker connection: the normalised rows of one copied part as the committed UNLOGGED table ``target``,
    which the statements ``make`` create and fill (they embed their literals: executed without parameters), then the
    statements ``after`` (with their parameters) on it, which may create the tables ``made``; returns the rows each
    of ``after`` touched. A failure leaves none of these tables."""
    with worker_connection() as conn, conn.cursor() as cur:
        cur.execute("SET jit = off")
        try:
            for statement in make:
                cur.execute(statement)
            counts = []
            for query, params in after:
                cur.execute(query, params)
                counts.append(cur.rowcount)
        except BaseException:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_listed([target, *made])))
            raise
    return counts


def drop_parts(tables: list[sql.Identifier]) -> None:
    """Drop part tables the load's transaction never read (else only that transaction may drop them)."""
    if tables:
        with worker_connection() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_listed(tables)))


def drop_after_load(tables: list[sql.Identifier]) -> None:
    """Once the load's transaction is over (committed or rolled back), make sure its part tables are gone. Inside an
    enclosing transaction (a dry run's is rolled back) that transaction still holds them: they wait for the sweep."""
    if tables and not connection.in_atomic_block:
        try:
            with connection.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_listed(tables)))
        except DatabaseError as exc:  # e.g. the connection is gone: keep the load's own error, leave them to the sweep
            logger.warning("part tables %s left for the sweep: %s", _listed(tables).as_string(None), exc)


def sweep_stale() -> None:
    """Drop part tables older than ``STALE_AFTER_SECONDS`` (a load that crashed); skip any a live load still holds."""
    with worker_connection() as conn:
        conn.execute("SET lock_timeout = '200ms'")
        names = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename ~ '^fact_[0-9]+_'", [STAGING_SCHEMA]
        ).fetchall()
        cutoff = time.time() - STALE_AFTER_SECONDS
        for (name,) in names:
            if int(name.split("_")[1]) < cutoff:
                try:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(STAGING_SCHEMA, name)))
                except psycopg.errors.LockNotAvailable:
                    pass
