"""The review queue's business weight: fact rows, closing assets and months that depend on each reference row."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from psycopg import sql

from pipeline.fact_tables import CLOSING_ASSETS, MONTH_COLUMN, fact_table, fact_table_names
from reference.models import Usage
from reference.registry import get_table, table_names
from refgov.db.sql import column_name, ident

USAGE_FIELDS = ("row", "fact_rows", "closing_assets", "months", "refreshed_at")


def usage_model(table: str) -> type[Usage]:
    """The model of ``table``'s weights (``usage``, one row per reference row)."""
    for relation in get_table(table).model._meta.related_objects:
        model = relation.related_model
        if relation.name == "usage" and isinstance(model, type) and issubclass(model, Usage):
            return model
    raise TypeError(f"{table} has no usage model")


def _usage_names(table: str) -> dict[str, sql.Composable]:
    """The usage table of ``table`` (``usage``), its columns by field name, and all of them (``columns``)."""
    model = usage_model(table)
    names: dict[str, sql.Composable] = {f: sql.Identifier(column_name(model, f)) for f in USAGE_FIELDS}
    return {**names, "usage": sql.Identifier(model._meta.db_table), "columns": sql.SQL(", ").join(names.values())}


def _facts_using(table: str) -> list[tuple[str, str, str | None]]:
    """(fact table, its column referencing ``table``, its closing-assets column or None)."""
    found = []
    for name in fact_table_names():
        fact = fact_table(name)
        for column, target in fact.reference_columns.items():
            if target == table:
                found.append((name, column, CLOSING_ASSETS if CLOSING_ASSETS in fact.columns else None))
    return found


@transaction.atomic
def refresh_usage(*, table: str, keys: list[str] | None = None) -> int:
    """Recompute the weight of ``keys`` (default: every row pending review) from the facts, set-based."""
    ref = get_table(table)
    names = _usage_names(table)
    selected: sql.Composable
    if keys is None:
        selected = sql.SQL("SELECT {} FROM {} WHERE _needs_review").format(ident(ref.key_column), ident(ref.name))
        params: list[Any] = []
    else:
        selected, params = sql.SQL("SELECT unnest(%s::text[])"), [list(keys)]
    parts = [
        sql.SQL(
            "SELECT f.{column} AS k, f.{month} AS month, count(*) AS n, {assets} AS assets FROM {fact} f "
            "WHERE f.{column} IN (SELECT key FROM wanted) GROUP BY 1, 2"
        ).format(
            column=ident(column),
            month=ident(MONTH_COLUMN),
            assets=sql.SQL("sum(f.{})").format(ident(assets)) if assets else sql.SQL("0"),
            fact=ident(fact),
        )
        for fact, column, assets in _facts_using(table)
    ]
    with connection.cursor() as cur:
        delete = sql.SQL("DELETE FROM {usage} WHERE {row} IN ({selected})").format(**names, selected=selected)
        cur.execute(delete, params)
        if not parts:
            return 0
        insert = sql.SQL(
            """
            WITH wanted(key) AS ({selected})
            INSERT INTO {usage} ({columns})
            SELECT k, sum(n), coalesce(sum(assets), 0), count(DISTINCT month), now()
            FROM ({parts}) per_month GROUP BY k
            """
        ).format(**names, selected=selected, parts=sql.SQL(" UNION ALL ").join(parts))
        cur.execute(insert, params)
        inserted: int = cur.rowcount
        return inserted


def refresh_pending_usage() -> dict[str, int]:
    """Every table's pending rows: weights follow later months that use an existing pending key."""
    return {table: refresh_usage(table=table) for table in table_names()}


def record_batch_usage(*, table: str, column: str, keys: list[str], assets: bool) -> None:
    """Weights of the keys a fact load just created: only that batch's rows can use them, and they are all in its
    temporary table ``_fact`` (a few percent of the file), so no pass over the fact tables is needed."""
    if not keys:
        return
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL(
                """
                INSERT INTO {usage} ({columns})
                SELECT {column}, count(*), {total}, count(DISTINCT {month}), now()
                FROM _fact WHERE {column} = ANY(%s) GROUP BY 1
                ON CONFLICT ({row}) DO UPDATE SET {fact_rows} = excluded.{fact_rows},
                    {closing_assets} = excluded.{closing_assets}, {months} = excluded.{months},
                    {refreshed_at} = excluded.{refreshed_at}
                """
            ).format(
                **_usage_names(table),
                column=ident(column),
                total=sql.SQL("coalesce(sum({}), 0)").format(ident(CLOSING_ASSETS)) if assets else sql.SQL("0"),
                month=ident(MONTH_COLUMN),
            ),
            [list(keys)],
        )
