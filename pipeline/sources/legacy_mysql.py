"""Streaming reads from the legacy MySQL/MariaDB through a raw mysqlclient connection (server-side cursor).

Django's MySQL backend refuses old servers and cannot stream; this reader works with MySQL 5.7 and newer MariaDB
and keeps memory bounded by ``chunk_size`` rows. Values are cast to text on the server: the PostgreSQL side parses
them set-based.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import MySQLdb
import MySQLdb.cursors
from django.conf import settings

from refgov.identifiers import check_identifier, quote_mysql


class SourceError(Exception):
    """The source could not be read; the message names the server, database and table."""


@dataclass(frozen=True)
class MySQLServer:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> MySQLServer:
        parts = urlsplit(url)
        if parts.scheme not in {"mysql", "mariadb"}:
            raise SourceError(f"LEGACY_MYSQL_URL must start with mysql:// (got {parts.scheme or 'nothing'}://)")
        if parts.path not in {"", "/"}:
            raise SourceError("LEGACY_MYSQL_URL must not name a database; each preload source names its own")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
        )

    @classmethod
    def from_settings(cls) -> MySQLServer:
        return cls.from_url(settings.LEGACY_MYSQL_URL)

    def __str__(self) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}"

    def connect(self, database: str, *, streaming: bool = False) -> MySQLdb.Connection:
        try:
            return MySQLdb.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                database=check_identifier(database),
                charset="utf8mb4",
                connect_timeout=10,
                cursorclass=MySQLdb.cursors.SSCursor if streaming else MySQLdb.cursors.Cursor,
            )
        except MySQLdb.Error as exc:
            raise SourceError(f"legacy MySQL {self} database {database!r} unreachable: {_reason(exc)}") from None


def _reason(exc: MySQLdb.Error) -> str:
    args = getattr(exc, "args", ())
    return f"({args[0]}) {args[1]}" if len(args) == 2 else str(exc)


@dataclass
class LegacyTableReader:
    server: MySQLServer
    database: str
    table: str
    chunk_size: int = 20_000

    @property
    def name(self) -> str:
        return f"{self.database}.{self.table}"

    def columns(self) -> list[str]:
        conn = self.server.connect(self.database)
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (self.database, self.table),
            )
            names = [row[0] for row in cur.fetchall()]
        except MySQLdb.Error as exc:
            raise SourceError(f"legacy MySQL {self.server} {self.name}: {_reason(exc)}") from None
        finally:
            conn.close()
        if not names:
            raise SourceError(f"legacy MySQL {self.server}: table {self.name} does not exist")
        return names

    def rows(
        self, columns: list[str], *, since_column: str | None = None, since: str | None = None
    ) -> Iterator[list[tuple[str | None, ...]]]:
        """Yield chunks of rows, each value as text (or None), in the order of ``columns``."""
        select = ", ".join(f"CAST({quote_mysql(c)} AS CHAR)" for c in columns)
        sql = f"SELECT {select} FROM {quote_mysql(self.database)}.{quote_mysql(self.table)}"
        params: tuple = ()
        if since_column and since is not None:
            sql += f" WHERE {quote_mysql(since_column)} >= %s"
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

    def max_value(self, column: str, *, since: str | None = None) -> str | None:
        """Largest value of the incremental column (as text) among the rows a read with ``since`` would see."""
        sql = (
            f"SELECT CAST(MAX({quote_mysql(column)}) AS CHAR) "
            f"FROM {quote_mysql(self.database)}.{quote_mysql(self.table)}"
        )
        params: tuple = ()
        if since is not None:
            sql += f" WHERE {quote_mysql(column)} >= %s"
            params = (since,)
        conn = self.server.connect(self.database)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur.fetchone()[0]
        except MySQLdb.Error as exc:
            raise SourceError(f"legacy MySQL {self.server} {self.name}: {_reason(exc)}") from None
        finally:
            conn.close()
