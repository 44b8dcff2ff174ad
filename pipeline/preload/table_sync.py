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
from typing import Any, Protocol

from django.db import connection, models
from django.db.backends.utils import CursorWrapper
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.errors import DataError

from pipeline.bulk import bulk_write_mode, use_bulk_memory
from pipeline.models import SyncUpgrade
from reference.history import Action, change_context
from reference.models import Source
from reference.registry import ReferenceTable, get_table
from refgov.db.locks import lock_for_transaction
from refgov.db.sql import column_name, column_type, ident, idents

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

    def rows(
        self, columns: list[tuple[str, str]], *, since_column: str | None = None, since: str | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Chunks of rows; each column is (name, how) with how ``plain`` or ``bool`` (a number read as 1/0); with
        ``since``, only the rows whose ``since_column`` is greater (an incremental source)."""


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
    error_samples: list[dict[str, Any]] = field(default_factory=list)
    missing_at_source: int = 0
    missing_samples: list[str] = field(default_factory=list)
    awaiting_source: int = 0
    awaiting_samples: list[str] = field(default_factory=list)
    columns_not_in_source: list[str] = field(default_factory=list)
    watermark_from: str = ""
    watermark_to: str = ""
    duration_ms: int = 0
    timings_ms: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    note: str = ""  # for the result's message only


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
    def column(self) -> sql.Identifier:
        return ident(self.target)

    @property
    def raw_column(self) -> sql.Identifier:
        """The staging column COPY writes (the raw text where a generated column parses it)."""
        return ident(f"_raw_{self.target}") if self.parsed else self.column

    def staging_ddl(self) -> sql.Composed:
        pg_type = column_type(self.field)
        if self.parsed:
            return sql.SQL("{} text, {} {} GENERATED ALWAYS AS ({}) STORED").format(
                self.raw_column, self.column, pg_type, self.value_sql()
            )
        return sql.SQL("{} {}").format(self.column, sql.SQL("text") if self.is_key or self.is_text else pg_type)

    def value_sql(self) -> sql.Composed:
        if isinstance(self.field, models.BooleanField):
            parse = "refgov_parse_bool({})"
        elif isinstance(self.field, models.DateField):
            parse = "refgov_parse_date({})"
        else:
            parse = "refgov_parse_int({})"
        return sql.SQL(parse).format(self.raw_column)

    def error_sql(self) -> sql.Composed | None:
        """Error text for one staged row ``s`` (NULL when the value is fine), for a statement without parameters."""
        names = {"value": self.column, "raw": self.raw_column, "name": sql.Literal(self.target)}
        if self.parsed:
            kind = {models.BooleanField: "a yes/no value", models.DateField: "a date"}.get(
                type(self.field), "an integer"
            )
            zero_date = " AND btrim(s.{raw}) NOT LIKE '0000-00-00%'" if isinstance(self.field, models.DateField) else ""
            return sql.SQL(
                "CASE WHEN s.{value} IS NULL AND s.{raw} IS NOT NULL AND btrim(s.{raw}) <> ''" + zero_date + " "
                "THEN format({message}, {name}, s.{raw}) END"
            ).format(**names, message=sql.Literal(f"%s: not {kind}: %s"))
        length = getattr(self.field, "max_length", None)
        if length and not (self.source_length and self.source_length <= length and not self.is_key):
            return sql.SQL(
                "CASE WHEN octet_length(s.{value}) > {length} AND char_length(s.{value}) > {length} "
                "THEN format({message}, {name}) END"
            ).format(
                **names,
                length=sql.Literal(int(length)),
                message=sql.Literal(f"%s: longer than {int(length)} characters"),
            )
        return None


class _PhaseClock:
    """Milliseconds per phase, so an operator can see where a slow sync spends its time."""

    def __init__(self, into: dict[str, int]) -> None:
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

    def __init__(self, *, table: str, reader: RowSource, renames: dict[str, str] | None = None) -> None:
        self.table = get_table(table)
        self.reader = reader
        self.renames = renames or {}
        self.keys_normalised = 0
        self.run_id: int | None = None

    def plan_columns(self) -> tuple[list[ColumnPlan], list[str]]:
        """Target columns this source provides, and target columns the source lacks."""
        available = self.reader.columns()
        parents = {col: get_table(t) for col, t in self.table.parents.items()}
        plans: list[ColumnPlan] = []
        missing: list[str] = []
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
        read_kwargs: dict[str, Any] | None = None,
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
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(self.table.name)))
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

    def unchanged(self, *, mode: str, note: str) -> TableSyncOutcome:
        """The outcome of a source known to be unchanged (nothing read): only the rows awaiting the source."""
        started = time.monotonic()
        outcome = TableSyncOutcome(table=self.table.name, source=self.reader.name, mode=mode, note=note)
        with connection.cursor() as cur, _PhaseClock(outcome.timings_ms)("awaiting"):
            outcome.awaiting_source, outcome.awaiting_samples = self._awaiting(cur)
        outcome.duration_ms = int((time.monotonic() - started) * 1000)
        return outcome

    def _stage(self, cur: CursorWrapper, plans: list[ColumnPlan], read_kwargs: dict[str, Any]) -> int:
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE _stage (_row bigint GENERATED ALWAYS AS IDENTITY, "
                "_bad boolean NOT NULL DEFAULT false, _key_fixed boolean, _keep boolean NOT NULL DEFAULT false, "
                "{}) ON COMMIT DROP"
            ).format(sql.SQL(", ").join(p.staging_ddl() for p in plans))
        )
        count = 0
        copy_sql = sql.SQL("COPY _stage ({}) FROM STDIN").format(sql.SQL(", ").join(p.raw_column for p in plans))
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
        cur.execute(sql.SQL("ANALYZE _stage ({})").format(idents(p.target for p in plans if p.is_key)))
        return count

    def _normalise(self, cur: CursorWrapper, plans: list[ColumnPlan]) -> int:
        """Normalise keys (NFKC, trimmed, upper case) and blank text to NULL, in one pass over the staged rows.

        Returns how many rows had a key that normalisation may have changed (0 means every key was already clean)."""
        keys = [p.column for p in plans if p.is_key]
        texts = [p.column for p in plans if p.is_text]
        # A cheap superset of "normalisation would change it": anything but upper-case ASCII letters and digits.
        dirty_key = sql.SQL(" OR ").join(sql.SQL("{} ~ '[^A-Z0-9]'").format(k) for k in keys)
        blank = [sql.SQL("{} = ''").format(c) for c in texts]
        sets = [sql.SQL("{0} = refgov_norm_key({0})").format(k) for k in keys]
        sets += [sql.SQL("{0} = NULLIF({0}, '')").format(c) for c in texts]
        cur.execute(
            sql.SQL(
                """
                WITH fixed AS (
                    UPDATE _stage SET {sets}, _key_fixed = ({dirty_key})
                    WHERE {changed}
                    RETURNING _key_fixed
                )
                SELECT count(*) FILTER (WHERE _key_fixed) FROM fixed
                """
            ).format(
                sets=sql.SQL(", ").join(sets), dirty_key=dirty_key, changed=sql.SQL(" OR ").join([dirty_key, *blank])
            )
        )
        fixed: int = cur.fetchone()[0]
        return fixed

    def _reject(self, cur: CursorWrapper, plans: list[ColumnPlan]) -> tuple[int, list[dict[str, Any]]]:
        """Collect the rows that fail a check (bad value, unknown parent, empty or duplicate key) in ``_rejected``.
        Column names reach the error texts as literals: these statements are executed without parameters."""
        key = ident(self.table.key_column)
        errors = [sql.SQL("CASE WHEN s.{} IS NULL THEN 'empty key' END").format(key)]
        errors += [err for p in plans if (err := p.error_sql()) is not None]
        joins = []
        for i, p in enumerate(plans):
            if p.parent is not None:
                names = {
                    "alias": sql.Identifier(f"_parent{i}"),
                    "parent_key": ident(p.parent.key_column),
                    "parent": ident(p.parent.name),
                    "column": p.column,
                }
                joins.append(sql.SQL("LEFT JOIN {parent} {alias} ON {alias}.{parent_key} = s.{column}").format(**names))
                errors.append(
                    sql.SQL(
                        "CASE WHEN s.{column} IS NOT NULL AND {alias}.{parent_key} IS NULL "
                        "THEN format({message}, {name}, s.{column}) END"
                    ).format(
                        **names,
                        message=sql.Literal(f"%s: %s not found in {p.parent.name}"),
                        name=sql.Literal(p.target),
                    )
                )
        cur.execute(
            sql.SQL(
                """
                CREATE TEMP TABLE _rejected ON COMMIT DROP AS
                SELECT _row, key, error FROM (
                    SELECT s._row, s.{key} AS key, concat_ws('; ', {errors}) AS error
                    FROM _stage s {joins}
                ) e WHERE error <> ''
                """
            ).format(key=key, errors=sql.SQL(", ").join(errors), joins=sql.SQL(" ").join(joins))
        )
        # Keys unique at the source and untouched by normalisation cannot collide: skip the aggregate.
        key_source = next(p.source_name for p in plans if p.field.primary_key)
        if self.keys_normalised or not self.reader.is_unique(key_source):
            cur.execute(
                sql.SQL(
                    """
                    INSERT INTO _rejected (_row, key, error)
                    SELECT s._row, s.{key}, 'duplicate key: a later source row with the same key wins'
                    FROM _stage s
                    JOIN (SELECT {key}, max(_row) AS keep FROM _stage GROUP BY {key} HAVING count(*) > 1) d
                      ON d.{key} = s.{key} AND s._row <> d.keep
                    WHERE NOT EXISTS (SELECT 1 FROM _rejected r WHERE r._row = s._row)
                    """
                ).format(key=key)
            )
        cur.execute("UPDATE _stage s SET _bad = true FROM _rejected r WHERE r._row = s._row")
        cur.execute("SELECT count(*) FROM _rejected")
        count = cur.fetchone()[0]
        cur.execute("SELECT _row, coalesce(key, ''), error FROM _rejected ORDER BY _row LIMIT %s", [SAMPLE_LIMIT])
        return count, [{"row": r, "key": k, "error": e} for r, k, e in cur.fetchall()]

    def _params(self, **extra: Any) -> dict[str, Any]:
        """The named parameters of the statements below: the table, the two layers, and ``extra``."""
        return {
            "table": self.table.name,
            "authoritative": Source.AUTHORITATIVE.value,
            "auto_derived": Source.AUTO_DERIVED.value,
            **extra,
        }

    def _awaiting_source(self, alias: str) -> sql.Composed:
        """SQL condition: the row ``alias`` was promoted by a steward and the source has not brought its key yet.

        A row that began as auto-derived (``_derived_from_domain`` set) is confirmed by the source the first time a
        preload brings its key: that sync is recorded as a SyncUpgrade. Authoritative, derived, and without such a
        record means promoted in the admin and awaiting the source (what the feedback export carries). The condition
        takes the named parameters ``table`` and ``authoritative`` (``_params``)."""
        return sql.SQL(
            "({alias}._source = %(authoritative)s AND {alias}._derived_from_domain IS NOT NULL AND NOT EXISTS ("
            "SELECT 1 FROM {upgrades} u WHERE u.{table} = %(table)s AND u.{key} = {alias}.{row_key}))"
        ).format(
            alias=sql.Identifier(alias),
            upgrades=sql.Identifier(SyncUpgrade._meta.db_table),
            table=_upgrade_column("table"),
            key=_upgrade_column("key"),
            row_key=ident(self.table.key_column),
        )

    def _record_upgrades(self, cur: CursorWrapper, plans: list[ColumnPlan], run_id: int) -> tuple[int, int]:
        """Record the rows whose layer the source settles now, before the merge changes them: auto-derived rows it
        upgrades, and promoted rows it brings for the first time. Marks them ``_keep`` in ``_stage``: the merge keeps
        their values where the source has none. Returns (upgraded, confirmed)."""
        key = ident(self.table.key_column)
        data = [p for p in plans if not p.field.primary_key]
        # The column names are the keys of the JSON objects: parameters ``column_<i>``.
        columns = {f"column_{i}": p.target for i, p in enumerate(data)}
        changed = sql.SQL(", ").join(
            sql.SQL(
                "{name}::text, CASE WHEN p.{c} IS NOT NULL AND t.{c} IS DISTINCT FROM p.{c} "
                "THEN jsonb_build_array(t.{c}, p.{c}) END"
            ).format(name=sql.Placeholder(name), c=p.column)
            for name, p in zip(columns, data, strict=True)
        )
        kept = sql.SQL(", ").join(
            sql.SQL("{name}::text, CASE WHEN p.{c} IS NULL THEN to_jsonb(t.{c}) END").format(
                name=sql.Placeholder(name), c=p.column
            )
            for name, p in zip(columns, data, strict=True)
        )
        nothing = sql.SQL("'', NULL")
        upgrade = {
            f: _upgrade_column(f) for f in ("run", "table", "key", "derived_from_domain", "changed", "kept", "promoted")
        }
        cur.execute(
            sql.SQL(
                """
                WITH recorded AS (
                    INSERT INTO {upgrades} ({columns})
                    SELECT %(run)s, %(table)s, t.{key}, t._derived_from_domain,
                           jsonb_strip_nulls(jsonb_build_object({changed})),
                           jsonb_strip_nulls(jsonb_build_object({kept})),
                           t._source = %(authoritative)s
                    FROM _stage p JOIN {target} t ON t.{key} = p.{key}
                    WHERE NOT p._bad AND (t._source = %(auto_derived)s OR {awaiting})
                    RETURNING {upgrade_key} AS key, {promoted} AS promoted
                ), marked AS (
                    UPDATE _stage p SET _keep = true FROM recorded r WHERE p.{key} = r.key AND NOT p._bad
                )
                SELECT count(*) FILTER (WHERE NOT promoted), count(*) FILTER (WHERE promoted) FROM recorded
                """
            ).format(
                upgrades=sql.Identifier(SyncUpgrade._meta.db_table),
                columns=sql.SQL(", ").join(upgrade.values()),
                key=key,
                changed=changed if data else nothing,
                kept=kept if data else nothing,
                target=ident(self.table.name),
                awaiting=self._awaiting_source("t"),
                upgrade_key=upgrade["key"],
                promoted=upgrade["promoted"],
            ),
            self._params(run=run_id, **columns),
        )
        upgraded, confirmed = cur.fetchone()
        return upgraded, confirmed

    def _merge(self, cur: CursorWrapper, plans: list[ColumnPlan], *, bulk: bool) -> tuple[int, int, int]:
        """Update changed rows, then insert new ones; returns (inserted, updated, of those the ``_keep`` rows).

        Where the source has no value, a ``_keep`` row (auto-derived, or promoted and never confirmed by the source)
        keeps its own; any other authoritative row takes the source's NULL.

        The updates are recorded in the reference history under the run's context (``self.run_id``); the inserts are
        not (the run's own records cover them).

        The table is locked against concurrent writers (an auto-derive of the same key waits for us; readers do not),
        so the insert needs no ON CONFLICT, which costs half again as much per row."""
        key = ident(self.table.key_column)
        target = ident(self.table.name)
        cols = [p.column for p in plans]
        data = [p.column for p in plans if not p.field.primary_key]
        cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(target))
        values = [sql.SQL("COALESCE(p.{0}, CASE WHEN p._keep THEN t.{0} END)").format(c) for c in data]
        distinct: sql.Composable = sql.SQL("")
        if data:
            before = sql.SQL(", ").join(sql.SQL("t.{}").format(c) for c in data)
            distinct = sql.SQL(
                "OR CASE WHEN p._keep THEN ({before}) IS DISTINCT FROM ({values}) "
                "ELSE ({before}) IS DISTINCT FROM ({source}) END"
            ).format(
                before=before,
                values=sql.SQL(", ").join(values),
                source=sql.SQL(", ").join(sql.SQL("p.{}").format(c) for c in data),
            )
        sets: list[sql.Composable] = [sql.SQL("{} = {}").format(c, v) for c, v in zip(data, values, strict=True)]
        sets.append(
            sql.SQL("_needs_review = CASE WHEN t._source = %(auto_derived)s THEN false ELSE t._needs_review END")
        )
        sets.append(sql.SQL("_source = %(authoritative)s"))
        with change_context(action=Action.PRELOAD, run_id=self.run_id):
            cur.execute(
                sql.SQL(
                    """
                    WITH touched AS (
                        UPDATE {target} t SET {sets}
                        FROM _stage p
                        WHERE t.{key} = p.{key} AND NOT p._bad AND (t._source <> %(authoritative)s {distinct})
                        RETURNING p._keep
                    )
                    SELECT count(*), count(*) FILTER (WHERE _keep) FROM touched
                    """
                ).format(target=target, sets=sql.SQL(", ").join(sets), key=key, distinct=distinct),
                self._params(),
            )
            touched, touched_kept = cur.fetchone()
        insert = sql.SQL(
            """
            INSERT INTO {target} ({columns}, _source, _needs_review)
            SELECT {values}, %(authoritative)s, false FROM _stage p
            WHERE NOT p._bad AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = p.{key})
            """
        ).format(
            target=target,
            columns=sql.SQL(", ").join(cols),
            values=sql.SQL(", ").join(sql.SQL("p.{}").format(c) for c in cols),
            key=key,
        )
        with bulk_write_mode(cur, self.table.name, enabled=bulk):
            cur.execute(insert, self._params())
            inserted: int = cur.rowcount
        if bulk:
            # Fact loads join against this table next: give the planner its new size now, not at autovacuum's pace.
            cur.execute(sql.SQL("ANALYZE {}").format(target))
        return inserted, touched, touched_kept

    def _missing(self, cur: CursorWrapper) -> tuple[int, list[str]]:
        """Authoritative keys the source had and no longer has (rows promoted by stewards and never brought by the
        source are not among them: see ``_awaiting``)."""
        cur.execute(
            sql.SQL(
                """
                SELECT t.{key}, count(*) OVER () FROM {target} t
                WHERE t._source = %(authoritative)s AND NOT EXISTS (SELECT 1 FROM _stage p WHERE p.{key} = t.{key})
                  AND NOT {awaiting}
                ORDER BY 1 LIMIT %(limit)s
                """
            ).format(
                key=ident(self.table.key_column), target=ident(self.table.name), awaiting=self._awaiting_source("t")
            ),
            self._params(limit=SAMPLE_LIMIT),
        )
        rows = cur.fetchall()
        return (rows[0][1] if rows else 0), [r[0] for r in rows]

    def _awaiting(self, cur: CursorWrapper) -> tuple[int, list[str]]:
        """Rows stewards promoted that the source has not brought yet (after this sync)."""
        cur.execute(
            sql.SQL(
                """
                SELECT t.{key}, count(*) OVER () FROM {target} t
                WHERE {awaiting}
                ORDER BY 1 LIMIT %(limit)s
                """
            ).format(
                key=ident(self.table.key_column), target=ident(self.table.name), awaiting=self._awaiting_source("t")
            ),
            self._params(limit=SAMPLE_LIMIT),
        )
        rows = cur.fetchall()
        return (rows[0][1] if rows else 0), [r[0] for r in rows]


def _upgrade_column(field: str) -> sql.Identifier:
    return sql.Identifier(column_name(SyncUpgrade, field))


class SyncError(Exception):
    """The table cannot be synced from this source; the message names the source and the column."""
