"""Fact data held as a DataFrame (pandas, or Arrow: polars through ``to_arrow()``): phases 2+3 without a file.

``load_facts`` and ``ensure_references`` stage the frame into the same relation a file is staged into (``_fact_raw``:
``_row`` and the fact columns, numbers typed, everything else text) and then run the file path
(``service.process_source``): the same normalisation, aliases, key rules, derivations, scope replacement, checks,
provenance, notifications and batch record. The frame is written in COPY's text format in chunks by Arrow and numpy
(no Python per row; numbers by ``decimal_text``) and streamed by ``COPY`` (a large frame in parts at once, as a large
CSV file); ``_row`` is the row's position in the frame (``df.iloc[row]``), which the batch, its provenance
(``DerivedReference.row_numbers``), the fact rows (``_source_row``) and every error show.

Errors are :class:`FrameError` (a :class:`FactFileError`) naming the source label, row and column. Problems of the
frame itself (a missing required column, a duplicate column, a column of a type that is not a value, no rows) raise
before anything is written; problems of values (a bad month, a value that is not a number or does not fit) reject the
batch like a file: nothing is loaded, the batch is recorded as rejected and the alert raised.
"""

from __future__ import annotations

import hashlib
import io
import math
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from django.conf import settings
from django.db import transaction
from django.db.backends.utils import CursorWrapper
from psycopg import sql
from psycopg.errors import DataError

from pipeline.config import load_config, load_domain
from pipeline.config.domain_schema import DomainConfig
from pipeline.fact_tables import MONTH_COLUMN, FactTable, fact_table
from pipeline.facts import csv_parts
from pipeline.facts.decimal_text import fixed_point
from pipeline.facts.file_kinds import BLANK_CHARACTERS, trim
from pipeline.facts.frame_errors import (
    BadMonthError,
    FrameError,
    MissingColumnError,
    ValueTooLongError,
    WrongTypeError,
)
from pipeline.facts.readers import FactFile, FactFileError, parse_number
from pipeline.facts.references import DerivedTable
from pipeline.facts.service import FactResult, FactSource, process_source
from pipeline.facts.staging import NUL_REASON, FactStager, Progress, Staged, merged_spellings
from pipeline.models import FactBatch
from pipeline.runs_liveness import close_abandoned_runs
from refgov.db.sql import ident, idents
from refgov.errors import first_line

__all__ = [
    "BadMonthError",
    "BatchResult",
    "DerivationResult",
    "FrameError",
    "MissingColumnError",
    "ValueTooLongError",
    "WrongTypeError",
    "ensure_references",
    "load_facts",
]

CHUNK_ROWS = 16_384  # rows converted to text at a time (4 MB): also the unit the parts are cut in
FRAME_PARALLEL_MIN_ROWS = 200_000  # a frame this large is copied in ``REFGOV_FACT_COPY_PARTS`` parts at once
QUEUED_CHUNKS = 2  # converted chunks waiting for the COPY: bounds the memory beyond the frame
SOURCE_MAX = 200
# What PostgreSQL's numeric input reads as it is; other text goes through ``parse_number`` (thousands separators …).
PLAIN_NUMBER = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
EXACT_FLOAT_INTEGER = 2.0**53


@dataclass(frozen=True)
class DerivationResult:
    """What a call did: its batch (``FactBatch``, kind ``references`` or ``facts``), the rows read, the months, and
    per reference table the keys derived (``new_references``) and the pending rows completed (``filled_references``)."""

    batch_id: int
    domain: str
    source: str
    rows_read: int
    months: list[date]
    new_references: dict[str, list[str]]
    filled_references: dict[str, list[str]]
    aliased_rows: dict[str, int]
    message: str
    tables: dict[str, DerivedTable] = field(repr=False)

    @property
    def batch(self) -> FactBatch:
        return FactBatch.objects.get(pk=self.batch_id)

    def summary(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "domain": self.domain,
            "source": self.source,
            "rows_read": self.rows_read,
            "months": [m.isoformat() for m in self.months],
            "new_references": {t: len(keys) for t, keys in self.new_references.items()},
            "message": self.message,
        }


@dataclass(frozen=True)
class BatchResult(DerivationResult):
    """``DerivationResult`` of a load, with the fact rows loaded and the earlier rows of its scope replaced."""

    rows_loaded: int = 0
    rows_replaced: int = 0

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "rows_loaded": self.rows_loaded, "rows_replaced": self.rows_replaced}


def load_facts(
    data: Any,
    *,
    domain: str,
    source: str = "dataframe",
    replace: bool = True,
    allow_empty: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Load the frame's rows into the domain's fact table with the references they need (phases 2+3), in one
    transaction, as a file would be. ``replace=False`` keeps the earlier rows of the frame's scope (appends)."""
    result, frame_source = _process(
        data, domain=domain, source=source, load_facts=True, replace=replace, allow_empty=allow_empty, progress=progress
    )
    batch = result.batch
    return BatchResult(
        **_fields(result, frame_source), rows_loaded=batch.rows_loaded, rows_replaced=batch.rows_replaced
    )


def ensure_references(
    data: Any, *, domain: str, source: str = "dataframe", progress: Progress | None = None
) -> DerivationResult:
    """Phase 3 only: derive the reference rows the frame's unknown keys need; loads no facts."""
    result, frame_source = _process(
        data, domain=domain, source=source, load_facts=False, replace=False, allow_empty=True, progress=progress
    )
    return DerivationResult(**_fields(result, frame_source))


def _fields(result: FactResult, source: str) -> dict[str, Any]:
    batch = result.batch
    return {
        "batch_id": batch.pk,
        "domain": batch.domain,
        "source": source,
        "rows_read": batch.rows_read,
        "months": [date.fromisoformat(m) for m in batch.periods],
        "new_references": {t: d.inserted for t, d in result.tables.items()},
        "filled_references": {t: d.filled for t, d in result.tables.items() if d.filled},
        "aliased_rows": {t: d.aliased_rows for t, d in result.tables.items() if d.aliased_rows},
        "message": batch.message,
        "tables": result.tables,
    }


def _process(
    data: Any,
    *,
    domain: str,
    source: str,
    load_facts: bool,
    replace: bool,
    allow_empty: bool,
    progress: Progress | None,
) -> tuple[FactResult, str]:
    label = checked_source(source)
    config = load_config()
    loaded = load_domain(domain)
    frame = Frame.of(data, label)
    domain_config = loaded.config
    fact = fact_table(domain_config.fact_table)
    file, raw_columns = _plan(frame, domain_config, fact, label)
    if not frame.rows and not allow_empty:
        raise FrameError(label, "the frame has no rows (allow_empty=True accepts an empty frame)")
    close_abandoned_runs(config=config)

    def open_frame(
        domain_config: DomainConfig, fact: FactTable, report: Progress, parts: list[sql.Identifier]
    ) -> FactStager:
        return FrameStager(
            domain=domain_config, fact=fact, file=file, progress=report, part_tables=parts, frame=frame, raw=raw_columns
        )

    staged_source = FactSource(
        file_name=label, file_path=f"api:{label}", sheet="", checksum="", size_bytes=0, open=open_frame
    )
    try:
        result = process_source(
            staged_source,
            loaded=loaded,
            config=config,
            load_facts=load_facts,
            progress=progress,
            allow_empty=allow_empty,
            replace=replace,
        )
    except FrameError:
        raise
    except FactFileError as exc:  # from the shared checks after staging
        kind = ValueTooLongError if exc.reason.startswith("longer than") else FrameError
        raise kind(label, exc.reason, row=exc.row, column=exc.column) from exc
    return result, label


def checked_source(source: str) -> str:
    """The label a frame's batch records as its file name: one line of text without folders."""
    label = trim(str(source))
    if not label or len(label) > SOURCE_MAX or any(c in label for c in "/\\") or not label.isprintable():
        raise ValueError(
            f"source {source!r}: a label of 1 to {SOURCE_MAX} printable characters without / or \\, please "
            "(it is the file name the batch records)"
        )
    return label


def _no_records(**_: Any) -> Any:
    raise RuntimeError("a frame is staged by FrameStager, not read row by row")


def _plan(frame: Frame, domain: DomainConfig, fact: FactTable, label: str) -> tuple[FactFile, dict[str, int]]:
    """The frame's columns under their canonical names (trimmed, then ``aliases``), checked like a file's header."""
    names = {trim(k): v for k, v in domain.aliases.items()}
    columns: list[str] = []
    positions: dict[str, int] = {}
    for position, raw in enumerate(frame.names):
        text = trim(str(raw))
        name = names.get(text, text)
        if name in positions:
            other = frame.names[positions[name]]
            raise MissingColumnError(
                label, f"duplicate column: frame columns {other!r} and {raw!r} both mean {name!r}", column=name
            )
        positions[name] = position
        columns.append(name)
    missing = [c for c in domain.required_columns if c not in positions]
    if missing:
        raise MissingColumnError(
            label,
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"columns found: {', '.join(columns)}",
            column=missing[0],
        )
    file = FactFile(
        path=Path(label),
        sheet=None,
        encoding=None,
        columns=columns,
        header_row=0,
        _records=_no_records,
        _column_refs=columns,
    )
    return file, {c: positions[c] for c in columns if c in fact.columns}


class Frame:
    """A pandas DataFrame or an Arrow table, read in chunks of columns as Arrow arrays."""

    def __init__(self, label: str, names: list[Any], rows: int, pandas: Any = None, arrow: pa.Table | None = None):
        self.label, self.names, self.rows, self.pandas, self.arrow = label, names, rows, pandas, arrow
        self.series: dict[int, Any] = {}  # a pandas frame's columns by position (slicing a Series costs less)

    @classmethod
    def of(cls, data: Any, label: str) -> Frame:
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        if isinstance(data, pa.Table):
            return cls(label, list(data.column_names), data.num_rows, arrow=data)
        if hasattr(data, "iloc") and hasattr(data, "columns"):
            return cls(label, list(data.columns), len(data), pandas=data)
        if hasattr(data, "to_arrow"):  # polars
            table = data.to_arrow()
            if isinstance(table, pa.RecordBatch):
                table = pa.Table.from_batches([table])
            return cls(label, list(table.column_names), table.num_rows, arrow=table)
        raise TypeError(f"expected a pandas DataFrame or a pyarrow Table, not {type(data).__name__}")

    def column(self, position: int, start: int, stop: int, column: str) -> pa.Array:
        if self.arrow is not None:
            return _one_array(self.arrow.column(position).slice(start, stop - start))
        if (whole := self.series.get(position)) is None:
            whole = self.series[position] = self.pandas.iloc[:, position]
        series = whole.iloc[start:stop]
        try:
            values = pa.Array.from_pandas(series)
            # an Arrow-backed column (pandas' own ``str``) comes as a chunked array
            return _one_array(values) if isinstance(values, pa.ChunkedArray) else values
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            # a column of mixed Python objects (e.g. numbers and text): each value as text, as an Excel cell would be
            texts = []
            for offset, value in enumerate(series.tolist()):
                try:
                    texts.append(_cell_text(value))
                except TypeError as exc:
                    raise WrongTypeError(self.label, str(exc), row=start + offset, column=column) from None
            return pa.array(texts, pa.string())


def _one_array(chunked: pa.ChunkedArray) -> pa.Array:
    """The chunked array as one array, without a copy when it is one chunk."""
    return chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()


def _is_text(kind: pa.DataType) -> bool:
    """Text the compute kernels take (a ``string_view`` is cast to ``string`` first)."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _cell_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < EXACT_FLOAT_INTEGER else repr(value)
    if isinstance(value, Decimal):
        return None if value.is_nan() else str(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if str(value) in {"<NA>", "NaT"}:  # pandas' missing values
        return None
    raise TypeError(f"a {type(value).__name__} value is not text: {str(value)[:50]!r}")


@dataclass(frozen=True)
class _Chunk:
    """A chunk of rows in COPY's text format, and its 月度 spellings with their first rows and rows."""

    text: bytes
    months: list[tuple[str | None, int, int]]


def _spellings(months: pa.Array, start: int) -> list[tuple[str | None, int, int]]:
    """Each 月度 spelling of a chunk whose first row is ``start``, its first row and its rows, as the staged
    column's ``GROUP BY`` gives them (an empty text is staged as NULL)."""
    months = pc.if_else(pc.equal(months, ""), pa.scalar(None, months.type), months)
    encoded = pc.dictionary_encode(months, null_encoding="encode")
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    found, first, rows = np.unique(codes, return_index=True, return_counts=True)
    texts = encoded.dictionary.to_pylist()
    return [(texts[c], start + int(f), int(n)) for c, f, n in zip(found, first, rows, strict=True)]


_TAB_SEPARATED = pacsv.WriteOptions(include_header=False, quoting_style="none", delimiter="\t")
# COPY's text format escapes: the backslash first, then what Arrow will not write unquoted (a quote as its hex code)
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ('"', "\\x22"))


def _text_rows(table: pa.Table) -> bytes:
    """``table`` in COPY's text format (NULL as an empty value)."""
    buffer = io.BytesIO()
    try:
        pacsv.write_csv(table, buffer, _TAB_SEPARATED)
        if b"\\" not in (text := buffer.getvalue()):
            return text
    except pa.ArrowInvalid:  # a tab, a line break or a quote
        pass
    columns = []
    for values in table.columns:
        if _is_text(values.type):
            for character, escaped in _ESCAPES:
                values = pc.replace_substring(values, character, escaped)
        columns.append(values)
    buffer = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(columns, names=table.column_names), buffer, _TAB_SEPARATED)
    return buffer.getvalue()


class _Cancelled(Exception):
    """A part stopped because another part failed."""


class FrameStager(FactStager):
    """Stages a frame into ``_fact_raw`` by COPY of text that Arrow writes in chunks, on a second thread while
    this one sends the previous chunk. A large frame is copied in parts at once, as a large CSV file is
    (``csv_parts``): the first part into the load's temporary table, the others by worker connections into committed
    part tables, and ``_fact_raw`` is the view of them all."""

    def __init__(self, *, frame: Frame, raw: dict[str, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frame = frame
        self.raw = raw
        self.cancel = threading.Event()  # a part failed: the others stop
        # by part table: its 月度 spellings, first row and rows (``_months``), counted as its chunks are written
        self.part_months: dict[str, list[tuple[Any, ...]]] = {}

    def stage(self, cur: CursorWrapper) -> Staged:
        typed = self._typed_columns()
        ranges = self._ranges()
        own = sql.Identifier("_fact_raw" if len(ranges) <= 1 else "_fact_frame")
        cur.execute(sql.SQL("CREATE TEMP TABLE {} (_row integer NOT NULL, {}) ON COMMIT DROP").format(own, typed))
        try:
            with transaction.atomic():
                if len(ranges) <= 1:
                    digests = [self._copy_range(cur.connection, own, *r, report=True) for r in ranges]
                else:
                    digests = self._copy_frame_parts(cur, own, typed, ranges)
        except DataError as exc:  # the checks below let through nothing PostgreSQL refuses: name what it said
            raise self._error(f"PostgreSQL refused a value: {first_line(exc)}") from exc
        self.copied_months = merged_spellings(self.part_months.values())
        if len(ranges) > 1:
            cur.execute(sql.SQL("CREATE TEMP VIEW _fact_raw AS {}").format(self._union()))
            # normalised in parts at once, as a CSV copied in parts (``FactStager.parallel_parts``)
            self.own_part, self.part_columns = own, idents(self.columns)
            self.worker_parts = [(table, 0) for table in self.part_tables]
        self.blank_filter = self._hide_blank_rows
        try:
            months, rows = self._months(cur)
        except FactFileError as exc:
            if isinstance(exc, FrameError):
                raise
            raise BadMonthError(self.frame.label, exc.reason, row=exc.row, column=exc.column) from None
        chunks = [d for part in digests for d in part]
        checksum = hashlib.sha256(b"".join(d for d, _ in chunks)).hexdigest()
        return Staged(rows=rows, months=months, checksum=checksum, size_bytes=sum(n for _, n in chunks))

    def drop(self, cur: CursorWrapper) -> None:
        super().drop(cur)
        cur.execute("DROP TABLE IF EXISTS _fact_frame")

    def _ranges(self) -> list[tuple[int, int]]:
        """Row ranges of whole chunks, one per part (one for a frame under ``FRAME_PARALLEL_MIN_ROWS``)."""
        rows = self.frame.rows
        chunks = -(-rows // CHUNK_ROWS)
        parts = settings.REFGOV_FACT_COPY_PARTS if rows >= FRAME_PARALLEL_MIN_ROWS else 1
        parts = max(1, min(parts, chunks))
        bounds = [min(rows, chunks * i // parts * CHUNK_ROWS) for i in range(parts)] + [rows]
        return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    def _copy_frame_parts(
        self, cur: CursorWrapper, own: sql.Identifier, typed: sql.Composable, ranges: list[tuple[int, int]]
    ) -> list[list[tuple[bytes, int]]]:
        """The first range here, the others on worker connections at the same time; the failure of the earliest
        part that failed is raised."""
        csv_parts.sweep_stale()
        token = self.token = csv_parts.new_token()
        with ThreadPoolExecutor(max_workers=len(ranges) - 1) as pool:
            futures: list[Future[list[tuple[bytes, int]]]] = [
                pool.submit(self._copy_part, csv_parts.part_table(token, i), typed, *ranges[i])
                for i in range(1, len(ranges))
            ]
            try:
                first = self._copy_range(cur.connection, own, *ranges[0], report=True)
            except BaseException as exc:
                self.cancel.set()
                wait(futures)
                csv_parts.drop_parts(
                    [csv_parts.part_table(token, i) for i, f in enumerate(futures, 1) if not f.exception()]
                )
                if isinstance(exc, _Cancelled):  # a worker's part failed first: its error is the one to show
                    raise next(e for f in futures if (e := f.exception()) and not isinstance(e, _Cancelled)) from None
                raise
            wait(futures)
        tables = [csv_parts.part_table(token, i) for i, f in enumerate(futures, 1) if not f.exception()]
        if len(tables) < len(futures):
            csv_parts.drop_parts(tables)
            raise next(e for f in futures if (e := f.exception()) and not isinstance(e, _Cancelled))
        self.part_tables.extend(tables)
        return [first, *(f.result() for f in futures)]

    def _copy_part(
        self, table: sql.Identifier, typed: sql.Composable, start: int, stop: int
    ) -> list[tuple[bytes, int]]:
        """Create the part's table and COPY its rows into it, on a worker connection; a failed part leaves none."""
        with csv_parts.worker_connection() as conn:
            conn.execute("SET jit = off")
            conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} (_row integer NOT NULL, {})").format(table, typed))
            try:
                return self._copy_range(conn, table, start, stop, report=False)
            except BaseException:
                self.cancel.set()
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
                raise

    def _union(self, where: sql.Composable | None = None) -> sql.Composed:
        columns = sql.SQL(", ").join([sql.SQL("_row"), idents(self.columns)])
        filtered = sql.SQL(" WHERE NOT ({})").format(where) if where is not None else sql.SQL("")
        return sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {} FROM {}{}").format(columns, table, filtered)
            for table in [sql.Identifier("_fact_frame"), *self.part_tables]
        )

    def _part_row(self, offset: int) -> sql.Composable:
        """A frame's parts hold their row numbers."""
        return sql.SQL("_row")

    def _error(self, reason: str, *, kind: type[FrameError] = FrameError, **where: Any) -> FrameError:
        return kind(self.frame.label, reason, **where)

    def _hide_blank_rows(self) -> None:
        """Rows whose every column is empty, as the blank lines of a file: skipped."""
        blank = sql.SQL(" AND ").join(
            sql.SQL("{} IS NULL").format(ident(c))
            if c in self.limits
            else sql.SQL("coalesce(btrim({}, {}), '') = ''").format(ident(c), sql.Literal(BLANK_CHARACTERS))
            for c in sorted(self.columns, key=lambda c: c != MONTH_COLUMN)
        )
        with transaction.get_connection().cursor() as cur:
            if self.part_tables:
                self.blank_rows = blank
                cur.execute(sql.SQL("CREATE OR REPLACE TEMP VIEW _fact_raw AS {}").format(self._union(blank)))
            else:
                cur.execute(sql.SQL("DELETE FROM _fact_raw WHERE {}").format(blank))

    def _copy_range(
        self, conn: psycopg.Connection[Any], table: sql.Identifier, start: int, stop: int, *, report: bool
    ) -> list[tuple[bytes, int]]:
        """COPY the rows ``[start, stop)`` into ``table``; the SHA-256 and size of each chunk's text. Records the
        range's 月度 spellings in ``part_months``."""
        statement = sql.SQL("COPY {} (_row, {}) FROM STDIN (FORMAT text, NULL '')").format(table, idents(self.columns))
        chunks: queue.Queue[_Chunk | BaseException | None] = queue.Queue(maxsize=QUEUED_CHUNKS)
        stopped = threading.Event()

        def produce() -> None:
            try:
                for data in self._text_chunks(start, stop):
                    while not (stopped.is_set() or self.cancel.is_set()):
                        try:
                            chunks.put(data, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    else:
                        chunks.put(_Cancelled("another part of the frame failed"))
                        return
                chunks.put(None)
            except BaseException as exc:  # handed to the consumer, raised there
                chunks.put(exc)

        digests: list[tuple[bytes, int]] = []
        spellings: list[list[tuple[str | None, int, int]]] = []
        done = start
        worker = threading.Thread(target=produce, name="refgov-frame-text", daemon=True)
        worker.start()
        try:
            with conn.cursor() as raw, raw.copy(statement) as copy:
                while (item := chunks.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    digests.append((hashlib.sha256(item.text).digest(), len(item.text)))
                    spellings.append(item.months)
                    copy.write(item.text)
                    done = min(done + CHUNK_ROWS, stop)
                    if report:
                        self.progress(f"{done:,} of {self.frame.rows:,} rows staged")
        finally:
            stopped.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    chunks.get_nowait()
                except queue.Empty:
                    worker.join(0.05)
        self.part_months[str(table)] = merged_spellings(spellings)
        return digests

    def _text_chunks(self, first: int, last: int) -> Iterator[_Chunk]:
        """The rows in chunks in COPY's text format: values separated by tabs, an empty value for NULL (so an empty
        text arrives as NULL too; the normalisation makes both NULL, as it does for a file). PostgreSQL reads this
        about 13% faster than the same rows as CSV. A chunk holding a tab, a line break, a quote (which Arrow refuses
        to write unquoted) or a backslash has its texts escaped first."""
        names = ["_row", *(f"c{i}" for i in range(len(self.columns)))]
        for start in range(first, last, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, last)
            arrays = [pa.array(np.arange(start, stop, dtype=np.int32))]
            for column in self.columns:
                values = self.frame.column(self.raw[column], start, stop, column)
                if column in self.limits:
                    arrays.append(self._number_array(values, start, column))
                else:
                    arrays.append(self._text_array(values, start, column))
            table = pa.Table.from_arrays(arrays, names=names)
            text = _text_rows(table)
            if b"\x00" in text:
                self._refuse_nul(arrays[1:], start)
            yield _Chunk(text, _spellings(arrays[1 + self.columns.index(MONTH_COLUMN)], start))

    def _refuse_nul(self, arrays: list[pa.Array], start: int) -> None:
        """Name the first text holding NUL, which PostgreSQL cannot store."""
        for column, values in zip(self.columns, arrays, strict=True):
            if _is_text(values.type):
                found = pc.match_substring(values, "\x00")
                if pc.any(found).as_py():
                    raise self._error(NUL_REASON, kind=WrongTypeError, row=start + self._first(found), column=column)

    def _first(self, mask: pa.Array) -> int:
        """The position of the first true value of ``mask`` (nulls are false)."""
        return int(pc.index(pc.fill_null(mask, False), True).as_py())

    def _wrong_type(self, values: pa.Array, start: int, column: str, what: str) -> FrameError:
        row = self._first(pc.is_valid(values))
        shown = values[row].as_py() if row >= 0 else None
        return self._error(
            f"a {values.type} column cannot be {what}: {str(shown)[:50]!r}",
            kind=WrongTypeError,
            row=start + max(row, 0),
            column=column,
        )

    def _text_array(self, values: pa.Array, start: int, column: str) -> pa.Array:
        """The column as text, as the cells of a workbook would be: whole numbers without ``.0``, dates ISO."""
        kind = values.type
        if pa.types.is_dictionary(kind):
            return self._text_array(values.dictionary_decode(), start, column)
        if _is_text(kind):
            return values
        if pa.types.is_string_view(kind):  # which not every kernel takes
            return values.cast(pa.string())
        if pa.types.is_null(kind):
            return pa.nulls(len(values), pa.string())
        if pa.types.is_integer(kind) or pa.types.is_decimal(kind):
            return pc.cast(values, pa.string())
        if pa.types.is_boolean(kind):
            return pc.if_else(values, "true", "false")
        if pa.types.is_floating(kind):
            values = pc.if_else(pc.is_nan(values), pa.scalar(None, kind), values)
            whole = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), EXACT_FLOAT_INTEGER))
            as_int = pc.cast(pc.if_else(whole, values, pa.scalar(0.0, kind)), pa.int64())
            return pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(values, pa.string()))
        if pa.types.is_date(kind):
            return pc.cast(values, pa.string())
        if pa.types.is_timestamp(kind):
            midnight = pc.equal(pc.cast(values, pa.date32()).cast(kind), values)
            return pc.if_else(
                midnight, pc.strftime(values, format="%Y-%m-%d"), pc.strftime(values, format="%Y-%m-%d %H:%M:%S")
            )
        raise self._wrong_type(values, start, column, "text")

    def _number_array(self, values: pa.Array, start: int, column: str) -> pa.Array:
        """The column as numbers PostgreSQL reads, checked against the column's range first."""
        kind = values.type
        if pa.types.is_dictionary(kind):
            return self._number_array(values.dictionary_decode(), start, column)
        if pa.types.is_null(kind):
            return pa.nulls(len(values), pa.float64())
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            values = self._parsed_numbers(values, start, column)
            magnitude = pc.cast(values, pa.float64())
        elif pa.types.is_floating(kind):
            values = pc.if_else(pc.is_nan(values), pa.scalar(None, kind), values)
            magnitude = pc.cast(values, pa.float64())
            infinite = pc.is_inf(magnitude)
            if pc.any(infinite).as_py():
                row = self._first(infinite)
                raise self._error(
                    f"{values[row].as_py()!r} is not a finite number",
                    kind=WrongTypeError,
                    row=start + row,
                    column=column,
                )
        elif pa.types.is_integer(kind) or pa.types.is_decimal(kind):
            magnitude = pc.cast(values, pa.float64(), safe=False)
        else:
            raise self._wrong_type(values, start, column, "numbers")
        limit = self.limits[column]
        outside = pc.greater_equal(pc.abs(magnitude), float(limit.bound) * (1 - 1e-15))
        if pc.any(outside).as_py():  # near the bound a float is not exact: decide with Decimal
            for position in map(int, np.flatnonzero(pc.fill_null(outside, False).to_numpy(zero_copy_only=False))):
                text = str(values[position].as_py())
                try:
                    limit.check(text, Decimal(text))
                except ValueError as exc:
                    raise self._error(str(exc), kind=WrongTypeError, row=start + position, column=column) from None
        if pa.types.is_floating(values.type):
            if values.type != pa.float64():  # a float32's shortest text, as a float64 that has it
                values = pc.cast(pc.cast(values, pa.string()), pa.float64())
            return fixed_point(values, scale=limit.places)
        return values

    def _parsed_numbers(self, values: pa.Array, start: int, column: str) -> pa.Array:
        """Text as numbers: what PostgreSQL reads is kept; the rest (``1,234.5``, ``12%``, ``(3)``, full-width
        digits, dashes) is parsed by ``parse_number`` in Python, value by value, as the file path does."""
        plain = pc.match_substring_regex(values, PLAIN_NUMBER)
        odd = pc.and_(pc.is_valid(values), pc.invert(pc.fill_null(plain, False)))
        if not pc.any(odd).as_py():
            return values
        texts = values.to_pylist()
        for row in np.flatnonzero(odd.to_numpy(zero_copy_only=False)):
            raw = texts[int(row)]
            try:
                number = parse_number(raw)
            except ValueError as exc:
                raise self._error(str(exc), kind=WrongTypeError, row=start + int(row), column=column) from None
            texts[int(row)] = None if number is None else str(number)
        return pa.array(texts, pa.string())
