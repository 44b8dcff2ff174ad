"""``process_facts -``: a CSV read from standard input, spooled to a temporary file in bounded memory, so that a shell
pipeline feeds the same load as a file (the readers, the cut-off check and the parallel COPY need a file they can
read again). ``--name`` is the file name the batch records, and decides the format: CSV only (a workbook cannot be
parsed as a stream)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pipeline.facts.file_kinds import EXCEL_SUFFIXES, TEXT_SUFFIXES
from pipeline.facts.inbox_fs import hostile_name, shown

STDIN = "-"
STDIN_PATH = "<stdin>"  # the file path a batch read from standard input records
BLOCK = 1 << 20


class StdinRefused(ValueError):
    """``-`` cannot be read as asked; the message is the command's stderr line."""


def checked_name(files: list[str], name: str | None) -> str:
    """The ``--name`` of standard input: a plain CSV file name."""
    if STDIN not in files:
        raise StdinRefused(f"--name {shown(name or '')}: it names standard input; use it with - as the file")
    if files.count(STDIN) > 1:
        raise StdinRefused("-: standard input can be read only once")
    if not name:
        raise StdinRefused(
            "-: --name is required to read standard input (e.g. --name 202411_规模明细.csv): it is the file name the "
            "batch records, and its suffix says the format"
        )
    if "/" in name or "\\" in name or hostile_name(name) or name in {".", ".."}:
        raise StdinRefused(f"--name {shown(name)}: a file name without folders or control characters, please")
    suffix = Path(name).suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        raise StdinRefused(
            f"--name {name}: only CSV is read from standard input; a workbook ({suffix}) must be passed as a file "
            "argument"
        )
    if suffix not in TEXT_SUFFIXES:
        raise StdinRefused(f"--name {name}: unsupported file type {suffix or '(none)'!r}; expected .csv or .txt")
    return name


@contextmanager
def spooled(stream: BinaryIO, *, name: str) -> Iterator[Path]:
    """Standard input copied block by block into ``<temporary folder>/<name>``, removed afterwards."""
    if stream.isatty():
        raise StdinRefused("-: standard input is a terminal; pipe a CSV into it (… | manage.py process_facts - …)")
    with tempfile.TemporaryDirectory(prefix="refgov-stdin-") as folder:
        path = Path(folder) / name
        with path.open("xb") as fh:
            shutil.copyfileobj(stream, fh, BLOCK)
        yield path
