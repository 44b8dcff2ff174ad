"""Readers for monthly fact files: Excel workbooks (.xlsx/.xlsm) and delimited text (.csv/.txt) as rows of text.

This module only *reads*: it finds the header, maps raw headers to canonical names, checks required columns and
yields every data row as a tuple of text (``None`` for an empty cell), each with the row number a user sees in Excel
or a text editor. Everything that goes wrong is a :class:`FactFileError` whose message is one line naming the file,
sheet, row and column. Parsing values (months, numbers) is left to the caller; :func:`parse_month` and
:func:`parse_number` are the shared helpers for that.

Excel goes through python-calamine (the sheet is parsed once, in Rust, when the file is opened); text files are
streamed line by line, so a 1M-row CSV is read in bounded memory.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import unicodedata
import zipfile
from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook

from pipeline.facts import prefetch
from pipeline.facts.archive import ArchiveTooLarge, WorkbookLimits, check_archive
from pipeline.facts.file_kinds import EXCEL_SUFFIXES, TEXT_SUFFIXES, sheets_named
from pipeline.facts.file_kinds import trim as _trim
from pipeline.facts.text_tail import cut_off_reason

__all__ = ["FactFile", "FactFileError", "open_fact_file", "parse_month", "parse_number"]

DETECTION_BYTES = 1 << 20  # encoding detection looks at the first MB only
MAX_LINE_BYTES = 16 << 20  # a longer "line" is not a CSV row (e.g. a file with bare \r line endings)
ENCODING_HINT = "pass --encoding to choose the file's encoding"
END_OF_DATA = "\\."
END_OF_DATA_REASON = (
    r"the line is only \. (PostgreSQL's end-of-data marker: the rows after it would be lost), not a data row: remove it"
)

Cells = list[str | None]
Row = tuple[str | None, ...]


class FactFileError(Exception):
    """A fact file cannot be read. ``str(exc)`` is one line: ``<file name>, sheet S, row N, column C: reason``.

    ``file`` is the path; ``sheet``, ``row`` (1-based, as the user sees it; the header row is the header's own
    number) and ``column`` (canonical header name) are ``None`` where they do not apply or are not known.
    """

    def __init__(
        self,
        file: Path | str,
        reason: str,
        *,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = Path(file)
        self.reason = " ".join(str(reason).split())
        self.sheet = sheet
        self.row = row
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = [self.file.name]
        if self.sheet is not None:
            where.append(f"sheet {self.sheet}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.reason}"

    def __reduce__(
        self,
    ) -> tuple[Callable[..., FactFileError], tuple[Any, ...]]:  # keyword-only details survive a pickle
        return (_rebuild_error, (self.file, self.reason, self.sheet, self.row, self.column))


def _rebuild_error(file: Path, reason: str, sheet: str | None, row: int | None, column: str | None) -> FactFileError:
    return FactFileError(file, reason, sheet=sheet, row=row, column=column)


# A source yields (row number, cells as text) for every non-blank row from the top of the file/sheet, header included.
# ``numbers``: positions whose numeric cells may stay int/float (Excel only; text files have no numeric cells).
Records = Generator[tuple[int, Cells], None, None]
RecordSource = Callable[..., Records]


@dataclass(frozen=True)
class FactFile:
    """An opened fact file whose header has been read and checked.

    ``chunks()`` / ``chunks_with_row_numbers()`` may be called more than once: every call reads the rows again from
    the start (a CSV is re-opened and streamed again; an Excel sheet, parsed once by :func:`open_fact_file`, is
    iterated again). Blank rows (every cell empty or whitespace) are skipped wherever they are, so use
    ``chunks_with_row_numbers()`` when you need to report a row to the user.
    """

    path: Path
    sheet: str | None
    encoding: str | None
    columns: list[str]
    header_row: int
    _records: RecordSource = field(repr=False, compare=False)
    _column_refs: list[str] = field(repr=False, compare=False)

    def chunks_with_row_numbers(
        self, size: int = 10_000, *, numbers: Collection[str] = ()
    ) -> Iterator[list[tuple[int, Row]]]:
        """Data rows in file order, as lists of up to ``size`` ``(row number, values)`` pairs.

        ``values`` has exactly ``len(columns)`` items: short rows are padded with ``None``; trailing blank cells
        beyond the header are ignored; a non-blank cell beyond the header raises :class:`FactFileError`.
        Numeric Excel cells of the columns named in ``numbers`` stay ``int``/``float`` (no round trip through text).
        """
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, not {size}")
        width = len(self.columns)
        records = self._records(numbers=frozenset(i for i, c in enumerate(self.columns) if c in numbers))
        header = next(records, None)  # the header again: check that the file did not change meanwhile
        if header is None or header[0] != self.header_row or _trim_header(header[1]) != self._column_refs:
            raise self._error("the header changed since the file was opened", row=self.header_row)
        rows = (self._fit(row_number, cells, width) for row_number, cells in records)
        while chunk := list(islice(rows, size)):
            yield chunk

    def chunks(self, size: int = 10_000) -> Iterator[list[Row]]:
        """Data rows in file order, as lists of up to ``size`` value tuples (see ``chunks_with_row_numbers``)."""
        for chunk in self.chunks_with_row_numbers(size):
            yield [values for _, values in chunk]

    def _fit(self, row_number: int, cells: Cells, width: int) -> tuple[int, Row]:
        if len(cells) > width:
            used = _used_length(cells)
            if used > width:
                raise self._error(f"row has {used} values but the header has {width} columns", row=row_number)
            cells = cells[:width]
        elif len(cells) < width:
            cells = cells + [None] * (width - len(cells))
        return row_number, tuple(cells)

    def _error(self, reason: str, **where: Any) -> FactFileError:
        return FactFileError(self.path, reason, sheet=self.sheet, **where)


def open_fact_file(
    path: Path | str,
    *,
    sheet: str | None = None,
    aliases: Mapping[str, str] = {},  # noqa: B006 - read only
    required: Sequence[str] = (),
    encoding: str | None = None,
) -> FactFile:
    """Open a fact file, read its header (the first non-blank row) and check it.

    ``sheet`` is required for Excel workbooks and ignored for text files; ``encoding`` applies to text files only
    (default: detect UTF-8, with or without BOM, else GB18030, which includes GBK). Header cells are trimmed (also of
    full-width spaces and BOM) and then renamed through ``aliases`` (raw header -> canonical name).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXCEL_SUFFIXES | TEXT_SUFFIXES:
        raise FactFileError(
            path, f"unsupported file type {path.suffix or '(none)'!r}: expected .xlsx, .xlsm, .csv or .txt"
        )
    if not path.is_file():
        raise FactFileError(path, "file not found" if not path.exists() else "not a file")
    if suffix in EXCEL_SUFFIXES:
        sheet_name, records, first_column = _open_excel(path, sheet)
        encoding_name = None
        refs = lambda index: _excel_column(first_column + index)  # noqa: E731 - the letter the user sees
    else:
        sheet_name = None
        encoding_name, records = _open_text(path, encoding)
        refs = lambda index: str(index + 1)  # noqa: E731

    source = records()
    try:
        header = next(source, None)
    finally:
        source.close()
    if header is None:
        raise FactFileError(path, "no header row: the file is empty", sheet=sheet_name)
    header_row, cells = header
    column_refs = _trim_header(cells)

    def error(reason: str, column: str | None = None) -> FactFileError:
        return FactFileError(path, reason, sheet=sheet_name, row=header_row, column=column)

    names = {_trim(key): value for key, value in aliases.items()}
    columns: list[str] = []
    first_seen: dict[str, int] = {}
    for index, raw in enumerate(column_refs):
        if not raw:
            raise error(f"the header cell in column {refs(index)} is empty")
        name = names.get(raw, raw)
        if name in first_seen:
            other = first_seen[name]
            raise error(
                f"duplicate column: header cells {column_refs[other]!r} in column {refs(other)} and {raw!r} in "
                f"column {refs(index)} both mean {name!r}",
                column=name,
            )
        first_seen[name] = index
        columns.append(name)
    missing = [name for name in required if name not in first_seen]
    if missing:
        raise error(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"columns found: {', '.join(columns)}"
        )
    if encoding_name is not None:
        _check_not_cut_off(path, encoding_name, header_row, len(column_refs))
    return FactFile(
        path=path,
        sheet=sheet_name,
        encoding=encoding_name,
        columns=columns,
        header_row=header_row,
        _records=records,
        _column_refs=column_refs,
    )


# --- header and row helpers ----------------------------------------------------------------------------------------


def _blank(value: str | float | None) -> bool:
    return value is None or (isinstance(value, str) and not _trim(value))


def _used_length(cells: Cells) -> int:
    """Number of cells up to and including the last non-blank one."""
    for index in range(len(cells) - 1, -1, -1):
        if not _blank(cells[index]):
            return index + 1
    return 0


def _trim_header(cells: Cells) -> list[str]:
    """Trimmed header texts, without trailing blank cells."""
    return [_trim(cell or "") for cell in cells[: _used_length(cells)]]


def _excel_column(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


# --- Excel ---------------------------------------------------------------------------------------------------------


def _open_excel(path: Path, sheet: str | None) -> tuple[str, RecordSource, int]:
    """The sheet's real name, its records and the index of its first used column (calamine starts rows there)."""
    limits = WorkbookLimits.current()
    try:
        check_archive(path, limits)
    except ArchiveTooLarge as exc:
        raise FactFileError(path, str(exc)) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise FactFileError(path, f"not a readable Excel workbook: {exc or type(exc).__name__}") from exc
    try:
        workbook = CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as exc:
        raise FactFileError(path, f"not a readable Excel workbook: {exc or type(exc).__name__}") from exc
    try:
        available = list(workbook.sheet_names)
        if sheet is None:
            raise FactFileError(path, f"a sheet name is required for Excel workbooks; sheets: {_names(available)}")
        wanted = _trim(sheet)
        matches = sheets_named(available, sheet)
        if not matches:
            raise FactFileError(path, f"no sheet named {wanted!r}; sheets: {_names(available)}")
        if len(matches) > 1:
            raise FactFileError(path, f"several sheets are named {wanted!r}: {_names(matches)}")
        name = matches[0]
        try:
            calamine_sheet = prefetch.take(path, name) or workbook.get_sheet_by_name(name)
        except (CalamineError, OSError, ValueError) as exc:
            reason = f"not a readable Excel workbook: {exc or type(exc).__name__}"
            raise FactFileError(path, reason, sheet=name) from exc
    finally:
        workbook.close()
    if calamine_sheet.height > limits.max_rows_per_sheet:
        raise FactFileError(
            path,
            f"the sheet has {calamine_sheet.height:,} rows, more than the limit of {limits.max_rows_per_sheet:,} "
            "(REFGOV_FACT_MAX_ROWS_PER_SHEET)",
            sheet=name,
        )
    return name, partial(_excel_records, calamine_sheet), (calamine_sheet.start or (0, 0))[1]


def _names(names: Sequence[str]) -> str:
    return ", ".join(map(repr, names)) or "(none)"


def _excel_records(calamine_sheet: CalamineSheet, numbers: frozenset[int] = frozenset()) -> Records:
    start = calamine_sheet.start
    if start is None:  # empty sheet
        return
    rows = iter(calamine_sheet.iter_rows())
    # python-calamine's iter_rows() starts at row 1 (yielding empty rows above the used range); should a version
    # start at the used range instead, number the rows from its first row.
    offset = 0
    if start[0] > 0:
        first = next(rows, None)
        if first is None:
            return
        head = calamine_sheet.to_python(skip_empty_area=True, nrows=1)
        if head and first == head[0] and any(cell != "" for cell in first):
            offset = start[0]
        rows = chain([first], rows)
    # Most cells are non-empty text, kept as they are without a call per cell. Numeric cells of ``numbers`` stay
    # int/float (typed Any here: text otherwise).
    cells: list[Any]
    for number, row in enumerate(rows, start=offset + 1):
        if numbers:
            cells = [
                v
                if (v.__class__ is str and v) or (i in numbers and (v.__class__ is float or v.__class__ is int))
                else _excel_text(v)
                for i, v in enumerate(row)
            ]
        else:
            cells = [v if v.__class__ is str and v else _excel_text(v) for v in row]
        if _used_length(cells):
            yield number, cells


def _excel_text(value: Any) -> str | None:
    """A calamine cell value as text: whole numbers without ``.0``, dates ISO, empty -> None."""
    if isinstance(value, str):
        return value if value != "" else None
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds")
    return str(value)


# --- delimited text ------------------------------------------------------------------------------------------------


def _open_text(path: Path, encoding: str | None) -> tuple[str, RecordSource]:
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError as exc:
            raise FactFileError(path, f"unknown encoding {encoding!r}") from exc
        try:
            ascii_compatible = '\n,\t"'.encode(name) == b'\n,\t"'
        except UnicodeError:
            ascii_compatible = False
        if not ascii_compatible:
            raise FactFileError(
                path,
                f"encoding {encoding!r} is not supported: use an ASCII-compatible encoding "
                "such as utf-8, gb18030 or gbk",
            )
        detected = False
    else:
        name = _detect_encoding(path)
        detected = True
    return name, partial(_text_records, path, name, detected)


def _detect_encoding(path: Path) -> str:
    """UTF-8 if the first MB decodes as UTF-8 (BOM or not), else GB18030 (a superset of GBK)."""
    with open(path, "rb") as stream:
        sample = stream.read(DETECTION_BYTES)
        whole = len(sample) < DETECTION_BYTES or not stream.read(1)
    failures = []
    for candidate in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(candidate)().decode(sample, final=whole)
        except UnicodeDecodeError as exc:
            row = sample.count(b"\n", 0, exc.start) + 1
            failures.append(f"not {candidate} (row {row}: {exc.reason})")
        else:
            return candidate
    raise FactFileError(path, f"cannot detect the encoding: {' and '.join(failures)}; {ENCODING_HINT}")


def _text_records(path: Path, encoding: str, detected: bool, numbers: frozenset[int] = frozenset()) -> Records:
    with open(path, "rb") as stream:
        lines = _decoded_lines(path, stream, encoding, detected)
        skipped = 0  # blank lines before the header, not seen by the csv reader
        for first in lines:
            if first.strip():
                break
            skipped += 1
        else:
            return
        delimiter = _delimiter(first)
        reader = csv.reader(chain([first], lines), delimiter=delimiter)
        line = skipped  # last line consumed by the reader
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise FactFileError(path, f"not a valid CSV row: {exc}", row=line + 1) from exc
            number, line = line + 1, skipped + reader.line_num  # a quoted field may span lines: report the first
            if cells == [END_OF_DATA]:
                raise FactFileError(path, END_OF_DATA_REASON, row=number)
            values = [cell if cell != "" else None for cell in cells]
            if _used_length(values):
                yield number, values


def _delimiter(header_line: str) -> str:
    return "\t" if "\t" in header_line and "," not in header_line else ","


def _check_not_cut_off(path: Path, encoding: str, header_row: int, width: int) -> None:
    """Refuse a file whose last record looks cut off (see ``text_tail``)."""
    with open(path, "rb") as stream:
        header_line = next(islice(_decoded_lines(path, stream, encoding, False), header_row - 1, None), "")
    found = cut_off_reason(path, encoding=encoding, delimiter=_delimiter(header_line), width=width)
    if found is not None:
        row, reason = found
        raise FactFileError(path, reason, row=row)


def _decoded_lines(path: Path, stream: IO[bytes], encoding: str, detected: bool) -> Iterator[str]:
    """Lines of the file, decoded one at a time so that a decoding error names its line."""
    utf8 = encoding == "utf-8"
    for number, raw in enumerate(iter(partial(stream.readline, MAX_LINE_BYTES), b""), start=1):
        if number == 1 and utf8 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise FactFileError(
                path,
                f"line longer than {MAX_LINE_BYTES >> 20} MB: not a CSV file with "
                r"\n line endings?",
                row=number,
            )
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as exc:
            how = f"the encoding was detected as {encoding} from the first MB; " if detected else ""
            raise FactFileError(
                path,
                f"cannot decode byte(s) {exc.object[exc.start : exc.end][:8]!r} as {encoding}: "
                f"{exc.reason}; {how}{ENCODING_HINT}",
                row=number,
            ) from exc


# --- value helpers -------------------------------------------------------------------------------------------------

_MONTH_PATTERNS = (
    re.compile(r"(?P<year>\d{4})(?P<month>\d{2})(?:(?P<day>\d{2}))?"),  # 202411, 20241101
    re.compile(r"(?P<year>\d{4})年(?P<month>\d{1,2})月(?:(?P<day>\d{1,2})日)?"),  # 2024年11月, 2024年11月1日
    # 2024-11, 2024/11, 2024.11, 2024-11-01, 2024-11-01 00:00:00 (Excel date as ISO text)
    re.compile(r"(?P<year>\d{4})(?P<sep>[-/.])(?P<month>\d{1,2})(?:(?P=sep)(?P<day>\d{1,2})(?:[ T]00:00(?::00)?)?)?"),
)


def parse_month(text: str) -> dt.date:
    """The first day of the month written in ``text``; ``ValueError`` with the reason if it is not a month.

    Accepts ``202411``, ``2024年11月``, ``2024-11``, ``2024/11``, ``20241101``, ``2024-11-01`` and
    ``2024-11-01 00:00:00``, with full-width digits and surrounding spaces. A day, when given, must be a valid date
    of that month (any day; the result is still the month's first day).
    """
    if text is None or not _trim(str(text)):
        raise ValueError("empty month")
    normalized = _trim(unicodedata.normalize("NFKC", str(text)))
    for pattern in _MONTH_PATTERNS:
        match = pattern.fullmatch(normalized)
        if match:
            break
    else:
        raise ValueError(f"{text!r} is not a month: expected e.g. 202411, 2024年11月, 2024-11 or 20241101")
    year, month = int(match["year"]), int(match["month"])
    if not 1 <= month <= 12:
        raise ValueError(f"{text!r} is not a month: month {month} is not between 1 and 12")
    if not 1900 <= year <= 2999:
        raise ValueError(f"{text!r} is not a month: year {year} is out of range")
    if match["day"] is not None:
        try:
            dt.date(year, month, int(match["day"]))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a month: {exc}") from None
    return dt.date(year, month, 1)


_NUMBER = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NO_NUMBER = frozenset({"", "-", "—", "–", "——", "--"})


def parse_number(text: str | None) -> Decimal | None:
    """A decimal number from text; ``None`` for an empty cell or a dash; ``ValueError`` otherwise.

    Accepts thousands separators (``1,234,567.89``; full-width digits and commas too), surrounding spaces, a
    leading sign, parentheses for negatives (``(1,234.5)``), a percent sign (``12.5%`` -> ``0.125``) and the
    exponent form Python prints for small floats (``1e-05``).
    """
    if text is None:
        return None
    normalized = _trim(unicodedata.normalize("NFKC", str(text)))
    if normalized in _NO_NUMBER:
        return None
    body = normalized
    negative = body.startswith("(") and body.endswith(")")
    if negative:
        body = _trim(body[1:-1])
    percent = body.endswith("%")
    if percent:
        body = _trim(body[:-1])
    if not _NUMBER.fullmatch(body):
        raise ValueError(f"{text!r} is not a number")
    if negative and body[0] in "+-":
        raise ValueError(f"{text!r} is not a number: both parentheses and a sign")
    try:
        value = Decimal(body.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise ValueError(f"{text!r} is not a number") from None
    if percent:
        value = value.scaleb(-2)
    return -value if negative else value
