"""A text fact file cut off while being copied: its last record must not load as if it were complete.

A file that ends with a line break is whole as far as the bytes can tell. One that does not is looked at once more:
if its last record is inside a quoted field, or has fewer fields than the header, it was most likely cut off (a copy
still running, a full disk) and is refused with the row. Only such files cost a pass over their bytes (counting
quotes and line breaks, as the part cutter does); a file ending with a line break costs one seek."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import IO

BLOCK = 1 << 20
MAX_RECORD_BYTES = 16 << 20  # as readers.MAX_LINE_BYTES: a longer last record is not looked for


def cut_off_reason(path: Path, *, encoding: str, delimiter: str, width: int) -> tuple[int, str] | None:
    """(row, reason) when the file does not end with a line break and its last record looks cut off, else None.

    ``row`` is the line on which the last record starts (as the reader numbers rows); ``width`` the header's number
    of columns. Quotes follow PostgreSQL's CSV rule, which is also the one the CSV reader applies to valid files:
    every ``"`` toggles quoting (a doubled quote toggles twice)."""
    with path.open("rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        if size == 0:
            return None
        fh.seek(size - 1)
        if fh.read(1) in (b"\n", b"\r"):
            return None
        fh.seek(0)
        quotes = newlines = 0
        while block := fh.read(BLOCK):
            quotes += block.count(b'"')
            newlines += block.count(b"\n")
        start, newlines_after = _last_record_start(fh, size, quotes)
        if start is None:
            return None  # a record longer than MAX_RECORD_BYTES: the reader reports it by itself
        row = newlines - newlines_after + 1
        if quotes % 2:
            return (
                row,
                "the file ends inside a quoted field of this row, without a line break: it looks cut off "
                "(still being copied?); nothing loaded",
            )
        fh.seek(start)
        text = fh.read(size - start).decode(encoding, errors="replace")
    fields = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    if not any(field.strip() for field in fields) or len(fields) >= width:
        return None
    return row, (
        f"the last row has {len(fields)} of the header's {width} columns and the file does not end with a line "
        "break: it looks cut off (still being copied?); nothing loaded"
    )


def _last_record_start(fh: IO[bytes], size: int, quotes: int) -> tuple[int | None, int]:
    """The offset where the last record starts (just after the last line break outside quotes) and the number of
    line breaks after it, walking back from the end of the file."""
    suffix_quotes = suffix_newlines = 0
    end = size
    while end > 0 and size - end < MAX_RECORD_BYTES:
        begin = max(0, end - BLOCK)
        fh.seek(begin)
        block = fh.read(end - begin)
        position = len(block)
        while (newline := block.rfind(b"\n", 0, position)) >= 0:
            suffix_quotes += block.count(b'"', newline + 1, position)
            if (quotes - suffix_quotes) % 2 == 0:
                return begin + newline + 1, suffix_newlines
            suffix_newlines += 1
            position = newline
        suffix_quotes += block.count(b'"', 0, position)
        end = begin
    if end == 0:
        return 0, suffix_newlines  # one record only: the header itself
    return None, suffix_newlines
