"""Set-based sync of one reference table from one source (seed phase 1, per table).

Rows are streamed with COPY into a typed temporary staging table (the source server converts values it has types
for; generated columns parse the rest), the rows that fail a check are collected in ``_rejected``, then one UPDATE
touches only changed rows and one INSERT adds new ones, so an unchanged row is never rewritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from django.db import connection, models
from psycopg.copy import QueuedLibpqWriter
from psycopg.errors import DataError

from pipeline.bulk import bulk_write_mode, use_bulk_memory
from reference.history import Action, change_context
from reference.models import Source
from reference.registry import ReferenceTable, get_table
from refgov.db.identifiers import quote_pg as q
from refgov.db.locks import lock_for_transaction

SAMPLE_LIMIT = 20
# Above this many new rows, foreign keys and secondary indexes are rebuilt once, set-based, instead of per row.
BULK_INSERT_ROWS = 50_000


class RowSource(Protocol):
    @property
    def name(self) -> str: ...

    def columns(self) -> dict[str, str]:
        """Column name → declared type (lower case; empty where the source has no types)."""

    def is_unique(self, column: str) -> bool:
        """Whether the source itself guarantees the column's values are unique."""

    def max_length(self, column: str) -> int | None:
        """Declared maximum length in characters, where the source declares one."""

    def rows(self, columns: list[tuple[str, str]], **kwargs) -> Iterator[list[tuple]]:
        """Chunks of rows; each column is (name, how) with how ``plain`` or ``bool`` (a number read as 1/0)."""


@dataclass
class TableSyncOutcome:
    table: str
    source: str
    mode: str
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    upgraded: int = 0
    confirmed: int = 0
    unchanged: int = 0
    errors: int = 0
    error_samples: list[dict] = field(default_factory=list)
    missing_at_source: int = 0
    missing_samples: list[str] = field(default_factory=list)
    awaiting_source: int = 0
    awaiting_samples: list[str] = field(default_factory=list)
    columns_not_in_source: list[str] = field(default_factory=list)
    watermark_from: str = ""
    watermark_to: str = ""
    duration_ms: int = 0
    timings_ms: dict[str, int] = field(default_factory=dict)


MYSQL_DATE_TYPES = {"date", "datetime", "timestamp"}
MYSQL_INT_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "year"}
MYSQL_NUMERIC_TYPES = MYSQL_INT_TYPES | {"bit", "bigint", "decimal"}


@dataclass(frozen=True)
class ColumnPlan:
    """How one target column is read from the source and typed in the staging table.

    Where the source declares a compatible type (a MySQL DATE for a date column, say), the source server converts the
    value and COPY types it; free text for a typed column is parsed by a generated column and checked row by row."""

    target: str
    field: models.Field
    source_name: str
    source_type: str = ""
    source_length: int | None = None
    parent: ReferenceTable | None = None

    @property
    def is_key(self) -> bool:
        return self.parent is not None or self.field.primary_key

    @property
    def read_as(self) -> str:
        """``bool`` (a number at the source, delivered as 1/0) or ``plain`` (the source's value as it is)."""
        if isinstance(self.field, models.BooleanField) and self.source_type in MYSQL_NUMERIC_TYPES:
            return "bool"
        return "plain"

    @property
    def parsed(self) -> bool:
        """Free text for a typed column: parsed by a generated column and checked row by row."""
        if isinstance(self.field, models.BooleanField):
            return self.read_as != "bool"
        if isinstance(self.field, models.DateField):
            return self.source_type not in MYSQL_DATE_TYPES
        if isinstance(self.field, models.IntegerField):
            return self.source_type not in MYSQL_INT_TYPES
        return False

    @property
    def is_text(self) -> bool:
        return not self.is_key and not self.parsed and isinstance(self.field, (models.CharField, models.TextField))

    @property
    def raw_column(self) -> str:
        """The staging column COPY writes (the raw text where a generated column parses it)."""
        return q(f"_raw_{self.target}") if self.parsed else q(self.target)

    def staging_ddl(self) -> str:
        pg_type = self.field.db_type(connection)
        if self.parsed:
            return f"{self.raw_column} text, {q(self.target)} {pg_type} GENERATED ALWAYS AS ({self.value_sql()}) STORED"
        return f"{q(self.target)} {'text' if self.is_key or self.is_text else pg_type}"

    def value_sql(self) -> str:
        raw = self.raw_column
        if isinstance(self.field, models.BooleanField):
            return f"refgov_parse_bool({raw})"
        if isinstance(self.field, models.DateField):
            return f"refgov_parse_date({raw})"
        return f"refgov_parse_int({raw})"

    def error_sql(self) -> str | None:
        """Error text for one staged row ``s`` (NULL when the value is fine)."""
        value, raw, name = f"s.{q(self.target)}", f"s.{self.raw_column}", self.target
        if self.parsed:
            kind = {models.BooleanField: "a yes/no value", models.DateField: "a date"}.get(
                type(self.field), "an integer"
            )
            zero_date = f" AND btrim({raw}) NOT LIKE '0000-00-00%'" if isinstance(self.field, models.DateField) else ""
            return (
                f"CASE WHEN {value} IS NULL AND {raw} IS NOT NULL AND btrim({raw}) <> ''{zero_date} "
                f"THEN format('%s: not {kind}: %s', '{name}', {raw}) END"
            )
        length = getattr(self.field, "max_length", None)
        if length and not (self.source_length and self.source_length <= length and not self.is_key):
            return (
                f"CASE WHEN octet_length({value}) > {int(length)} AND char_length({value}) > {int(length)} "
                f"THEN format('%s: longer than {int(length)} characters', '{name}') END"
            )
        return None


class _PhaseClock:
    """Milliseconds per phase, so an operator can see where a slow sync spends its time."""

    def __init__(self, into: dict[str, int]):
        self.into = into

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.into[phase] = self.into.get(phase, 0) + int((time.monotonic() - started) * 1000)


class TableSync:
    """Sync one table inside the caller's transaction."""

    def __init__(self, *, table: str, reader: RowSource, renames: dict[str, str] | None = None):
        self.table = get_table(table)
        self.reader = reader
        self.renames = renames or {}
        self.keys_normalised = 0
        self.run_id: int | None = None

    def plan_columns(self) -> tuple[list[ColumnPlan], list[str]]:
        """Target columns this source provides, and target columns the source lacks."""
        available = self.reader.columns()
        parents = {col: get_table(t) for col, t in self.table.parents.items()}
        plans, missing = [], []
        for column, fld in self.table.data_fields.items():
            source_name = self.renames.get(column, column)
            if source_name not in available:
                if column in self.renames:
                    raise SyncError(f"{self.reader.name}: column {source_name!r} (configured for {column}) not found")
                if fld.primary_key:
                    raise SyncError(f"{self.reader.name}: key column {source_name!r} not found")
                missing.append(column)
                continue
            plans.append(
                ColumnPlan(
                    target=column,
                    field=fld,
                    source_name=source_name,
                    source_type=available[source_name],
                    source_length=self.reader.max_length(source_name),
                    parent=parents.get(column),
                )
            )
        return plans, missing

    def run(
        self,
        *,
        run_id: int,
        mode: str,
        read_kwargs: dict | None = None,
        report_missing: bool,
        before_checks: Callable[[], None] = lambda: None,
    ) -> TableSyncOutcome:
        """Stage, check, merge. ``before_checks`` runs between staging and checking (waiting for parent tables)."""
        started = time.monotonic()
        self.run_id = run_id
        plans, missing = self.plan_columns()
        outcome = TableSyncOutcome(
            table=self.table.name, source=self.reader.name, mode=mode, columns_not_in_source=missing
        )
        clock = _PhaseClock(outcome.timings_ms)
        with connection.cursor() as cur:
            lock_for_transaction(cur, f"refgov.sync.{self.table.name}")
            use_bulk_memory(cur)
            with clock("stage"):
                outcome.rows_read = self._stage(cur, plans, read_kwargs or {})
            with clock("wait"):
                before_checks()
            with clock("check"):
                outcome.errors, outcome.error_samples = self._reject(cur, plans)
                outcome.upgraded, outcome.confirmed = self._record_upgrades(cur, plans, run_id)
            cur.execute(f"SELECT count(*) FROM {q(self.table.name)}")
            existing = cur.fetchone()[0]
            with clock("merge"):
                inserted, touched, touched_kept = self._merge(
                    cur, plans, bulk=outcome.rows_read - existing > BULK_INSERT_ROWS
                )
            # Every upgraded row is rewritten (it changes layer); a confirmed one only where a value changes.
            outcome.inserted = inserted
            outcome.updated = touched - touched_kept
            outcome.unchanged = outcome.rows_read - outcome.errors - inserted - outcome.updated - outcome.upgraded
            outcome.unchanged -= outcome.confirmed
            if report_missing and existing:
                with clock("missing"):
                    outcome.missing_at_source, outcome.missing_samples = self._missing(cur)
            if existing:
                with clock("awaiting"):
                    outcome.awaiting_source, outcome.awaiting_samples = self._awaiting(cur)
            cur.execute("DROP TABLE _stage, _rejected")
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        return outcome

    def _stage(self, cur, plans: list[ColumnPlan], read_kwargs: dict) -> int:
        columns = ", ".join(p.staging_ddl() for p in plans)
        cur.execute(
            f"CREATE TEMP TABLE _stage (_row bigint GENERATED ALWAYS AS IDENTITY, _bad boolean NOT NULL DEFAULT false, "
            f"_key_fixed boolean, _keep boolean NOT NULL DEFAULT false, "
            f"{columns}) ON COMMIT DROP"
        )
        count = 0
        copy_sql = f"COPY _stage ({', '.join(p.raw_column for p in plans)}) FROM STDIN"
        try:
            chunks = self.reader.rows([(p.source_name, p.read_as) for p in plans], **read_kwargs)
            with cur.connection.cursor() as raw_cur, raw_cur.copy(copy_sql, writer=QueuedLibpqWriter(raw_cur)) as copy:
                for chunk in chunks:
                    for row in chunk:
                        copy.write_row(row)
                    count += len(chunk)
        except DataError as exc:
            detail = str(exc).strip().splitlines()
            raise SyncError(f"{self.reader.name}: a value does not fit its column: {' '.join(detail)}") from None
        self.keys_normalised = self._normalise(cur, plans)
        keys = ", ".join(q(p.target) for p in plans if p.is_key)
        cur.execute(f"ANALYZE _stage ({keys})")
        return count

    def _normalise(self, cur, plans: list[ColumnPlan]) -> int:
        """Normalise keys (NFKC, trimmed, upper case) and blank text to NULL, in one pass over the staged rows.

        Returns how many rows had a key that normalisation may have changed (0 means every key was already clean)."""
        keys = [q(p.target) for p in plans if p.is_key]
        texts = [q(p.target) for p in plans if p.is_text]
        # A cheap superset of "normalisation would change it": anything but upper-case ASCII letters and digits.
        dirty_key = " OR ".join(f"{k} ~ '[^A-Z0-9]'" for k in keys)
        blank = [f"{c} = ''" for c in texts]
        sets = [f"{k} = refgov_norm_key({k})" for k in keys] + [f"{c} = NULLIF({c}, '')" for c in texts]
        cur.execute(
            f"""
            WITH fixed AS (
                UPDATE _stage SET {", ".join(sets)}, _key_fixed = ({dirty_key})
                WHERE {" OR ".join([dirty_key, *blank])}
                RETURNING _key_fixed
            )
            SELECT count(*) FILTER (WHERE _key_fixed) FROM fixed
            """
        )
        return cur.fetchone()[0]

    def _reject(self, cur, plans: list[ColumnPlan]) -> tuple[int, list[dict]]:
        """Collect the rows that fail a check (bad value, unknown parent, empty or duplicate key) in ``_rejected``."""
        key = q(self.table.key_column)
        errors = [f"CASE WHEN s.{key} IS NULL THEN 'empty key' END"]
        errors += [err for p in plans if (err := p.error_sql()) is not None]
        joins = []
        for i, p in enumerate(plans):
            if p.parent is not None:
                alias, parent_key = f"_parent{i}", q(p.parent.key_column)
                joins.append(f"LEFT JOIN {q(p.parent.name)} {alias} ON {alias}.{parent_key} = s.{q(p.target)}")
                errors.append(
                    f"CASE WHEN s.{q(p.target)} IS NOT NULL AND {alias}.{parent_key} IS NULL "
                    f"THEN format('%s: %s not found in {p.parent.name}', '{p.target}', s.{q(p.target)}) END"
                )
        cur.execute(
            f"""
            CREATE TEMP TABLE _rejected ON COMMIT DROP AS
            SELECT _row, key, error FROM (
                SELECT s._row, s.{key} AS key, concat_ws('; ', {", ".join(errors)}) AS error
                FROM _stage s {" ".join(joins)}
            ) e WHERE error <> ''
            """
        )
        # Keys unique at the source and untouched by normalisation cannot collide: skip the aggregate.
        key_source = next(p.source_name for p in plans if p.field.primary_key)
        if self.keys_normalised or not self.reader.is_unique(key_source):
            cur.execute(
                f"""
                INSERT INTO _rejected (_row, key, error)
                SELECT s._row, s.{key}, 'duplicate key: a later source row with the same key wins'
                FROM _stage s
                JOIN (SELECT {key}, max(_row) AS keep FROM _stage GROUP BY {key} HAVING count(*) > 1) d
                  ON d.{key} = s.{key} AND s._row <> d.keep
                WHERE NOT EXISTS (SELECT 1 FROM _rejected r WHERE r._row = s._row)
                """
            )
        cur.execute("UPDATE _stage s SET _bad = true FROM _rejected r WHERE r._row = s._row")
        cur.execute("SELECT count(*) FROM _rejected")
        count = cur.fetchone()[0]
        cur.execute("SELECT _row, coalesce(key, ''), error FROM _rejected ORDER BY _row LIMIT %s", [SAMPLE_LIMIT])
        return count, [{"row": r, "key": k, "error": e} for r, k, e in cur.fetchall()]

    def _awaiting_source(self, alias: str) -> str:
        """SQL condition: the row ``alias`` was promoted by a steward and the source has not brought its key yet.

        A row that began as auto-derived (``_derived_from_domain`` set) is confirmed by the source the first time a
        preload brings its key: that sync is recorded as a SyncUpgrade. Authoritative, derived, and without such a
        record means promoted in the admin and awaiting the source (what the feedback export carries). The condition
        takes the table name as one query parameter."""
        key = q(self.table.key_column)
        return (
            f"({alias}._source = 'authoritative' AND {alias}._derived_from_domain IS NOT NULL AND NOT EXISTS ("
            f'SELECT 1 FROM pipeline_syncupgrade u WHERE u."table" = %s AND u.key = {alias}.{key}))'
        )

    def _record_upgrades(self, cur, plans: list[ColumnPlan], run_id: int) -> tuple[int, int]:
        """Record the rows whose layer the source settles now, before the merge changes them: auto-derived rows it
        upgrades, and promoted rows it brings for the first time. Marks them ``_keep`` in ``_stage``: the merge keeps
        their values where the source has none. Returns (upgraded, confirmed)."""
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
            WITH recorded AS (
                INSERT INTO pipeline_syncupgrade (run_id, "table", key, derived_from_domain, changed, kept, promoted)
                SELECT %s, %s, t.{key}, t._derived_from_domain,
                       jsonb_strip_nulls(jsonb_build_object({changed or "'', NULL"})),
                       jsonb_strip_nulls(jsonb_build_object({kept or "'', NULL"})),
                       t._source = 'authoritative'
                FROM _stage p JOIN {q(self.table.name)} t ON t.{key} = p.{key}
                WHERE NOT p._bad AND (t._source = %s OR {self._awaiting_source("t")})
                RETURNING key, promoted
            ), marked AS (
                UPDATE _stage p SET _keep = true FROM recorded r WHERE p.{key} = r.key AND NOT p._bad
            )
            SELECT count(*) FILTER (WHERE NOT promoted), count(*) FILTER (WHERE promoted) FROM recorded
            """,
            [run_id, self.table.name, Source.AUTO_DERIVED.value, self.table.name],
        )
        upgraded, confirmed = cur.fetchone()
        return upgraded, confirmed

    def _merge(self, cur, plans: list[ColumnPlan], *, bulk: bool) -> tuple[int, int, int]:
        """Update changed rows, then insert new ones; returns (inserted, updated, of those the ``_keep`` rows).

        Where the source has no value, a ``_keep`` row (auto-derived, or promoted and never confirmed by the source)
        keeps its own; any other authoritative row takes the source's NULL.

        The updates are recorded in the reference history under the run's context (``self.run_id``); the inserts are
        not (the run's own records cover them).

        The table is locked against concurrent writers (an auto-derive of the same key waits for us; readers do not),
        so the insert needs no ON CONFLICT, which costs half again as much per row."""
        key = q(self.table.key_column)
        target = q(self.table.name)
        cols = [q(p.target) for p in plans]
        data = [c for c in cols if c != key]
        cur.execute(f"LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE")
        values = {c: f"COALESCE(p.{c}, CASE WHEN p._keep THEN t.{c} END)" for c in data}
        if data:
            before = ", ".join("t." + c for c in data)
            distinct = (
                f"OR CASE WHEN p._keep THEN ({before}) IS DISTINCT FROM ({', '.join(values.values())}) "
                f"ELSE ({before}) IS DISTINCT FROM ({', '.join('p.' + c for c in data)}) END"
            )
        else:
            distinct = ""
        sets = [f"{c} = {value}" for c, value in values.items()]
        sets.append(
            f"_needs_review = CASE WHEN t._source = '{Source.AUTO_DERIVED.value}' THEN false ELSE t._needs_review END"
        )
        sets.append("_source = 'authoritative'")
        with change_context(action=Action.PRELOAD, run_id=self.run_id):
            cur.execute(
                f"""
                WITH touched AS (
                    UPDATE {target} t SET {", ".join(sets)}
                    FROM _stage p
                    WHERE t.{key} = p.{key} AND NOT p._bad AND (t._source <> 'authoritative' {distinct})
                    RETURNING p._keep
                )
                SELECT count(*), count(*) FILTER (WHERE _keep) FROM touched
                """
            )
            touched, touched_kept = cur.fetchone()
        insert = f"""
            INSERT INTO {target} ({", ".join(cols)}, _source, _needs_review)
            SELECT {", ".join("p." + c for c in cols)}, 'authoritative', false FROM _stage p
            WHERE NOT p._bad AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = p.{key})
        """
        with bulk_write_mode(cur, self.table.name, enabled=bulk):
            cur.execute(insert)
            inserted = cur.rowcount
        if bulk:
            # Fact loads join against this table next: give the planner its new size now, not at autovacuum's pace.
            cur.execute(f"ANALYZE {target}")
        return inserted, touched, touched_kept

    def _missing(self, cur) -> tuple[int, list[str]]:
        """Authoritative keys the source had and no longer has (rows promoted by stewards and never brought by the
        source are not among them: see ``_awaiting``)."""
        key = q(self.table.key_column)
        cur.execute(
            f"""
            SELECT t.{key}, count(*) OVER () FROM {q(self.table.name)} t
            WHERE t._source = 'authoritative' AND NOT EXISTS (SELECT 1 FROM _stage p WHERE p.{key} = t.{key})
              AND NOT {self._awaiting_source("t")}
            ORDER BY 1 LIMIT %s
            """,
            [self.table.name, SAMPLE_LIMIT],
        )
        rows = cur.fetchall()
        return (rows[0][1] if rows else 0), [r[0] for r in rows]

    def _awaiting(self, cur) -> tuple[int, list[str]]:
        """Rows stewards promoted that the source has not brought yet (after this sync)."""
        key = q(self.table.key_column)
        cur.execute(
            f"""
            SELECT t.{key}, count(*) OVER () FROM {q(self.table.name)} t
            WHERE {self._awaiting_source("t")}
            ORDER BY 1 LIMIT %s
            """,
            [self.table.name, SAMPLE_LIMIT],
        )
        rows = cur.fetchall()
        return (rows[0][1] if rows else 0), [r[0] for r in rows]


class SyncError(Exception):
    """The table cannot be synced from this source; the message names the source and the column."""
