"""Stage a fact file in PostgreSQL: read rows, type them, normalise keys, fill derived columns (set-based).

``stage`` copies the file into the temporary relation ``_fact_raw``; ``normalised_sql`` selects from it the fact
table's columns plus ``_row`` (the row number a user sees in the file), to be inserted into the fact table in one
pass, or kept as the temporary table ``_fact`` (``materialise``). Numbers are typed by COPY itself; a file whose
numbers COPY cannot read (thousands separators, percentages, full-width digits, a number too large for its column) is
staged again with each number parsed in Python, so that a value that really is not a number is reported with its
file, sheet, row and column. Blank rows (every cell empty or white space) are skipped on every path and keep their
row numbers; ``Staged.rows`` counts the data rows.

Config strings (placeholders, prefixes, defaults) and month spellings reach the SQL as ``sql.Literal``: the
statements that embed ``normalised_sql`` are executed without parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import itemgetter
from typing import Any, TypeGuard

import psycopg
from django.conf import settings
from django.db import models, transaction
from django.db.backends.utils import CursorWrapper
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.errors import DataError

from pipeline.config.domain_schema import DomainConfig
from pipeline.fact_tables import MONTH_COLUMN, FactTable
from pipeline.facts import csv_parts
from pipeline.facts.file_kinds import BLANK_CHARACTERS
from pipeline.facts.lookups import mapped_lookup_sql
from pipeline.facts.readers import FactFile, FactFileError, parse_month, parse_number
from refgov.db.sql import column_type, ident, idents


@dataclass
class Staged:
    rows: int
    months: list[date]
    checksum: str | None = None  # set by a source whose checksum is known only once read (a frame)
    size_bytes: int = 0


logger = logging.getLogger("refgov.facts")
PG_ENCODINGS = {"utf-8": "UTF8", "gb18030": "GB18030", "gbk": "GBK"}
PROGRESS_ROWS = 50_000
NUL_REASON = "holds the character NUL (U+0000), which a text cannot hold"
CASE_MONTHS = 24  # up to this many distinct 月度 spellings map through a CASE expression, more through a join
Progress = Callable[[str], None]
Ranges = list[tuple[int, int]]


def _numeric(field: models.Field | None) -> TypeGuard[models.DecimalField]:
    return isinstance(field, models.DecimalField)


class FactStager:
    def __init__(
        self,
        *,
        domain: DomainConfig,
        fact: FactTable,
        file: FactFile,
        progress: Progress,
        part_tables: list[sql.Identifier],
    ) -> None:
        self.domain = domain
        self.fact = fact
        self.file = file
        self.progress = progress
        # The fact columns this file provides, in file order.
        self.columns = [c for c in file.columns if c in fact.columns]
        self.positions = [file.columns.index(c) for c in self.columns]
        self.month_map: list[tuple[str, date]] = []  # each distinct 月度 spelling of the file and its month
        self.part_tables = part_tables  # filled with the committed tables of a CSV copied in parts (``csv_parts``)
        self.blank_filter: Callable[[], None] | None = None  # copied by PostgreSQL: hides its blank rows
        # copied in parts: each worker part's table and the row number before its first row, the select list that
        # names its columns, and (once found) the condition that hides blank rows
        self.worker_parts: list[tuple[sql.Identifier, int]] = []
        self.own_part = sql.Identifier("_fact_csv")  # the part this connection copied (a temporary table)
        self.part_columns: sql.Composable | None = None
        self.blank_rows: sql.Composable | None = None
        self.token = ""
        self.copied_months: list[tuple[Any, ...]] | None = None  # a CSV in parts: (月度 spelling, first row, rows)
        self.normalise_in_parts = True  # may worker connections normalise the parts (they see committed rows only)
        self.limits = {c: _Limit(f) for c in self.columns if _numeric(f := fact.columns[c])}

    def stage(self, cur: CursorWrapper) -> Staged:
        copied = False
        if self.file.sheet is None and self.file.encoding in PG_ENCODINGS:
            try:
                with transaction.atomic():
                    self._copy_csv(cur)
                copied = True
            except (psycopg.Error, csv_parts.CopyIncomplete) as exc:
                # not plain enough for PostgreSQL's own CSV parser, or records it did not store (after a line \.):
                # read it row by row below
                if isinstance(exc, csv_parts.CopyIncomplete):
                    logger.warning("%s; reading it row by row", exc)
                self.blank_filter = None
        if not copied:
            cur.execute(
                sql.SQL("CREATE TEMP TABLE _fact_raw (_row integer NOT NULL, {}) ON COMMIT DROP").format(
                    self._typed_columns()
                )
            )
            try:
                with transaction.atomic():
                    self._copy(cur, parse_numbers=False)
            except DataError:
                cur.execute("TRUNCATE _fact_raw")
                self._copy(cur, parse_numbers=True)
        months, rows = self._months(cur)
        return Staged(rows=rows, months=months)

    def materialise(self, cur: CursorWrapper) -> None:
        """The temporary table ``_fact`` of all normalised rows (for a run that loads no facts)."""
        cur.execute(sql.SQL("CREATE TEMP TABLE _fact ON COMMIT DROP AS {}").format(self.normalised_sql()))
        cur.execute(sql.SQL("ANALYZE _fact ({})").format(idents(sorted(self.fact.reference_columns))))

    def drop(self, cur: CursorWrapper) -> None:
        """Drop the staging relations now (they would only go at commit, and a caller may stage again first)."""
        for name in ("_fact", "_fact_raw"):
            cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [name])
            if found := cur.fetchone():
                kind = sql.SQL("VIEW" if found[0] == "v" else "TABLE")
                cur.execute(sql.SQL("DROP {} {}").format(kind, sql.Identifier(name)))
        cur.execute("DROP TABLE IF EXISTS _fact_csv, _months")
        if self.part_tables:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.SQL(", ").join(self.part_tables)))

    def _staged_type(self, column: str) -> sql.SQL:
        """Numbers are typed by COPY itself; everything else arrives as text."""
        field = self.fact.columns.get(column)
        return column_type(field) if _numeric(field) else sql.SQL("text")

    def _typed_columns(self, names: dict[str, str] | None = None) -> sql.Composed:
        """``name type, …`` of the staged columns (``names``: file column → the name to stage it under)."""
        renamed = names or {}
        return sql.SQL(", ").join(
            sql.SQL("{} {}").format(ident(renamed.get(c, c)), self._staged_type(c))
            for c in (self.columns if names is None else names)
        )

    def _copy_csv(self, cur: CursorWrapper) -> None:
        """Fast path for a plain CSV: PostgreSQL parses and transcodes the file itself (COPY ... FORMAT csv), a large
        file in parts on several connections at once (``csv_parts``).

        Any surprise (an empty line, a quoted empty number, thousands separators, a bad byte, fewer rows stored than
        the bytes hold records, as after a line ``\\.``) raises, and the caller falls back to reading the file row by
        row, which also names the row and column of a real error. Rows whose every cell is empty are copied, and
        hidden by ``blank_filter`` when ``_months`` finds any."""
        names = {c: f"_c{i}" for i, c in enumerate(self.file.columns)}
        columns_sql = self._typed_columns(names)
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} (_seq integer GENERATED ALWAYS AS IDENTITY (CACHE 100000), {}) ON COMMIT DROP"
            ).format(self.own_part, columns_sql)
        )
        path = self.file.path
        with path.open("rb") as fh:
            header = b""
            for _ in range(self.file.header_row):
                header = fh.readline()
            body = fh.tell()
        delimiter = "\t" if b"\t" in header and b"," not in header else ","
        encoding = PG_ENCODINGS[self.file.encoding or ""]
        copy = csv_parts.CsvCopy(columns=idents(names.values()), delimiter=delimiter, encoding=encoding)
        size = max(path.stat().st_size, 1)
        parts = settings.REFGOV_FACT_COPY_PARTS if size >= settings.REFGOV_FACT_PARALLEL_MIN_BYTES else 1
        ranges = csv_parts.record_ranges(path, body, parts) if parts > 1 else [(body, size)]
        step, first_part, done = 32 << 20, max(ranges[0][1] - ranges[0][0], 1), [0]

        def report(length: int) -> None:  # the first part's progress stands for all (the parts advance together)
            before, done[0] = done[0], done[0] + length
            if before // step != done[0] // step:
                self.progress(f"{min(done[0] * 100 // first_part, 100)}% of the file read")

        own = self.own_part
        copied: list[tuple[int, list[tuple[Any, ...]]]] = []
        with cur.connection.cursor() as raw:
            if len(ranges) == 1:
                start, end = ranges[0]
                counts = [csv_parts.copy_range(raw, copy.into(own), path, start, end, report)]
            else:

                def spellings(table: sql.Identifier) -> sql.Composed:  # each part's, while the others copy
                    return sql.SQL("SELECT {}, min(_seq), count(*) FROM {} GROUP BY 1").format(
                        ident(names[MONTH_COLUMN]), table
                    )

                copied = self._copy_parts(raw, copy, columns_sql, ranges, report, spellings)
                counts = [count for count, _ in copied]
        columns = sql.SQL(", ").join(sql.SQL("{} AS {}").format(ident(names[c]), ident(c)) for c in self.columns)
        selects, offset = [], int(self.file.header_row)
        self.worker_parts, self.part_columns = [], columns
        part_months = []
        for i, (table, count) in enumerate(zip([own, *self.part_tables], counts, strict=True)):
            selects.append(sql.SQL("SELECT _seq + {} AS _row, {} FROM {}").format(sql.Literal(offset), columns, table))
            if table is not own:
                self.worker_parts.append((table, offset))
            if copied:
                part_months.append([(month, first + offset, rows) for month, first, rows in copied[i][1]])
            offset += count
        if copied:
            self.copied_months = merged_spellings(part_months)
        cur.execute(sql.SQL("CREATE TEMP VIEW _fact_raw AS {}").format(sql.SQL(" UNION ALL ").join(selects)))

        def hide_blank_rows() -> None:  # every cell empty or white space: rows the row-by-row reader skips
            white = sql.Literal(BLANK_CHARACTERS)
            blank = sql.SQL(" AND ").join(
                sql.SQL("{} IS NULL").format(ident(names[c]))
                if c in self.limits
                else sql.SQL("coalesce(btrim({}, {}), '') = ''").format(ident(names[c]), white)
                for c in sorted(names, key=lambda c: c != MONTH_COLUMN)
            )
            self.blank_rows = blank
            filtered = sql.SQL(" UNION ALL ").join(
                sql.SQL("{} WHERE NOT ({})").format(select, blank) for select in selects
            )
            cur.execute(sql.SQL("CREATE OR REPLACE TEMP VIEW _fact_raw AS {}").format(filtered))

        self.blank_filter = hide_blank_rows

    def _copy_parts(
        self,
        raw: psycopg.Cursor[Any],
        copy: csv_parts.CsvCopy,
        columns_sql: sql.Composable,
        ranges: Ranges,
        report: Callable[[int], None],
        spellings: Callable[[sql.Identifier], sql.Composed],
    ) -> list[tuple[int, list[tuple[Any, ...]]]]:
        """The first range into ``own_part`` here, the others on worker connections at the same time; each part's
        rows copied and the rows of its query ``spellings``."""
        csv_parts.sweep_stale()
        token = self.token = csv_parts.new_token()
        path = self.file.path
        with ThreadPoolExecutor(max_workers=len(ranges) - 1) as pool:
            futures: list[Future[tuple[int, list[tuple[Any, ...]]]]] = [
                pool.submit(csv_parts.copy_part, token, i, columns_sql, copy, path, *ranges[i], spellings)
                for i in range(1, len(ranges))
            ]
            try:
                start, end = ranges[0]
                first = csv_parts.copy_range(raw, copy.into(self.own_part), path, start, end, report)
                raw.execute(spellings(self.own_part))
                first_spellings = raw.fetchall()
            except BaseException:
                wait(futures)
                csv_parts.drop_parts(
                    [csv_parts.part_table(token, i) for i, f in enumerate(futures, 1) if not f.exception()]
                )
                raise
        tables = [csv_parts.part_table(token, i) for i, f in enumerate(futures, 1) if not f.exception()]
        if len(tables) < len(futures):
            csv_parts.drop_parts(tables)
            failures = [error for f in futures if (error := f.exception()) is not None]
            raise failures[0]  # the caller falls back to row by row
        self.part_tables.extend(tables)
        return [(first, first_spellings), *(f.result() for f in futures)]

    def _rows(self, parse_numbers: bool) -> Iterator[tuple[Any, ...]]:
        positions = self.positions
        pick: Callable[[tuple[Any, ...]], tuple[Any, ...]] = (
            itemgetter(*positions) if len(positions) > 1 else (lambda v: (v[positions[0]],))
        )
        numeric = [i for i, c in enumerate(self.columns) if _numeric(self.fact.columns[c])]
        numbers = [c for c in self.columns if _numeric(self.fact.columns[c])]
        for chunk in self.file.chunks_with_row_numbers(numbers=numbers):
            for number, values in chunk:
                row: tuple[Any, ...] | list[Any] = pick(values)
                if parse_numbers:
                    row = list(row)
                    for i in numeric:
                        row[i] = self._number(number, self.columns[i], row[i])
                yield (number, *row)

    def _number(self, row: int, column: str, text: str | float | None) -> Decimal | None:
        if text is None:
            return None
        value: Decimal | None
        try:
            if not isinstance(text, str):  # a numeric Excel cell
                value = Decimal(repr(text))
                text = repr(text)
            else:
                value = parse_number(text)
            if value is not None:
                self.limits[column].check(text, value)
        except ValueError as exc:
            raise FactFileError(
                file=self.file.path, sheet=self.file.sheet, row=row, column=column, reason=str(exc)
            ) from None
        return value

    def _copy(self, cur: CursorWrapper, *, parse_numbers: bool) -> int:
        count = 0
        statement = sql.SQL("COPY _fact_raw (_row, {}) FROM STDIN").format(idents(self.columns))
        with cur.connection.cursor() as raw, raw.copy(statement, writer=QueuedLibpqWriter(raw)) as copy:
            for row in self._rows(parse_numbers):
                try:
                    copy.write_row(row)
                except DataError:  # psycopg refuses a text holding NUL, which PostgreSQL cannot store
                    if (column := _nul_column(row)) is None:
                        raise
                    raise FactFileError(
                        file=self.file.path,
                        sheet=self.file.sheet,
                        row=row[0],
                        column=self.columns[column - 1],
                        reason=NUL_REASON,
                    ) from None
                count += 1
                if count % PROGRESS_ROWS == 0:
                    self.progress(f"{count:,} rows read")
        return count

    def _months(self, cur: CursorWrapper) -> tuple[list[date], int]:
        """Parse the few distinct 月度 spellings in Python (one implementation of every format), then map them; and
        count the data rows. Only a row without a month can be blank: rows PostgreSQL copied are filtered for blank
        ones only when there is such a row."""
        spellings_sql = sql.SQL("SELECT {}, min(_row), count(*) FROM _fact_raw GROUP BY 1 ORDER BY 2").format(
            ident(MONTH_COLUMN)
        )
        spellings: list[tuple[Any, ...]]
        if self.copied_months is not None:  # counted by each part's connection after its COPY
            spellings = self.copied_months
        else:
            cur.execute(spellings_sql)
            spellings = cur.fetchall()
        if self.blank_filter is not None and any(not _trim_blank(raw) for raw, _, _ in spellings):
            self.blank_filter()
            cur.execute(spellings_sql)
            spellings = cur.fetchall()
        mapping = []
        for raw, first_row, _ in spellings:
            try:
                mapping.append((raw or "", parse_month(raw or "")))
            except ValueError as exc:
                raise FactFileError(
                    file=self.file.path, sheet=self.file.sheet, row=first_row, column=MONTH_COLUMN, reason=str(exc)
                ) from None
        self.month_map = mapping
        if len(mapping) > CASE_MONTHS:
            cur.execute("CREATE TEMP TABLE _months (raw text NOT NULL, month date NOT NULL) ON COMMIT DROP")
            with cur.connection.cursor() as raw, raw.copy("COPY _months (raw, month) FROM STDIN") as copy:
                for row in mapping:
                    copy.write_row(row)
            cur.execute("ANALYZE _months")
        return sorted({m for _, m in mapping}), sum(n for _, _, n in spellings)

    def _key_expression(self, column: str) -> sql.Composable:
        """Prefix stripping and placeholders, applied to the key ``v.<column>`` already normalised in the subquery."""
        value: sql.Composable = sql.SQL("v.{}").format(ident(column))
        prefix = self.domain.keys.strip_prefix.get(column, "").upper()
        if prefix:
            value = sql.SQL("CASE WHEN starts_with({v}, {prefix}) THEN substr({v}, {after}) ELSE {v} END").format(
                v=value, prefix=sql.Literal(prefix), after=sql.Literal(len(prefix) + 1)
            )
        placeholders = [sql.Literal(p.upper()) for p in self.domain.keys.placeholders if p.strip()]
        if not placeholders:
            return value
        return sql.SQL("CASE WHEN {v} IN ({placeholders}) THEN NULL ELSE {v} END").format(
            v=value, placeholders=sql.SQL(", ").join(placeholders)
        )

    def parallel_parts(self) -> list[tuple[sql.Identifier, sql.Identifier, sql.Composed]]:
        """For a file copied in parts: each worker part's normalised table, the table of its rows set aside for
        ``_fact``, and the statement normalising it, to be run by a worker connection (``csv_parts.normalise_part``)
        while this one normalises ``own_rows_sql``. Empty when the rows are not all in such parts (or their months
        map through the temporary ``_months``), or worker connections may not be used."""
        if (
            not self.normalise_in_parts
            or not self.worker_parts
            or self.part_columns is None
            or len(self.month_map) > CASE_MONTHS
        ):
            return []
        return [
            (
                csv_parts.normalised_table(self.token, i),
                csv_parts.set_aside_table(self.token, i),
                self.normalised_sql(source=self._part_source(table, offset)),
            )
            for i, (table, offset) in enumerate(self.worker_parts, 1)
        ]

    def own_rows_sql(self) -> sql.Composed:
        """``normalised_sql`` of the part this connection copied (``own_part``)."""
        return self.normalised_sql(source=self._part_source(self.own_part, int(self.file.header_row)))

    def _part_source(self, table: sql.Identifier, offset: int) -> sql.Composed:
        """A part's rows as ``_fact_raw`` shows them (blank rows hidden once found)."""
        hide = sql.SQL(" WHERE NOT ({})").format(self.blank_rows) if self.blank_rows is not None else sql.SQL("")
        return sql.SQL("(SELECT {} AS _row, {} FROM {}{}) r").format(
            self._part_row(offset), self.part_columns, table, hide
        )

    def _part_row(self, offset: int) -> sql.Composable:
        """A part row's number in the file: a CSV part counts its records from the row before its first."""
        return sql.SQL("_seq + {}").format(sql.Literal(offset))

    def normalised_sql(self, source: sql.Composable | None = None) -> sql.Composed:
        """``_row`` and the fact table's columns: typed month, normalised keys, derived columns from reference tables.

        The inner query computes each normalised value once (OFFSET 0 keeps PostgreSQL from inlining it into every
        use); the outer one applies prefixes, placeholders and lookups. Config strings are literals: execute it
        without parameters."""
        keys = set(self.fact.reference_columns)
        month_column = ident(MONTH_COLUMN)
        month: sql.Composable
        staged: sql.Composable
        if len(self.month_map) <= CASE_MONTHS:
            whens = [
                sql.SQL("WHEN {} THEN DATE {}").format(sql.Literal(raw), sql.Literal(month.isoformat()))
                for raw, month in self.month_map
            ]
            month = (
                sql.SQL("CASE coalesce(r.{}, '') {} END").format(month_column, sql.SQL(" ").join(whens))
                if whens
                else sql.SQL("NULL::date")
            )
            staged = source if source is not None else sql.SQL("_fact_raw r")
        else:
            month = sql.SQL("m.month")
            staged = sql.SQL("_fact_raw r JOIN _months m ON m.raw = coalesce(r.{}, '')").format(month_column)
        inner = [sql.SQL("r._row"), sql.SQL("{} AS {}").format(month, month_column)]
        for column in self.columns:
            if column == MONTH_COLUMN:
                continue
            if column in keys:
                inner.append(sql.SQL("refgov_norm_key(r.{0}) AS {0}").format(ident(column)))
            elif _numeric(self.fact.columns[column]):
                inner.append(sql.SQL("r.{}").format(ident(column)))
            else:
                inner.append(sql.SQL("NULLIF(btrim(r.{0}), '') AS {0}").format(ident(column)))
        outer = [sql.SQL("v._row"), sql.SQL("v.{}").format(month_column)]
        joins: list[sql.Composable] = []
        for column, field in self.fact.columns.items():
            if column == MONTH_COLUMN:
                continue
            value: sql.Composable
            if column not in self.columns:
                value = sql.SQL("NULL::{}").format(column_type(field))  # typed: an untyped NULL is text
            elif column in keys:
                value = self._key_expression(column)
            else:
                value = sql.SQL("v.{}").format(ident(column))
            lookup = self.domain.derived_columns.get(column)
            if lookup is not None:
                alias = sql.Identifier(f"_lookup_{len(joins)}")
                source = (
                    sql.SQL("v.{}").format(ident(lookup.from_column))
                    if lookup.from_column in self.columns
                    else sql.SQL("NULL")
                )
                joins.append(
                    sql.SQL("LEFT JOIN ({lookup}) {alias} ON {alias}.match = {source}").format(
                        lookup=mapped_lookup_sql(lookup), alias=alias, source=source
                    )
                )
                value = sql.SQL("COALESCE({}, {}.key, {})").format(value, alias, sql.Literal(lookup.default))
            outer.append(sql.SQL("{} AS {}").format(value, ident(column)))
        return sql.SQL(
            """
            SELECT {outer}
            FROM (
                SELECT {inner} FROM {staged}
                OFFSET 0
            ) v {joins}
            """
        ).format(
            outer=sql.SQL(", ").join(outer),
            inner=sql.SQL(", ").join(inner),
            staged=staged,
            joins=sql.SQL(" ").join(joins),
        )


def merged_spellings(parts: Iterable[Iterable[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """The (月度 spelling, first row, rows) of a file from those of its parts (row numbers already the file's), in
    the order of their first rows, as ``_months`` reads them from the whole file."""
    found: dict[Any, tuple[int, int]] = {}
    for month, first, rows in (spelling for part in parts for spelling in part):
        before = found.get(month, (first, 0))
        found[month] = (min(before[0], first), before[1] + rows)
    return sorted(((month, first, rows) for month, (first, rows) in found.items()), key=itemgetter(1))


def _nul_column(row: tuple[Any, ...]) -> int | None:
    """The position of the first text in ``row`` holding the character NUL."""
    return next((i for i, value in enumerate(row) if isinstance(value, str) and "\x00" in value), None)


def _trim_blank(text: str | None) -> str:
    return (text or "").strip(BLANK_CHARACTERS)


class _Limit:
    """What a numeric(digits, places) column holds: values that round (half away from zero, as PostgreSQL does) to
    less than 10^(digits - places) in magnitude."""

    def __init__(self, field: models.DecimalField) -> None:
        self.whole, self.places = field.max_digits - field.decimal_places, field.decimal_places
        self.bound = Decimal(10) ** self.whole - Decimal(5).scaleb(-self.places - 1)

    def check(self, text: str, value: Decimal) -> None:
        if not (value.is_finite() and abs(value) < self.bound):
            raise ValueError(
                f"{text!r} is out of range: the column holds at most {self.whole} digits before the decimal point "
                f"(less than 10^{self.whole} in magnitude, {self.places} decimal places)"
            )
