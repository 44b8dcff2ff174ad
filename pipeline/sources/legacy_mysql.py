"""Streaming reads from the legacy MySQL/MariaDB through a raw mysqlclient connection (server-side cursor).

Django's MySQL backend refuses old servers and cannot stream; this reader works with MySQL 5.7 and newer MariaDB
and keeps memory bounded by ``chunk_size`` rows. Values are cast to text on the server: the PostgreSQL side parses
them set-based.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import MySQLdb
import MySQLdb.cursors
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from MySQLdb.constants import FIELD_TYPE
from MySQLdb.converters import conversions

from refgov.db.identifiers import check_identifier, quote_mysql


def _temporal_text(value: str) -> str | None:
    """Dates and times stay ISO text (PostgreSQL parses them in COPY); MySQL's zero date means no date."""
    return None if value.startswith("0000-00-00") else value


# Cheaper than mysqlclient's defaults: no Python date or Decimal objects, only text where PostgreSQL parses anyway.
STREAM_CONVERSIONS = {
    **conversions,
    FIELD_TYPE.DATE: _temporal_text,
    FIELD_TYPE.DATETIME: _temporal_text,
    FIELD_TYPE.TIMESTAMP: _temporal_text,
    FIELD_TYPE.DECIMAL: None,
    FIELD_TYPE.NEWDECIMAL: None,
}


class SourceError(Exception):
    """The source could not be read; the message names the server, database and table."""


URL_FORMAT_HELP = (
    "LEGACY_MYSQL_URL is malformed: {problem} (expected mysql://user:password@host:port, with characters such as "
    ": / @ # ? in the password percent-encoded)"
)


@dataclass(frozen=True)
class MySQLServer:
    host: str
    port: int
    user: str
    password: str = field(repr=False)

    @classmethod
    @sensitive_variables()
    def from_url(cls, url: str) -> MySQLServer:
        """Parse ``mysql://user:password@host:port``. Errors name the variable and what is wrong, never a part of the
        URL (a malformed URL may put the password where a host or port belongs)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            what = "the port is not a number from 1 to 65535" if "port" in str(exc).lower() else "it cannot be parsed"
            raise SourceError(f"{URL_FORMAT_HELP.format(problem=what)}") from None
        if parts.scheme not in {"mysql", "mariadb"}:
            raise SourceError(URL_FORMAT_HELP.format(problem="it must start with mysql://"))
        if parts.path not in {"", "/"}:
            raise SourceError("LEGACY_MYSQL_URL must not name a database; each preload source names its own")
        if parts.query or parts.fragment:
            raise SourceError(URL_FORMAT_HELP.format(problem="it has a query or fragment (? or #)"))
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
        )

    @classmethod
    def from_settings(cls) -> MySQLServer:
        return cls.from_url(settings.LEGACY_MYSQL_URL)

    def __str__(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}"

    def connect(self, database: str | None = None, *, streaming: bool = False, **extra: Any) -> MySQLdb.Connection:
        options = {"database": check_identifier(database)} if database else {}
        try:
            return MySQLdb.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                charset="utf8mb4",
                connect_timeout=10,
                cursorclass=MySQLdb.cursors.SSCursor if streaming else MySQLdb.cursors.Cursor,
                conv=STREAM_CONVERSIONS if streaming else conversions,
                **options,
                **extra,
            )
        except MySQLdb.Error as exc:
            where = f"database {database!r} " if database else ""
            raise SourceError(f"legacy MySQL {self} {where}unreachable: {_reason(exc)}") from None


def _select_expression(column: str, how: str) -> str:
    if how == "bool":
        return f"CASE WHEN {quote_mysql(column)} IS NULL THEN NULL WHEN {quote_mysql(column)} <> 0 THEN 1 ELSE 0 END"
    return quote_mysql(column)


def _reason(exc: MySQLdb.Error) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    return f"({args[0]}) {args[1]}" if len(args) == 2 else str(exc)


@dataclass(frozen=True)
class ColumnInfo:
    data_type: str
    max_length: int | None
    unique: bool


@dataclass(frozen=True)
class SourceStats:
    """What an incremental source looks like before it is read: its rows, its watermark column's largest value, and
    how many rows are newer than the stored watermark."""

    rows: int
    max_value: str | None
    newer: int


@dataclass
class LegacyTableReader:
    server: MySQLServer
    database: str
    table: str
    chunk_size: int = 20_000
    _columns: dict[str, ColumnInfo] | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.database}.{self.table}"

    def columns(self) -> dict[str, str]:
        return {name: info.data_type for name, info in self._describe().items()}

    def is_unique(self, column: str) -> bool:
        return column in self._describe() and self._describe()[column].unique

    def max_length(self, column: str) -> int | None:
        return self._describe()[column].max_length if column in self._describe() else None

    def _describe(self) -> dict[str, ColumnInfo]:
        if self._columns is not None:
            return self._columns
        conn = self.server.connect(self.database)
        try:
            cur = conn.cursor()
            # Two plain lookups: a correlated subquery on information_schema.STATISTICS makes MariaDB open every
            # table of the server (a third of a second per source table).
            cur.execute(
                "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (self.database, self.table),
            )
            described = cur.fetchall()
            cur.execute(
                "SELECT INDEX_NAME, MAX(COLUMN_NAME) FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 "
                "GROUP BY INDEX_NAME HAVING COUNT(*) = 1",
                (self.database, self.table),
            )
            unique_columns = {column for _, column in cur.fetchall()}
            names = {
                name: ColumnInfo(data_type=(data_type or "").lower(), max_length=length, unique=name in unique_columns)
                for name, data_type, length in described
            }
        except MySQLdb.Error as exc:
            raise SourceError(f"legacy MySQL {self.server} {self.name}: {_reason(exc)}") from None
        finally:
            conn.close()
        if not names:
            raise SourceError(f"legacy MySQL {self.server}: table {self.name} does not exist")
        self._columns = names
        return names

    def rows(
        self, columns: list[tuple[str, str]], *, since_column: str | None = None, since: str | None = None
    ) -> Iterator[list[tuple[str | None, ...]]]:
        """Yield chunks of rows in the order of ``columns``, values as mysqlclient converts them (str, int, date;
        MySQL's zero date as None); ``bool`` columns as 1/0. Everything else is left to PostgreSQL, set-based."""
        select = ", ".join(_select_expression(name, how) for name, how in columns)
        sql = f"SELECT {select} FROM {quote_mysql(self.database)}.{quote_mysql(self.table)}"
        params: tuple[str, ...] = ()
        if since_column and since is not None:
            sql += f" WHERE {quote_mysql(since_column)} > %s"
            params = (since,)
        conn = self.server.connect(self.database, streaming=True)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            while chunk := cur.fetchmany(self.chunk_size):
                yield chunk
            cur.close()
        except MySQLdb.Error as exc:
            raise SourceError(f"legacy MySQL {self.server} {self.name}: {_reason(exc)}") from None
        finally:
            conn.close()

    def stats(self, column: str, *, since: str | None) -> SourceStats:
        """Rows, largest ``column`` value (as text) and rows newer than ``since``: one statement, one round trip.

        Three subqueries rather than one pass: the maximum and the newer rows are read from the column's index, and
        only the row count walks a whole index."""
        quoted, table = quote_mysql(column), f"{quote_mysql(self.database)}.{quote_mysql(self.table)}"
        newer = f"(SELECT COUNT(*) FROM {table} WHERE {quoted} > %s)" if since is not None else "NULL"
        sql = f"SELECT (SELECT COUNT(*) FROM {table}), (SELECT CAST(MAX({quoted}) AS CHAR) FROM {table}), {newer}"
        conn = self.server.connect(self.database)
        try:
            cur = conn.cursor()
            cur.execute(sql, (since,) if since is not None else ())
            rows, largest, newer_rows = cur.fetchone()
            return SourceStats(rows=int(rows), max_value=largest, newer=int(rows if newer_rows is None else newer_rows))
        except MySQLdb.Error as exc:
            raise SourceError(f"legacy MySQL {self.server} {self.name}: {_reason(exc)}") from None
        finally:
            conn.close()
