"""Stage a fact file in PostgreSQL: read rows, type them, normalise keys, fill derived columns (set-based).

``stage`` copies the file into the temporary relation ``_fact_raw``; ``normalised_sql`` selects from it the fact
table's columns plus ``_row`` (the row number a user sees in the file), to be inserted into the fact table in one
pass, or kept as the temporary table ``_fact`` (``materialise``). Numbers are typed by COPY itself; a file whose
numbers COPY cannot read (thousands separators, percentages, full-width digits, a number too large for its column) is
staged again with each number parsed in Python, so that a value that really is not a number is reported with its
file, sheet, row and column. Blank rows (every cell empty or white space) are skipped on every path and keep their
row numbers; ``Staged.rows`` counts the data rows.

Config strings (placeholders, prefixes, defaults) and month spellings reach the SQL as literals (``_literal``): the
statements that embed ``normalised_sql`` are executed without parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import itemgetter

import psycopg
from django.conf import settings
from django.db import connection, models, transaction
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.errors import DataError

from pipeline.config.domain_schema import DomainConfig
from pipeline.fact_tables import FactTable
from pipeline.facts import csv_parts
from pipeline.facts.file_kinds import BLANK_CHARACTERS
from pipeline.facts.readers import FactFile, FactFileError, parse_month, parse_number
from reference.registry import get_table
from refgov.db.identifiers import quote_pg as q


@dataclass
class Staged:
    rows: int
    months: list[date]


logger = logging.getLogger("refgov.facts")
PG_ENCODINGS = {"utf-8": "UTF8", "gb18030": "GB18030", "gbk": "GBK"}
PROGRESS_ROWS = 50_000
CASE_MONTHS = 24  # up to this many distinct 月度 spellings map through a CASE expression, more through a join
Progress = Callable[[str], None]


def _numeric(field: models.Field) -> bool:
    return isinstance(field, models.DecimalField)


class FactStager:
    def __init__(
        self, *, domain: DomainConfig, fact: FactTable, file: FactFile, progress: Progress, part_tables: list[str]
    ):
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
        numeric = [c for c in self.columns if _numeric(fact.columns[c])]
        self.limits = {c: _Limit(fact.columns[c]) for c in numeric}

    def stage(self, cur) -> Staged:
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
            cur.execute(f"CREATE TEMP TABLE _fact_raw (_row integer NOT NULL, {self._typed_columns()}) ON COMMIT DROP")
            try:
                with transaction.atomic():
                    self._copy(cur, parse_numbers=False)
            except DataError:
                cur.execute("TRUNCATE _fact_raw")
                self._copy(cur, parse_numbers=True)
        months, rows = self._months(cur)
        return Staged(rows=rows, months=months)

    def materialise(self, cur) -> None:
        """The temporary table ``_fact`` of all normalised rows (for a run that loads no facts)."""
        cur.execute(f"CREATE TEMP TABLE _fact ON COMMIT DROP AS {self.normalised_sql()}")
        cur.execute(f"ANALYZE _fact ({', '.join(q(c) for c in sorted(self.fact.reference_columns))})")

    def drop(self, cur) -> None:
        """Drop the staging relations now (they would only go at commit, and a caller may stage again first)."""
        for name in ("_fact", "_fact_raw"):
            cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [name])
            if found := cur.fetchone():
                cur.execute(f"DROP {'VIEW' if found[0] == 'v' else 'TABLE'} {name}")
        cur.execute("DROP TABLE IF EXISTS _fact_csv, _months")
        if self.part_tables:
            cur.execute(f"DROP TABLE IF EXISTS {', '.join(self.part_tables)}")

    def _staged_type(self, column: str) -> str:
        """Numbers are typed by COPY itself; everything else arrives as text."""
        field = self.fact.columns.get(column)
        return field.db_type(connection) if field is not None and _numeric(field) else "text"

    def _typed_columns(self, names: dict[str, str] | None = None) -> str:
        return ", ".join(
            f"{q((names or {}).get(c, c))} {self._staged_type(c)}" for c in (self.columns if names is None else names)
        )

    def _copy_csv(self, cur) -> None:
        """Fast path for a plain CSV: PostgreSQL parses and transcodes the file itself (COPY ... FORMAT csv), a large
        file in parts on several connections at once (``csv_parts``).

        Any surprise (an empty line, a quoted empty number, thousands separators, a bad byte, fewer rows stored than
        the bytes hold records, as after a line ``\\.``) raises, and the caller falls back to reading the file row by
        row, which also names the row and column of a real error. Rows whose every cell is empty are copied, and
        hidden by ``blank_filter`` when ``_months`` finds any."""
        names = {c: f"_c{i}" for i, c in enumerate(self.file.columns)}
        columns_sql = self._typed_columns(names)
        cur.execute(
            "CREATE TEMP TABLE _fact_csv (_seq integer GENERATED ALWAYS AS IDENTITY (CACHE 100000), "
            f"{columns_sql}) ON COMMIT DROP"
        )
        path = self.file.path
        with path.open("rb") as fh:
            header = b""
            for _ in range(self.file.header_row):
                header = fh.readline()
            body = fh.tell()
        delimiter = "\t" if b"\t" in header and b"," not in header else ","
        copy_sql = (
            f"COPY {{table}} ({', '.join(q(n) for n in names.values())}) FROM STDIN "
            f"WITH (FORMAT csv, DELIMITER E'{delimiter}', ENCODING '{PG_ENCODINGS[self.file.encoding]}')"
        )
        size = max(path.stat().st_size, 1)
        parts = settings.REFGOV_FACT_COPY_PARTS if size >= settings.REFGOV_FACT_PARALLEL_MIN_BYTES else 1
        ranges = csv_parts.record_ranges(path, body, parts) if parts > 1 else [(body, size)]
        step, first_part, done = 32 << 20, max(ranges[0][1] - ranges[0][0], 1), [0]

        def report(length: int) -> None:  # the first part's progress stands for all (the parts advance together)
            before, done[0] = done[0], done[0] + length
            if before // step != done[0] // step:
                self.progress(f"{min(done[0] * 100 // first_part, 100)}% of the file read")

        with cur.connection.cursor() as raw:
            if len(ranges) == 1:
                counts = [csv_parts.copy_range(raw, copy_sql.format(table="_fact_csv"), path, *ranges[0], report)]
            else:
                counts = self._copy_parts(raw, copy_sql, columns_sql, ranges, report)
        columns = ", ".join(f"{q(names[c])} AS {q(c)}" for c in self.columns)
        selects, offset = [], int(self.file.header_row)
        for table, count in zip(["_fact_csv", *self.part_tables], counts, strict=True):
            selects.append(f"SELECT _seq + {offset} AS _row, {columns} FROM {table}")
            offset += count
        cur.execute(f"CREATE TEMP VIEW _fact_raw AS {' UNION ALL '.join(selects)}")

        def hide_blank_rows() -> None:  # every cell empty or white space: rows the row-by-row reader skips
            white = _literal(BLANK_CHARACTERS)
            blank = " AND ".join(
                f"{q(names[c])} IS NULL" if c in self.limits else f"coalesce(btrim({q(names[c])}, {white}), '') = ''"
                for c in sorted(names, key=lambda c: c != "月度")
            )
            filtered = " UNION ALL ".join(f"{select} WHERE NOT ({blank})" for select in selects)
            cur.execute(f"CREATE OR REPLACE TEMP VIEW _fact_raw AS {filtered}")

        self.blank_filter = hide_blank_rows

    def _copy_parts(self, raw, copy_sql: str, columns_sql: str, ranges, report) -> list[int]:
        """The first range into ``_fact_csv`` here, the others on worker connections at the same time."""
        csv_parts.sweep_stale()
        token = csv_parts.new_token()
        with ThreadPoolExecutor(max_workers=len(ranges) - 1) as pool:
            futures = [
                pool.submit(csv_parts.copy_part, token, i, columns_sql, copy_sql, self.file.path, *ranges[i])
                for i in range(1, len(ranges))
            ]
            try:
                first = csv_parts.copy_range(
                    raw, copy_sql.format(table="_fact_csv"), self.file.path, *ranges[0], report
                )
            except BaseException:
                wait(futures)
                csv_parts.drop_parts(
                    [csv_parts.part_table(token, i) for i, f in enumerate(futures, 1) if not f.exception()]
                )
                raise
        tables = [csv_parts.part_table(token, i) for i, f in enumerate(futures, 1) if not f.exception()]
        if len(tables) < len(futures):
            csv_parts.drop_parts(tables)
            raise next(f.exception() for f in futures if f.exception())  # the caller falls back to row by row
        self.part_tables.extend(tables)
        return [first, *(f.result() for f in futures)]

    def _rows(self, parse_numbers: bool) -> Iterator[tuple]:
        pick = itemgetter(*self.positions) if len(self.positions) > 1 else (lambda v: (v[self.positions[0]],))
        numeric = [i for i, c in enumerate(self.columns) if _numeric(self.fact.columns[c])]
        numbers = [c for c in self.columns if _numeric(self.fact.columns[c])]
        for chunk in self.file.chunks_with_row_numbers(numbers=numbers):
            for number, values in chunk:
                row = pick(values)
                if parse_numbers:
                    row = list(row)
                    for i in numeric:
                        row[i] = self._number(number, self.columns[i], row[i])
                yield (number, *row)

    def _number(self, row: int, column: str, text: str | float | None) -> Decimal | None:
        if text is None:
            return None
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

    def _copy(self, cur, *, parse_numbers: bool) -> int:
        count = 0
        sql = f"COPY _fact_raw (_row, {', '.join(q(c) for c in self.columns)}) FROM STDIN"
        with cur.connection.cursor() as raw, raw.copy(sql, writer=QueuedLibpqWriter(raw)) as copy:
            for row in self._rows(parse_numbers):
                copy.write_row(row)
                count += 1
                if count % PROGRESS_ROWS == 0:
                    self.progress(f"{count:,} rows read")
        return count

    def _months(self, cur) -> tuple[list[date], int]:
        """Parse the few distinct 月度 spellings in Python (one implementation of every format), then map them; and
        count the data rows. Only a row without a month can be blank: rows PostgreSQL copied are filtered for blank
        ones only when there is such a row."""
        cur.execute('SELECT "月度", min(_row), count(*) FROM _fact_raw GROUP BY 1 ORDER BY 2')
        spellings = cur.fetchall()
        if self.blank_filter is not None and any(not _trim_blank(raw) for raw, _, _ in spellings):
            self.blank_filter()
            cur.execute('SELECT "月度", min(_row), count(*) FROM _fact_raw GROUP BY 1 ORDER BY 2')
            spellings = cur.fetchall()
        mapping = []
        for raw, first_row, _ in spellings:
            try:
                mapping.append((raw or "", parse_month(raw or "")))
            except ValueError as exc:
                raise FactFileError(
                    file=self.file.path, sheet=self.file.sheet, row=first_row, column="月度", reason=str(exc)
                ) from None
        self.month_map = mapping
        if len(mapping) > CASE_MONTHS:
            cur.execute("CREATE TEMP TABLE _months (raw text NOT NULL, month date NOT NULL) ON COMMIT DROP")
            with cur.connection.cursor() as raw, raw.copy("COPY _months (raw, month) FROM STDIN") as copy:
                for row in mapping:
                    copy.write_row(row)
            cur.execute("ANALYZE _months")
        return sorted({m for _, m in mapping}), sum(n for _, _, n in spellings)

    def _key_expression(self, column: str) -> str:
        """Prefix stripping and placeholders, applied to the key ``v.<column>`` already normalised in the subquery."""
        value = f"v.{q(column)}"
        prefix = self.domain.keys.strip_prefix.get(column, "").upper()
        if prefix:
            value = (
                f"CASE WHEN starts_with({value}, {_literal(prefix)}) THEN substr({value}, {len(prefix) + 1}) "
                f"ELSE {value} END"
            )
        placeholders = ", ".join(_literal(p.upper()) for p in self.domain.keys.placeholders if p.strip())
        return f"CASE WHEN {value} IN ({placeholders}) THEN NULL ELSE {value} END" if placeholders else value

    def normalised_sql(self) -> str:
        """``_row`` and the fact table's columns: typed month, normalised keys, derived columns from reference tables.

        The inner query computes each normalised value once (OFFSET 0 keeps PostgreSQL from inlining it into every
        use); the outer one applies prefixes, placeholders and lookups."""
        keys = set(self.fact.reference_columns)
        if len(self.month_map) <= CASE_MONTHS:
            whens = " ".join(f"WHEN {_literal(raw)} THEN DATE '{month.isoformat()}'" for raw, month in self.month_map)
            month = f"""CASE coalesce(r."月度", '') {whens} END""" if whens else "NULL::date"
            staged = "_fact_raw r"
        else:
            month, staged = "m.month", """_fact_raw r JOIN _months m ON m.raw = coalesce(r."月度", '')"""
        inner = ["r._row", f'{month} AS "月度"']
        for column in self.columns:
            if column == "月度":
                continue
            if column in keys:
                inner.append(f"refgov_norm_key(r.{q(column)}) AS {q(column)}")
            elif _numeric(self.fact.columns[column]):
                inner.append(f"r.{q(column)}")
            else:
                inner.append(f"NULLIF(btrim(r.{q(column)}), '') AS {q(column)}")
        outer, joins = ["v._row", 'v."月度"'], []
        for column in self.fact.columns:
            if column == "月度":
                continue
            present = column in self.columns
            absent = f"NULL::{self.fact.columns[column].db_type(connection)}"  # typed: an untyped NULL is text
            value = (self._key_expression(column) if column in keys else f"v.{q(column)}") if present else absent
            lookup = self.domain.derived_columns.get(column)
            if lookup is not None:
                alias = f"_lookup_{len(joins)}"
                table = get_table(lookup.table)
                source = f"v.{q(lookup.from_column)}" if lookup.from_column in self.columns else "NULL"
                joins.append(
                    f"LEFT JOIN (SELECT DISTINCT ON ({q(lookup.match)}) {q(lookup.match)} AS match, "
                    f"{q(table.key_column)} AS key FROM {q(table.name)} "
                    f"ORDER BY {q(lookup.match)}, {q(table.key_column)}) "
                    f"{alias} ON {alias}.match = {source}"
                )
                default = _literal(lookup.default) if lookup.default is not None else "NULL"
                value = f"COALESCE({value}, {alias}.key, {default})"
            outer.append(f"{value} AS {q(column)}")
        return f"""
            SELECT {", ".join(outer)}
            FROM (
                SELECT {", ".join(inner)} FROM {staged}
                OFFSET 0
            ) v {" ".join(joins)}
            """


def _literal(text: str) -> str:
    """``text`` as an SQL string literal, for a statement executed without parameters."""
    return sql.Literal(text).as_string(None).strip()


def _trim_blank(text: str | None) -> str:
    return (text or "").strip(BLANK_CHARACTERS)


class _Limit:
    """What a numeric(digits, places) column holds: values that round (half away from zero, as PostgreSQL does) to
    less than 10^(digits - places) in magnitude."""

    def __init__(self, field: models.DecimalField):
        self.whole, self.places = field.max_digits - field.decimal_places, field.decimal_places
        self.bound = Decimal(10) ** self.whole - Decimal(5).scaleb(-self.places - 1)

    def check(self, text: str, value: Decimal) -> None:
        if not (value.is_finite() and abs(value) < self.bound):
            raise ValueError(
                f"{text!r} is out of range: the column holds at most {self.whole} digits before the decimal point "
                f"(less than 10^{self.whole} in magnitude, {self.places} decimal places)"
            )
