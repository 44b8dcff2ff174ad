"""Every lookup fallback visible and fixable.

A domain's ``derived_columns`` fill a fact column by matching another column against a reference table (机构名称 →
组织架构.机构 → 机构代码); a value that matches nothing gets the configured ``default`` (G00) or NULL. A load records
each such value with its row count (``UnmappedValue``); a steward maps a value to a key once (``ValueMapping``,
used by later loads' lookups), and ``map_value`` re-points the rows already loaded with the fallback: the fact rows,
and the auto-derived reference rows derived from them (e.g. 年金计划.主拓代码 where 主拓机构 is the value), the latter
recorded in the history. ``unmap_value`` (or an undo of the mapping's change) puts them back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from pipeline.config import domain_names, load_domain
from pipeline.config.domain_schema import DomainConfig, Lookup
from pipeline.fact_tables import BATCH_COLUMN, FactTable, fact_table
from pipeline.models import FactBatch, UnmappedValue, ValueMapping
from reference.history import Action, stewardship_context
from reference.models import Source
from reference.registry import get_table
from refgov.db.sql import column_name, ident

LISTED_VALUES = 10


class MappingRefused(Exception):
    """The mapping cannot be made (or removed); nothing was changed."""


def _mapping_column(name: str) -> sql.Identifier:
    return sql.Identifier(column_name(ValueMapping, name))


def mapped_lookup_sql(lookup: Lookup) -> sql.Composed:
    """``match, key`` pairs of a lookup: the reference table's, then the stewards' mappings of values it lacks. Config
    strings are literals: part of statements executed without parameters (``normalised_sql``)."""
    table = get_table(lookup.table)
    return sql.SQL(
        "SELECT DISTINCT ON (match) match, key FROM (SELECT {match} AS match, {key} AS key, 0 AS _p FROM {table} "
        "UNION ALL SELECT {value}, {mapped}, 1 FROM {mappings} WHERE {t} = {table_name} AND {m} = {match_name}) l "
        "ORDER BY match, _p, key"
    ).format(
        match=ident(lookup.match),
        key=ident(table.key_column),
        table=ident(table.name),
        value=_mapping_column("value"),
        mapped=_mapping_column("key"),
        mappings=sql.Identifier(ValueMapping._meta.db_table),
        t=_mapping_column("table"),
        table_name=sql.Literal(lookup.table),
        m=_mapping_column("match"),
        match_name=sql.Literal(lookup.match),
    )


def _unmatched(lookup: Lookup, source: sql.Composable) -> sql.Composed:
    """``source`` matches no row of the lookup table and no mapping."""
    table = get_table(lookup.table)
    return sql.SQL(
        "NOT EXISTS (SELECT FROM {table} r WHERE r.{match} = {source}) AND NOT EXISTS (SELECT FROM {mappings} m "
        "WHERE m.{t} = %(table)s AND m.{m} = %(match)s AND m.{value} = {source})"
    ).format(
        table=ident(table.name),
        match=ident(lookup.match),
        source=source,
        mappings=sql.Identifier(ValueMapping._meta.db_table),
        t=_mapping_column("table"),
        m=_mapping_column("match"),
        value=_mapping_column("value"),
    )


def record_unmapped(
    cur: CursorWrapper,
    *,
    domain: DomainConfig,
    fact: FactTable,
    batch: FactBatch,
    loaded: bool,
    relation: str | None = None,
) -> list[UnmappedValue]:
    """The values of this batch that ``derived_columns`` could not map, with their row counts (from the batch's rows
    in the fact table, or, ``loaded`` false, from ``_fact``)."""
    lookups = [(c, lookup) for c, lookup in domain.derived_columns.items() if lookup.from_column in fact.columns]
    if not lookups:
        return []
    # One pass over the batch for every lookup: the rows with a fallback value, grouped by their source value; only
    # those few values are then looked up.
    params: dict[str, Any] = {"batch": batch.pk}
    fell_back, pairs = [], []
    for i, (column, lookup) in enumerate(lookups):
        params[f"fallback_{i}"] = lookup.default
        condition = sql.SQL("f.{} IS NOT DISTINCT FROM {}").format(ident(column), sql.Placeholder(f"fallback_{i}"))
        fell_back.append(condition)
        pairs.append(
            sql.SQL("({i}, CASE WHEN {condition} THEN f.{source}::text END)").format(
                i=sql.Literal(i), condition=condition, source=ident(lookup.from_column)
            )
        )
    source = ident(relation or fact.name) if loaded else sql.Identifier("_fact")
    in_batch = sql.SQL("f.{} = %(batch)s AND ").format(ident(BATCH_COLUMN)) if loaded else sql.SQL("")
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _fallbacks ON COMMIT DROP AS SELECT v.i, v.value, count(*) AS n FROM {relation} f "
            "CROSS JOIN LATERAL (VALUES {pairs}) v(i, value) WHERE {in_batch}({fell_back}) AND v.value IS NOT NULL "
            "GROUP BY 1, 2"
        ).format(
            relation=source,
            pairs=sql.SQL(", ").join(pairs),
            in_batch=in_batch,
            fell_back=sql.SQL(" OR ").join(fell_back),
        ),
        params,
    )
    found: list[UnmappedValue] = []
    for i, (column, lookup) in enumerate(lookups):
        cur.execute(
            sql.SQL("SELECT x.value, x.n FROM _fallbacks x WHERE x.i = %(i)s AND {} ORDER BY 2 DESC, 1").format(
                _unmatched(lookup, sql.SQL("x.value"))
            ),
            {"i": i, "table": lookup.table, "match": lookup.match},
        )
        found += [
            UnmappedValue(
                batch=batch,
                domain=domain.domain,
                fact_table=fact.name,
                column=column,
                source_column=lookup.from_column,
                table=lookup.table,
                match=lookup.match,
                value=value[:255],
                rows=rows,
                fallback=lookup.default,
            )
            for value, rows in cur.fetchall()
        ]
    cur.execute("DROP TABLE _fallbacks")
    UnmappedValue.objects.bulk_create(found)
    return found


def unmapped_note(found: list[UnmappedValue]) -> str:
    """The batch message's part about the fallbacks used."""
    if not found:
        return ""
    listed = ", ".join(
        f"{u.source_column} {u.value} → {u.column} {u.fallback or 'NULL'} ({u.rows} rows)"
        for u in found[:LISTED_VALUES]
    )
    more = f", and {len(found) - LISTED_VALUES} more" if len(found) > LISTED_VALUES else ""
    return f"; unmapped values (see 未映射值): {listed}{more}"


@dataclass
class MappingResult:
    mapping: ValueMapping
    fact_rows: dict[str, int] = field(default_factory=dict)
    reference_rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Use:
    """Where a lookup fills a fact column, and the reference columns derived from that column and its source."""

    fact: FactTable
    column: str
    source_column: str
    fallback: str | None
    derived: list[tuple[str, str, str]]  # (reference table, column derived from ``column``, from ``source_column``)


def _uses(table: str, match: str) -> list[_Use]:
    uses = []
    for name in domain_names():
        domain = load_domain(name).config
        fact = fact_table(domain.fact_table)
        for column, lookup in domain.derived_columns.items():
            if (lookup.table, lookup.match) != (table, match) or lookup.from_column not in fact.columns:
                continue
            derived = []
            for fk in domain.foreign_keys:
                for target, rule in fk.derive.items():
                    if rule.column != column:
                        continue
                    pairs = [
                        other
                        for other, r in fk.derive.items()
                        if r.column == lookup.from_column and (r.rule, r.order_by) == (rule.rule, rule.order_by)
                    ]
                    derived += [(fk.target_table, target, other) for other in pairs]
            uses.append(_Use(fact, column, lookup.from_column, lookup.default, derived))
    return uses


@transaction.atomic
def map_value(*, table: str, match: str, value: str, key: str, user: AbstractBaseUser) -> MappingResult:
    """``value`` of ``table.match`` means ``key``: remember it for later loads and re-point the rows that got the
    fallback for it (fact rows; auto-derived reference rows derived from them, in one history context)."""
    reference = get_table(table)
    key = key.strip()
    if not reference.model._default_manager.filter(pk=key).exists():
        raise MappingRefused(f"{table} has no row with key {key!r}")
    if ValueMapping.objects.filter(table=table, match=match, value=value).exists():
        raise MappingRefused(f"{table}.{match} {value!r} is mapped already")
    uses = _uses(table, match)
    if not uses:
        raise MappingRefused(f"no domain looks up {table}.{match}")
    result = MappingResult(mapping=ValueMapping(table=table, match=match, value=value, key=key))
    with (
        stewardship_context(
            user=user, action=Action.MAP_VALUE, table=table, match=match, value=value, key=key
        ) as context_id,
        connection.cursor() as cur,
    ):
        for use in uses:
            rows = _repoint_facts(cur, use, value=value, old=use.fallback, new=key)
            result.fact_rows[use.fact.name] = result.fact_rows.get(use.fact.name, 0) + rows
            for ref_table, column, source in use.derived:
                rows = _repoint_references(cur, ref_table, column, source, value=value, old=use.fallback, new=key)
                result.reference_rows[ref_table] = result.reference_rows.get(ref_table, 0) + rows
    mapping = result.mapping
    mapping.repointed = {**result.fact_rows, **result.reference_rows}
    mapping.context_id = context_id
    mapping.created_by = user.get_username()
    mapping.save()
    return result


def _repoint_facts(cur: CursorWrapper, use: _Use, *, value: str, old: str | None, new: str | None) -> int:
    cur.execute(
        sql.SQL("UPDATE {fact} SET {column} = %s WHERE {source} = %s AND {column} IS NOT DISTINCT FROM %s").format(
            fact=ident(use.fact.name), column=ident(use.column), source=ident(use.source_column)
        ),
        [new, value, old],
    )
    rows: int = cur.rowcount
    return rows


def _repoint_references(
    cur: CursorWrapper, table: str, column: str, source: str, *, value: str, old: str | None, new: str | None
) -> int:
    cur.execute(
        sql.SQL(
            "UPDATE {table} SET {column} = %s WHERE {source} = %s AND {column} IS NOT DISTINCT FROM %s AND _source = %s"
        ).format(table=ident(get_table(table).name), column=ident(column), source=ident(source)),
        [new, value, old, Source.AUTO_DERIVED.value],
    )
    rows: int = cur.rowcount
    return rows


@transaction.atomic
def unmap_value(*, mapping_id: int, user: AbstractBaseUser) -> int:
    """Remove a mapping: the rows it re-pointed get the fallback back (reference rows in a history context). Returns
    the rows changed."""
    mapping = ValueMapping.objects.select_for_update().filter(pk=mapping_id).first()
    if mapping is None:
        raise MappingRefused(f"no mapping #{mapping_id}")
    changed = 0
    with (
        stewardship_context(
            user=user, action=Action.MAP_VALUE, table=mapping.table, value=mapping.value, key=None, unmapped=True
        ),
        connection.cursor() as cur,
    ):
        changed = _revert(cur, mapping, references=True)
    mapping.delete()
    return changed


def undo_value_mappings(*, context_id: uuid.UUID) -> int:
    """Inside an undo of ``context_id`` (its reference rows are back already): the mapping it made is removed and
    its fact rows get the fallback again. Returns the fact rows changed."""
    changed = 0
    with connection.cursor() as cur:
        for mapping in ValueMapping.objects.select_for_update().filter(context_id=context_id):
            changed += _revert(cur, mapping, references=False)
            mapping.delete()
    return changed


def _revert(cur: CursorWrapper, mapping: ValueMapping, *, references: bool) -> int:
    changed = 0
    for use in _uses(mapping.table, mapping.match):
        changed += _repoint_facts(cur, use, value=mapping.value, old=mapping.key, new=use.fallback)
        if references:
            for ref_table, column, source in use.derived:
                changed += _repoint_references(
                    cur, ref_table, column, source, value=mapping.value, old=mapping.key, new=use.fallback
                )
    return changed
