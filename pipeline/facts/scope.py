"""What a fact load replaces, for a preview: the replace scope's values (e.g. 月度 + 业务类型 + 计划类型) of a batch's
rows, and how many rows the fact table holds today in each of them.

``batch_scope`` runs inside a dry run, before it is rolled back (the batch's rows exist only there); ``rows_in_scope``
runs afterwards, on the table as it is. Both are read-only and match the scope as the load does: the month by
equality, the other columns with ``IS NOT DISTINCT FROM`` (an empty 计划类型 is a value of its own)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection
from psycopg import sql

from pipeline.fact_tables import BATCH_COLUMN, MONTH_COLUMN, fact_table
from refgov.db.sql import ident, idents


@dataclass(frozen=True)
class ScopePart:
    """One value combination of the replace scope: the batch's rows in it, and the rows a load would replace."""

    values: dict[str, str | None]
    rows: int
    replaced: int = 0

    def summary(self) -> dict[str, Any]:
        return {"values": self.values, "rows": self.rows, "replaced": self.replaced}


def _text(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.date) else None if value is None else str(value)


def batch_scope(
    *, fact_table_name: str, scope: list[str], batch_id: int, relation: str | None = None
) -> list[ScopePart]:
    """The scope's value combinations among the batch's rows, with their row counts, in scope order (``relation``:
    read them there instead, e.g. a dry run's load table)."""
    statement = sql.SQL("SELECT {scope}, count(*) FROM {fact} WHERE {batch} = %s GROUP BY {scope} ORDER BY {scope}")
    table = relation or fact_table(fact_table_name).name
    names = {"scope": idents(scope), "fact": ident(table), "batch": ident(BATCH_COLUMN)}
    with connection.cursor() as cur:
        cur.execute(statement.format(**names), [batch_id])
        found = cur.fetchall()
    return [ScopePart(values=dict(zip(scope, map(_text, row[:-1]), strict=True)), rows=row[-1]) for row in found]


def rows_in_scope(*, fact_table_name: str, parts: list[ScopePart]) -> list[ScopePart]:
    """``parts`` with the number of rows the fact table holds in each (what loading the batch would replace)."""
    if not parts:
        return []
    fact = fact_table(fact_table_name)
    scope = list(parts[0].values)
    declared = sql.SQL(", ").join(sql.SQL("{} text").format(ident(c)) for c in ["_i", *scope])
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{0} = s.{0}::date" if c == MONTH_COLUMN else "t.{0} IS NOT DISTINCT FROM s.{0}").format(ident(c))
        for c in scope
    )
    statement = sql.SQL(
        "SELECT s._i::int, count(t.{pk}) FROM jsonb_to_recordset(%s::jsonb) AS s({declared}) "
        "LEFT JOIN {fact} t ON {match} GROUP BY s._i"
    ).format(declared=declared, fact=ident(fact.name), pk=ident(fact.model._meta.pk.column), match=match)
    payload = [{"_i": str(i), **p.values} for i, p in enumerate(parts)]
    with connection.cursor() as cur:
        cur.execute(statement, [json.dumps(payload)])
        counts = dict(cur.fetchall())
    return [ScopePart(values=p.values, rows=p.rows, replaced=counts.get(i, 0)) for i, p in enumerate(parts)]
