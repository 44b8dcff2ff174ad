"""SQL built from parts with psycopg.sql: names are ``Identifier``s, values are parameters.

A ``Literal`` is rendered into the statement text, where psycopg would read a ``%`` in it as a placeholder whenever
the statement also has parameters: use ``Literal`` only in statements executed without parameters (``value_list``,
``case_map``), and parameters (``%s``) everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection, models
from psycopg import sql

from refgov.db.identifiers import check_identifier


def ident(*names: str) -> sql.Identifier:
    """A (possibly qualified) name that passed the identifier allow-list."""
    return sql.Identifier(*(check_identifier(n) for n in names))


def idents(names: Iterable[str], *, prefix: str | None = None) -> sql.Composed:
    """``a, b, c`` (or ``p.a, p.b, p.c``)."""
    parts = [sql.SQL("{}.{}").format(sql.Identifier(prefix), ident(n)) if prefix else ident(n) for n in names]
    return sql.SQL(", ").join(parts)


def column_name(model: type[models.Model], field: str) -> str:
    """The database column of ``model``'s field ``field``, from ``_meta`` (not spelled out in SQL)."""
    found = model._meta.get_field(field)
    if not isinstance(found, models.Field):
        raise TypeError(f"{model.__name__}.{field} has no column")
    return found.column


def column_type(field: models.Field) -> sql.SQL:
    """The PostgreSQL type of ``field``'s column (``numeric(20, 2)``, ``varchar(50)`` …), from Django."""
    found = field.db_type(connection)
    if found is None:
        raise TypeError(f"{field} has no column type")
    return sql.SQL(found)
