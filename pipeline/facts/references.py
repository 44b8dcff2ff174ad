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
from typing import Any

from django.db import models
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from psycopg import sql

from pipeline.config.domain_schema import Derivation, ForeignKey
from pipeline.derivations import FUNCTIONS
from pipeline.fact_tables import BATCH_COLUMN
from reference.models import KeyAlias, Source
from reference.registry import get_table
from refgov.db.sql import column_name, column_type, ident, idents

ROW_SAMPLE = 20


@dataclass
class UnknownKey:
    key: str
    rows: list[int]
    fact_rows: int


@dataclass(frozen=True)
class DeriveCandidate:
    """The reference row derived for one key: its key and its derived columns (column → value)."""

    key: str
    values: dict[str, Any]


@dataclass
class DerivedTable:
    table: str
    unknown: list[UnknownKey] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)
    candidates: list[DeriveCandidate] = field(default_factory=list)
    pending: list[UnknownKey] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    aliased_rows: int = 0


def _alias_column(field: str) -> sql.Identifier:
    return sql.Identifier(column_name(KeyAlias, field))


def tables_with_aliases(cur: CursorWrapper) -> set[str]:
    """Reference tables that have keys a steward merged away (``KeyAlias``)."""
    cur.execute(
        sql.SQL("SELECT DISTINCT {} FROM {}").format(_alias_column("table"), sql.Identifier(KeyAlias._meta.db_table))
    )
    return {t for (t,) in cur.fetchall()}


def resolve_aliases(cur: CursorWrapper, *, relation: str, column: str, table: str, batch_id: int | None = None) -> int:
    """In ``relation`` (the staged ``_fact``, or a fact table's rows of ``batch_id``), replace keys of ``table`` a
    steward merged away by the right key; returns the rows changed."""
    cur.execute(*alias_update(ident(relation), column=column, table=table, batch_id=batch_id))
    return cur.rowcount


def alias_update(
    relation: sql.Composable, *, column: str, table: str, batch_id: int | None = None
) -> tuple[sql.Composed, list[Any]]:
    """The UPDATE of ``resolve_aliases`` and its parameters, for any connection (``relation`` may be qualified)."""
    batch = sql.SQL("AND t.{} = %s").format(ident(BATCH_COLUMN)) if batch_id is not None else sql.SQL("")
    statement = sql.SQL(
        "UPDATE {relation} t SET {column} = a.{canonical} FROM {aliases} a "
        "WHERE a.{table} = %s {batch} AND t.{column} = a.{alias}"
    ).format(
        relation=relation,
        column=ident(column),
        canonical=_alias_column("canonical"),
        aliases=sql.Identifier(KeyAlias._meta.db_table),
        table=_alias_column("table"),
        batch=batch,
        alias=_alias_column("alias"),
    )
    return statement, [table] + ([batch_id] if batch_id is not None else [])


def unknown_keys(cur: CursorWrapper, fk: ForeignKey) -> list[UnknownKey]:
    """Keys of the batch that the reference table does not have, with the rows that use them."""
    table = get_table(fk.target_table)
    cur.execute(
        sql.SQL(
            "SELECT DISTINCT f.{column} FROM _fact f WHERE f.{column} IS NOT NULL EXCEPT SELECT t.{key} FROM {table} t"
        ).format(column=ident(fk.source_column), key=ident(table.key_column), table=ident(table.name))
    )
    return _rows_of(cur, fk, [k for (k,) in cur.fetchall()])


def pending_keys(cur: CursorWrapper, fk: ForeignKey) -> list[UnknownKey]:
    """Keys of the batch whose reference row is auto-derived and still pending review."""
    table = get_table(fk.target_table)
    cur.execute(
        sql.SQL(
            "SELECT DISTINCT f.{column} FROM _fact f WHERE f.{column} IS NOT NULL "
            "INTERSECT SELECT t.{key} FROM {table} t WHERE t._needs_review AND t._source = %s"
        ).format(column=ident(fk.source_column), key=ident(table.key_column), table=ident(table.name)),
        [Source.AUTO_DERIVED.value],
    )
    return _rows_of(cur, fk, [k for (k,) in cur.fetchall()])


def _rows_of(cur: CursorWrapper, fk: ForeignKey, keys: list[str]) -> list[UnknownKey]:
    if not keys:
        return []
    # The few unknown keys as a hashed array: one pass over the batch, whatever the planner thinks of the join.
    cur.execute(
        sql.SQL(
            """
            SELECT f.{column}, (array_agg(f._row ORDER BY f._row))[1:%s], count(*)
            FROM _fact f WHERE f.{column} = ANY(%s)
            GROUP BY f.{column} ORDER BY f.{column}
            """
        ).format(column=ident(fk.source_column)),
        [ROW_SAMPLE, keys],
    )
    return [UnknownKey(key=k, rows=list(rows), fact_rows=n) for k, rows, n in cur.fetchall()]


def _column_of(rule: Derivation) -> str:
    if rule.column is None:  # the schema requires a column for every rule computed in SQL
        raise ValueError(f"rule {rule.rule!r} needs 'column'")
    return rule.column


def _aggregate(rule: Derivation, index: int, params: dict[str, Any]) -> sql.Composable | None:
    """SQL aggregate over the fact rows of one key, or None for rules computed in Python. Config strings are added to
    ``params`` (named ``%(...)s`` placeholders), never written into the SQL."""
    if rule.rule in {"template", "constant"}:
        return None
    name = _column_of(rule)
    column: sql.Composable = sql.SQL("f.{}").format(ident(name))
    if name == "company_id":
        column = sql.SQL("CASE WHEN {c} ~ %(temporary_company_id)s THEN NULL ELSE {c} END").format(c=column)
    present = sql.SQL("FILTER (WHERE {} IS NOT NULL)").format(column)
    if rule.rule in {"first", "function"}:
        return sql.SQL("array_agg({}::text ORDER BY f._row) {}").format(column, present)
    if rule.rule == "max_by":
        return sql.SQL("(array_agg({}::text ORDER BY f.{} DESC NULLS LAST, f._row) {})[1]").format(
            column, ident(rule.order_by or ""), present
        )
    if rule.rule == "count_distinct":
        return sql.SQL("count(DISTINCT {})").format(column)
    separator, order = f"separator_{index}", f"order_{index}"
    params[separator], params[order] = rule.separator, list(rule.order)
    return sql.SQL(
        "(SELECT string_agg(v, {separator}::text ORDER BY array_position({order}::text[], v) "
        "NULLS LAST, v) FROM unnest(array_agg(DISTINCT {column}::text) {present}) v)"
    ).format(separator=sql.Placeholder(separator), order=sql.Placeholder(order), column=column, present=present)


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
    cur: CursorWrapper,
    fk: ForeignKey,
    keys: list[str],
    *,
    temporary_company_id: str,
    template_values: dict[str, str],
) -> list[DeriveCandidate]:
    """One candidate row per unknown key, by the configured rules."""
    params: dict[str, Any] = {"keys": keys, "temporary_company_id": temporary_company_id}
    aggregates = {target: _aggregate(rule, i, params) for i, (target, rule) in enumerate(fk.derive.items())}
    in_sql = {t: aggregate for t, aggregate in aggregates.items() if aggregate is not None}
    source = ident(fk.source_column)
    cur.execute(
        sql.SQL("SELECT {} FROM _fact f WHERE f.{} = ANY(%(keys)s) GROUP BY f.{}").format(
            sql.SQL(", ").join([sql.SQL("f.{}").format(source), *in_sql.values()]), source, source
        ),
        params,
    )
    candidates = []
    for key, *found in cur.fetchall():
        values: dict[str, Any] = {}
        for target, value in zip(in_sql, found, strict=True):
            rule = fk.derive[target]
            if rule.rule == "first":
                value = value[0] if value else None
            elif rule.rule == "function":
                value = FUNCTIONS[rule.function or ""](value or [])
            values[target] = value
        for target, rule in fk.derive.items():
            if rule.rule == "template":
                values[target] = (rule.template or "").format(**template_values)
            elif rule.rule == "constant":
                values[target] = rule.value
        candidates.append(DeriveCandidate(key=key, values=values))
    return candidates


def _stage_candidates(cur: CursorWrapper, fk: ForeignKey, candidates: list[DeriveCandidate]) -> list[str]:
    """COPY the candidates into the temporary table ``_candidates``; returns its columns (key first)."""
    table = get_table(fk.target_table)
    fields = table.data_fields
    derived = [c for c in fk.derive if c in fields]
    columns = [table.key_column, *derived]
    typed = sql.SQL(", ").join(sql.SQL("{} {}").format(ident(c), column_type(fields[c])) for c in columns)
    # as text: ``fill_pending`` runs inside a history context
    cur.execute(sql.SQL("CREATE TEMP TABLE _candidates ({}) ON COMMIT DROP").format(typed))
    key_field = fields[table.key_column]
    with (
        cur.connection.cursor() as raw,
        raw.copy(sql.SQL("COPY _candidates ({}) FROM STDIN").format(idents(columns))) as copy,
    ):
        for candidate in candidates:
            copy.write_row(
                [_fit(key_field, candidate.key), *(_fit(fields[c], candidate.values.get(c)) for c in derived)]
            )
    return columns


def insert_derived(
    cur: CursorWrapper, fk: ForeignKey, candidates: list[DeriveCandidate], *, domain: str, mark_for_review: bool
) -> list[str]:
    """Insert the candidate rows as auto-derived, set-based; returns the keys this call inserted (a key a
    concurrent batch inserted first is skipped, not an error)."""
    if not candidates:
        return []
    table = get_table(fk.target_table)
    columns = _stage_candidates(cur, fk, candidates)
    cur.execute(
        sql.SQL(
            """
            INSERT INTO {table} ({names}, _source, _needs_review, _derived_from_domain, _derived_at)
            SELECT {names}, %s, %s, %s, %s FROM _candidates ORDER BY {key}
            ON CONFLICT ({key}) DO NOTHING RETURNING {key}
            """
        ).format(table=ident(table.name), names=idents(columns), key=ident(table.key_column)),
        [Source.AUTO_DERIVED.value, mark_for_review, domain, timezone.now()],
    )
    inserted = [r[0] for r in cur.fetchall()]
    cur.execute("DROP TABLE _candidates")
    return inserted


def fill_pending(cur: CursorWrapper, fk: ForeignKey, candidates: list[DeriveCandidate]) -> list[str]:
    """``backfill.mode: always``: fill the empty columns of auto-derived rows pending review from the
    candidates; a value already there (derived earlier or entered by a steward) is never replaced. Returns the keys
    of the rows that changed."""
    if not candidates:
        return []
    table = get_table(fk.target_table)
    columns = _stage_candidates(cur, fk, candidates)[1:]
    if not columns:
        cur.execute("DROP TABLE _candidates")
        return []
    statement = sql.SQL(
        """
        UPDATE {table} t SET {sets}
        FROM _candidates c
        WHERE t.{key} = c.{key} AND t._source = %s AND t._needs_review
          AND ({changes})
        RETURNING t.{key}
        """
    ).format(
        table=ident(table.name),
        sets=sql.SQL(", ").join(sql.SQL("{0} = COALESCE(t.{0}, c.{0})").format(ident(c)) for c in columns),
        key=ident(table.key_column),
        changes=sql.SQL(" OR ").join(
            sql.SQL("(t.{0} IS NULL AND c.{0} IS NOT NULL)").format(ident(c)) for c in columns
        ),
    )
    cur.execute(statement, [Source.AUTO_DERIVED.value])
    filled = sorted(r[0] for r in cur.fetchall())
    cur.execute("DROP TABLE _candidates")
    return filled


def _fit(field: models.Field, value: Any) -> Any:
    """Cut text to the column's length; numbers stay numbers."""
    if value is None:
        return None
    length = getattr(field, "max_length", None)
    if length and isinstance(value, str):
        return value[:length]
    return value
