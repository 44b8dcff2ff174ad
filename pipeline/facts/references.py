"""Seed phases 2+3 for one staged batch: find unknown keys set-based, derive minimal reference rows, insert them.

Works on the temporary table ``_fact``: the batch's normalised rows, or (when facts are loaded) only the rows whose
key the reference tables lacked — all the rows of every unknown key — and, with ``backfill.mode: always``, the rows of
keys that are auto-derived and pending review, whose still-empty columns ``fill_pending`` fills. Existing reference
rows are never modified otherwise; a key two concurrent batches both discover is inserted once
(``ON CONFLICT DO NOTHING``) and both batches succeed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db import connection
from django.utils import timezone

from pipeline.config.domain_schema import Derivation, ForeignKey
from pipeline.derivations import FUNCTIONS
from reference.models import KeyAlias, Source
from reference.registry import get_table
from refgov.db.identifiers import quote_pg as q

ROW_SAMPLE = 20


@dataclass
class UnknownKey:
    key: str
    rows: list[int]
    fact_rows: int


@dataclass
class DerivedTable:
    table: str
    unknown: list[UnknownKey] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    pending: list[UnknownKey] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    aliased_rows: int = 0


def tables_with_aliases(cur) -> set[str]:
    """Reference tables that have keys a steward merged away (``KeyAlias``)."""
    cur.execute(f'SELECT DISTINCT "table" FROM {q(KeyAlias._meta.db_table)}')
    return {t for (t,) in cur.fetchall()}


def resolve_aliases(cur, *, relation: str, column: str, table: str, batch_id: int | None = None) -> int:
    """In ``relation`` (the staged ``_fact``, or a fact table's rows of ``batch_id``), replace keys of ``table`` a
    steward merged away by the right key; returns the rows changed."""
    batch = "AND t._batch_id = %s" if batch_id is not None else ""
    cur.execute(
        f"UPDATE {q(relation)} t SET {q(column)} = a.canonical FROM {q(KeyAlias._meta.db_table)} a "
        f'WHERE a."table" = %s {batch} AND t.{q(column)} = a.alias',
        [table] + ([batch_id] if batch_id is not None else []),
    )
    return cur.rowcount


def unknown_keys(cur, fk: ForeignKey) -> list[UnknownKey]:
    """Keys of the batch that the reference table does not have, with the rows that use them."""
    table = get_table(fk.target_table)
    column = q(fk.source_column)
    cur.execute(
        f"SELECT DISTINCT f.{column} FROM _fact f WHERE f.{column} IS NOT NULL "
        f"EXCEPT SELECT t.{q(table.key_column)} FROM {q(table.name)} t"
    )
    return _rows_of(cur, fk, [k for (k,) in cur.fetchall()])


def pending_keys(cur, fk: ForeignKey) -> list[UnknownKey]:
    """Keys of the batch whose reference row is auto-derived and still pending review."""
    table = get_table(fk.target_table)
    column = q(fk.source_column)
    cur.execute(
        f"SELECT DISTINCT f.{column} FROM _fact f WHERE f.{column} IS NOT NULL "
        f"INTERSECT SELECT t.{q(table.key_column)} FROM {q(table.name)} t WHERE t._needs_review AND t._source = %s",
        [Source.AUTO_DERIVED.value],
    )
    return _rows_of(cur, fk, [k for (k,) in cur.fetchall()])


def _rows_of(cur, fk: ForeignKey, keys: list[str]) -> list[UnknownKey]:
    if not keys:
        return []
    column = q(fk.source_column)
    # The few unknown keys as a hashed array: one pass over the batch, whatever the planner thinks of the join.
    cur.execute(
        f"""
        SELECT f.{column}, (array_agg(f._row ORDER BY f._row))[1:{ROW_SAMPLE}], count(*)
        FROM _fact f WHERE f.{column} = ANY(%s)
        GROUP BY f.{column} ORDER BY f.{column}
        """,
        [keys],
    )
    return [UnknownKey(key=k, rows=list(rows), fact_rows=n) for k, rows, n in cur.fetchall()]


def _aggregate(rule: Derivation, index: int, params: dict[str, object]) -> str | None:
    """SQL aggregate over the fact rows of one key, or None for rules computed in Python. Config strings are added to
    ``params`` (named ``%(...)s`` placeholders), never written into the SQL."""
    if rule.rule in {"template", "constant"}:
        return None
    column = f"f.{q(rule.column)}"
    if rule.column == "company_id":
        column = f"CASE WHEN {column} ~ %(temporary_company_id)s THEN NULL ELSE {column} END"
    present = f"FILTER (WHERE {column} IS NOT NULL)"
    if rule.rule in {"first", "function"}:
        return f"array_agg({column}::text ORDER BY f._row) {present}"
    if rule.rule == "max_by":
        return f"(array_agg({column}::text ORDER BY f.{q(rule.order_by)} DESC NULLS LAST, f._row) {present})[1]"
    if rule.rule == "count_distinct":
        return f"count(DISTINCT {column})"
    params[f"separator_{index}"], params[f"order_{index}"] = rule.separator, list(rule.order)
    return (
        f"(SELECT string_agg(v, %(separator_{index})s::text ORDER BY array_position(%(order_{index})s::text[], v) "
        f"NULLS LAST, v) FROM unnest(array_agg(DISTINCT {column}::text) {present}) v)"
    )


def template_values(months: list[date], domain: str, file_name: str) -> dict[str, str]:
    month = max(months)
    return {
        "yymm": month.strftime("%y%m"),
        "yyyymm": month.strftime("%Y%m"),
        "yyyy": month.strftime("%Y"),
        "mm": month.strftime("%m"),
        "domain": domain,
        "file": file_name,
    }


def derive_candidates(
    cur, fk: ForeignKey, keys: list[str], *, temporary_company_id: str, template_values: dict[str, str]
) -> list[dict]:
    """One candidate row (target column → value) per unknown key, by the configured rules."""
    params: dict[str, object] = {"keys": keys, "temporary_company_id": temporary_company_id}
    aggregates = {target: _aggregate(rule, i, params) for i, (target, rule) in enumerate(fk.derive.items())}
    in_sql = [t for t, sql in aggregates.items() if sql is not None]
    select = ", ".join([f"f.{q(fk.source_column)}"] + [aggregates[t] for t in in_sql])
    cur.execute(
        f"SELECT {select} FROM _fact f WHERE f.{q(fk.source_column)} = ANY(%(keys)s) GROUP BY f.{q(fk.source_column)}",
        params,
    )
    table = get_table(fk.target_table)
    candidates = []
    for key, *values in cur.fetchall():
        row = {table.key_column: key}
        for target, value in zip(in_sql, values, strict=True):
            rule = fk.derive[target]
            if rule.rule == "first":
                value = value[0] if value else None
            elif rule.rule == "function":
                value = FUNCTIONS[rule.function](value or [])
            row[target] = value
        for target, rule in fk.derive.items():
            if rule.rule == "template":
                row[target] = rule.template.format(**template_values)
            elif rule.rule == "constant":
                row[target] = rule.value
        candidates.append(row)
    return candidates


def _stage_candidates(cur, fk: ForeignKey, candidates: list[dict]) -> list[str]:
    """COPY the candidates into the temporary table ``_candidates``; returns its columns (key first)."""
    table = get_table(fk.target_table)
    fields = table.data_fields
    columns = [table.key_column, *[c for c in fk.derive if c in fields]]
    typed = ", ".join(f"{q(c)} {fields[c].db_type(connection)}" for c in columns)
    cur.execute(f"CREATE TEMP TABLE _candidates ({typed}) ON COMMIT DROP")
    with (
        cur.connection.cursor() as raw,
        raw.copy(f"COPY _candidates ({', '.join(q(c) for c in columns)}) FROM STDIN") as copy,
    ):
        for row in candidates:
            copy.write_row([_fit(fields[c], row.get(c)) for c in columns])
    return columns


def insert_derived(cur, fk: ForeignKey, candidates: list[dict], *, domain: str, mark_for_review: bool) -> list[str]:
    """Insert the candidate rows as auto-derived, set-based; returns the keys this call inserted (a key a
    concurrent batch inserted first is skipped, not an error)."""
    if not candidates:
        return []
    table = get_table(fk.target_table)
    columns = _stage_candidates(cur, fk, candidates)
    names = ", ".join(q(c) for c in columns)
    cur.execute(
        f"""
        INSERT INTO {q(table.name)} ({names}, _source, _needs_review, _derived_from_domain, _derived_at)
        SELECT {names}, %s, %s, %s, %s FROM _candidates ORDER BY {q(table.key_column)}
        ON CONFLICT ({q(table.key_column)}) DO NOTHING RETURNING {q(table.key_column)}
        """,
        [Source.AUTO_DERIVED.value, mark_for_review, domain, timezone.now()],
    )
    inserted = [r[0] for r in cur.fetchall()]
    cur.execute("DROP TABLE _candidates")
    return inserted


def fill_pending(cur, fk: ForeignKey, candidates: list[dict]) -> list[str]:
    """``backfill.mode: always``: fill the empty columns of auto-derived rows still pending review from the
    candidates; a value already there (derived earlier or entered by a steward) is never replaced. Returns the keys
    of the rows that changed."""
    if not candidates:
        return []
    table = get_table(fk.target_table)
    columns = _stage_candidates(cur, fk, candidates)[1:]
    if not columns:
        cur.execute("DROP TABLE _candidates")
        return []
    key = q(table.key_column)
    cur.execute(
        f"""
        UPDATE {q(table.name)} t SET {", ".join(f"{q(c)} = COALESCE(t.{q(c)}, c.{q(c)})" for c in columns)}
        FROM _candidates c
        WHERE t.{key} = c.{key} AND t._source = %s AND t._needs_review
          AND ({" OR ".join(f"(t.{q(c)} IS NULL AND c.{q(c)} IS NOT NULL)" for c in columns)})
        RETURNING t.{key}
        """,
        [Source.AUTO_DERIVED.value],
    )
    filled = sorted(r[0] for r in cur.fetchall())
    cur.execute("DROP TABLE _candidates")
    return filled


def _fit(field, value):
    """Cut text to the column's length; numbers stay numbers."""
    if value is None:
        return None
    length = getattr(field, "max_length", None)
    if length and isinstance(value, str):
        return value[:length]
    return value
