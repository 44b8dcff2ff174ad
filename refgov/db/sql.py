"""SQL built from parts with psycopg.sql: names are ``Identifier``s, values are parameters.

A ``Literal`` is rendered into the statement text, where psycopg would read a ``%`` in it as a placeholder whenever
the statement also has parameters: use ``Literal`` only in statements executed without parameters (``value_list``,
``case_map``), and parameters (``%s``) everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql

from refgov.db.identifiers import check_identifier


def ident(*names: str) -> sql.Identifier:
    """A (possibly qualified) name that passed the identifier allow-list."""
    return sql.Identifier(*(check_identifier(n) for n in names))


def idents(names: Iterable[str], *, prefix: str | None = None) -> sql.Composed:
    """``a, b, c`` (or ``p.a, p.b, p.c``)."""
    parts = [sql.SQL("{}.{}").format(sql.Identifier(prefix), ident(n)) if prefix else ident(n) for n in names]
    return sql.SQL(", ").join(parts)
