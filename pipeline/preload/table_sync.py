"""Set-based sync of one reference table from one source (seed phase 1, per table).

Rows are streamed into a temporary text staging table with COPY, parsed and checked in SQL, and merged with one
``INSERT ... ON CONFLICT DO UPDATE`` that only sees new or changed rows, so an unchanged row is never rewritten.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from django.db import connection, models

from refgov.identifiers import quote_pg as q
from reference.models import Source
from reference.registry import ReferenceTable, get_table

SAMPLE_LIMIT = 20


class RowSource(Protocol):
    @property
    def name(self) -> str: ...

    def columns(self) -> list[str]: ...

    def rows(self, columns: list[str], **kwargs) -> object: ...


@dataclass
class TableSyncOutcome:
    table: str
    source: str
    mode: str
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    upgraded: int = 0
    unchanged: int = 0
    errors: int = 0
    error_samples: list[dict] = field(default_factory=list)
    missing_at_source: int = 0
    missing_samples: list[str] = field(default_factory=list)
    columns_not_in_source: list[str] = field(default_factory=list)
    watermark_from: str = ""
    watermark_to: str = ""
    duration_ms: int = 0


@dataclass(frozen=True)
class ColumnPlan:
    """How one target column is filled from the staging table."""

    target: str
    field: models.Field
    parent: ReferenceTable | None = None

    @property
    def staged(self) -> str:
        return f"s.{q(self.target)}"

    def value_sql(self) -> str:
        raw = self.staged
        if self.parent is not None or self.field.primary_key:
            return f"refgov_norm_key({raw})"
        if isinstance(self.field, models.BooleanField):
            return f"refgov_parse_bool({raw})"
        if isinstance(self.field, models.IntegerField):
            return f"refgov_parse_int({raw})"
        if isinstance(self.field, models.DateField):
            return f"refgov_parse_date({raw})"
        return f"refgov_clean_text({raw})"

    def error_sql(self) -> str | None:
        raw, value, name = self.staged, self.value_sql(), self.target.replace("'", "")
        if isinstance(self.field, (models.BooleanField, models.IntegerField)):
            kind = "a yes/no value" if isinstance(self.field, models.BooleanField) else "an integer"
            return f"CASE WHEN refgov_clean_text({raw}) IS NOT NULL AND {value} IS NULL THEN format('%s: not {kind}: %s', '{name}', {raw}) END"
        if isinstance(self.field, models.DateField):
            zero = f"btrim({raw}) LIKE '0000-00-00%'"
            return f"CASE WHEN refgov_clean_text({raw}) IS NOT NULL AND NOT {zero} AND {value} IS NULL THEN format('%s: not a date: %s', '{name}', {raw}) END"
        length = getattr(self.field, "max_length", None)
        if length:
            return f"CASE WHEN char_length({value}) > {int(length)} THEN format('%s: longer than {int(length)} characters', '{name}') END"
        return None


class TableSync:
    """Sync one table inside the caller's transaction."""

    def __init__(self, *, table: str, reader: RowSource, renames: dict[str, str] | None = None):
        self.table = get_table(table)
        self.reader = reader
        self.renames = renames or {}

    def plan_columns(self) -> tuple[list[ColumnPlan], list[str], list[str]]:
        """Target columns this source provides, their source names, and target columns the source lacks."""
        available = set(self.reader.columns())
        parents = {col: get_table(t) for col, t in self.table.parents.items()}
        plans, source_names, missing = [], [], []
        for column, fld in self.table.data_fields.items():
            source_name = self.renames.get(column, column)
            if source_name not in available:
                if column in self.renames:
                    raise SyncError(f"{self.reader.name}: column {source_name!r} (configured for {column}) not found")
                if fld.primary_key:
                    raise SyncError(f"{self.reader.name}: key column {source_name!r} not found")
                missing.append(column)
                continue
            plans.append(ColumnPlan(target=column, field=fld, parent=parents.get(column)))
            source_names.append(source_name)
        return plans, source_names, missing

    def run(
        self,
        *,
        run_id: int,
        mode: str,
        read_kwargs: dict | None = None,
        report_missing: bool,
    ) -> TableSyncOutcome:
        started = time.monotonic()
        plans, source_names, missing = self.plan_columns()
        outcome = TableSyncOutcome(
            table=self.table.name, source=self.reader.name, mode=mode, columns_not_in_source=missing
        )
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"refgov.sync.{self.table.name}"])
            outcome.rows_read = self._stage(cur, plans, source_names, read_kwargs or {})
            self._prepare(cur, plans)
            outcome.errors, outcome.error_samples = self._rejected(cur)
            outcome.upgraded = self._record_upgrades(cur, plans, run_id)
            inserted, touched = self._merge(cur, plans)
            outcome.inserted = inserted
            outcome.updated = touched - outcome.upgraded
            outcome.unchanged = outcome.rows_read - outcome.errors - inserted - touched
            if report_missing:
                outcome.missing_at_source, outcome.missing_samples = self._missing(cur)
            cur.execute("DROP TABLE _stage, _prep")
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        return outcome

    def _stage(self, cur, plans: list[ColumnPlan], source_names: list[str], read_kwargs: dict) -> int:
        cols = ", ".join(f"{q(p.target)} text" for p in plans)
        cur.execute(f"CREATE TEMP TABLE _stage (_row bigint GENERATED ALWAYS AS IDENTITY, {cols}) ON COMMIT DROP")
        count = 0
        copy_sql = f"COPY _stage ({', '.join(q(p.target) for p in plans)}) FROM STDIN"
        with cur.connection.cursor() as raw_cur, raw_cur.copy(copy_sql) as copy:
            for chunk in self.reader.rows(source_names, **read_kwargs):
                for row in chunk:
                    copy.write_row(row)
                count += len(chunk)
        return count

    def _prepare(self, cur, plans: list[ColumnPlan]) -> None:
        key = self.table.key_column
        values = ", ".join(f"{p.value_sql()} AS {q(p.target)}" for p in plans)
        errors = [f"CASE WHEN {ColumnPlan(target=key, field=self.table.model._meta.pk).value_sql()} IS NULL THEN 'empty key' END"]
        joins = []
        for i, p in enumerate(plans):
            if (err := p.error_sql()) is not None:
                errors.append(err)
            if p.parent is not None:
                alias = f"_parent{i}"
                joins.append(
                    f"LEFT JOIN {q(p.parent.name)} {alias} ON {alias}.{q(p.parent.key_column)} = {p.value_sql()}"
                )
                errors.append(
                    f"CASE WHEN {p.value_sql()} IS NOT NULL AND {alias}.{q(p.parent.key_column)} IS NULL "
                    f"THEN format('%s: %s not found in {p.parent.name}', '{p.target}', {p.value_sql()}) END"
                )
        cur.execute(
            f"""
            CREATE TEMP TABLE _prep ON COMMIT DROP AS
            SELECT v.*, row_number() OVER (PARTITION BY v.{q(key)} ORDER BY v._row DESC) AS _rank
            FROM (
                SELECT s._row, {values}, concat_ws('; ', {', '.join(errors)}) AS _err
                FROM _stage s {' '.join(joins)}
            ) v
            """
        )
        cur.execute(
            f"UPDATE _prep SET _err = 'duplicate key: a later source row with the same key wins' "
            f"WHERE _rank > 1 AND _err = ''"
        )
        cur.execute("ANALYZE _prep")

    def _rejected(self, cur) -> tuple[int, list[dict]]:
        key = q(self.table.key_column)
        cur.execute("SELECT count(*) FROM _prep WHERE _err <> ''")
        count = cur.fetchone()[0]
        cur.execute(
            f"SELECT _row, coalesce({key}, ''), _err FROM _prep WHERE _err <> '' ORDER BY _row LIMIT %s",
            [SAMPLE_LIMIT],
        )
        return count, [{"row": r, "key": k, "error": e} for r, k, e in cur.fetchall()]

    def _record_upgrades(self, cur, plans: list[ColumnPlan], run_id: int) -> int:
        key = q(self.table.key_column)
        data = [p for p in plans if not p.field.primary_key]
        changed = ", ".join(
            f"'{p.target}', CASE WHEN p.{q(p.target)} IS NOT NULL AND t.{q(p.target)} IS DISTINCT FROM p.{q(p.target)} "
            f"THEN jsonb_build_array(t.{q(p.target)}, p.{q(p.target)}) END"
            for p in data
        )
        kept = ", ".join(
            f"'{p.target}', CASE WHEN p.{q(p.target)} IS NULL THEN to_jsonb(t.{q(p.target)}) END" for p in data
        )
        cur.execute(
            f"""
            INSERT INTO pipeline_syncupgrade (run_id, "table", key, derived_from_domain, changed, kept)
            SELECT %s, %s, t.{key}, t._derived_from_domain,
                   jsonb_strip_nulls(jsonb_build_object({changed or "'', NULL"})),
                   jsonb_strip_nulls(jsonb_build_object({kept or "'', NULL"}))
            FROM _prep p JOIN {q(self.table.name)} t ON t.{key} = p.{key}
            WHERE p._err = '' AND t._source = %s
            """,
            [run_id, self.table.name, Source.AUTO_DERIVED.value],
        )
        return cur.rowcount

    def _merge(self, cur, plans: list[ColumnPlan]) -> tuple[int, int]:
        key = q(self.table.key_column)
        target = q(self.table.name)
        cols = [q(p.target) for p in plans]
        data = [c for c in cols if c != key]
        auto = Source.AUTO_DERIVED.value
        distinct = (
            f"OR ({', '.join('t.' + c for c in data)}) IS DISTINCT FROM ({', '.join('p.' + c for c in data)})"
            if data
            else ""
        )
        sets = [
            f"{c} = COALESCE(EXCLUDED.{c}, CASE WHEN {target}._source = '{auto}' THEN {target}.{c} END)" for c in data
        ]
        sets.append(f"_needs_review = CASE WHEN {target}._source = '{auto}' THEN false ELSE {target}._needs_review END")
        sets.append("_source = 'authoritative'")
        cur.execute(
            f"""
            WITH changed AS (
                SELECT p.* FROM _prep p LEFT JOIN {target} t ON t.{key} = p.{key}
                WHERE p._err = '' AND (t.{key} IS NULL OR t._source <> 'authoritative' {distinct})
            ), merged AS (
                INSERT INTO {target} ({', '.join(cols)}, _source, _needs_review)
                SELECT {', '.join(cols)}, 'authoritative', false FROM changed
                ON CONFLICT ({key}) DO UPDATE SET {', '.join(sets)}
                RETURNING (xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM merged
            """
        )
        inserted, touched = cur.fetchone()
        return inserted, touched

    def _missing(self, cur) -> tuple[int, list[str]]:
        key = q(self.table.key_column)
        where = (
            f"FROM {q(self.table.name)} t WHERE t._source = 'authoritative' "
            f"AND NOT EXISTS (SELECT 1 FROM _prep p WHERE p.{key} = t.{key})"
        )
        cur.execute(f"SELECT count(*) {where}")
        count = cur.fetchone()[0]
        cur.execute(f"SELECT t.{key} {where} ORDER BY 1 LIMIT %s", [SAMPLE_LIMIT])
        return count, [r[0] for r in cur.fetchall()]


class SyncError(Exception):
    """The table cannot be synced from this source; the message names the source and the column."""
