"""The review queue's business weight: fact rows, closing assets and months that depend on each reference row."""

from __future__ import annotations

from django.db import connection, transaction

from reference.registry import get_table
from refgov.db.identifiers import quote_pg as q

CLOSING_ASSETS = "期末资产规模"


def usage_model(table: str):
    return get_table(table).model.usage.related.related_model


def _facts_using(table: str) -> list[tuple[str, str, str | None]]:
    """(fact table, its column referencing ``table``, its closing-assets column or None)."""
    from pipeline.fact_tables import fact_table, fact_table_names

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
    usage = q(usage_model(table)._meta.db_table)
    if keys is None:
        selected = f"SELECT {q(ref.key_column)} FROM {q(ref.name)} WHERE _needs_review"
        params: list = []
    else:
        selected, params = "SELECT unnest(%s::text[])", [list(keys)]
    parts = [
        f'SELECT f.{q(column)} AS k, f."月度" AS month, count(*) AS n, '
        f"{f'sum(f.{q(assets)})' if assets else '0'} AS assets FROM {q(fact)} f "
        f"WHERE f.{q(column)} IN (SELECT key FROM wanted) GROUP BY 1, 2"
        for fact, column, assets in _facts_using(table)
    ]
    with connection.cursor() as cur:
        cur.execute(f"DELETE FROM {usage} WHERE row_id IN ({selected})", params)
        if not parts:
            return 0
        cur.execute(
            f"""
            WITH wanted(key) AS ({selected})
            INSERT INTO {usage} (row_id, fact_rows, closing_assets, months, refreshed_at)
            SELECT k, sum(n), coalesce(sum(assets), 0), count(DISTINCT month), now()
            FROM ({" UNION ALL ".join(parts)}) per_month GROUP BY k
            """,
            params,
        )
        return cur.rowcount


def refresh_pending_usage() -> dict[str, int]:
    """Every table's pending rows: weights follow later months that use an existing pending key."""
    from reference.registry import table_names

    return {table: refresh_usage(table=table) for table in table_names()}


def record_batch_usage(*, table: str, column: str, keys: list[str], assets: bool) -> None:
    """Weights of the keys a fact load just created: only that batch's rows can use them, and they are all in its
    temporary table ``_fact`` (a few percent of the file), so no pass over the fact tables is needed."""
    if not keys:
        return
    usage = q(usage_model(table)._meta.db_table)
    total = f"coalesce(sum({q(CLOSING_ASSETS)}), 0)" if assets else "0"
    with connection.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO {usage} (row_id, fact_rows, closing_assets, months, refreshed_at)
            SELECT {q(column)}, count(*), {total}, count(DISTINCT "月度"), now()
            FROM _fact WHERE {q(column)} = ANY(%s) GROUP BY 1
            ON CONFLICT (row_id) DO UPDATE SET fact_rows = excluded.fact_rows, closing_assets = excluded.closing_assets,
                months = excluded.months, refreshed_at = excluded.refreshed_at
            """,
            [list(keys)],
        )
