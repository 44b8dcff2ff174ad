"""Read the first file of a ``manage.py process_facts`` command line while Django starts.

Its SHA-256 (which tells whether the file was loaded already) and, for a workbook, its parsed sheet (calamine, in
Rust) need nothing from Django and run without holding the GIL, so ``manage.py`` calls :func:`start_from_argv` before
Django initialises and both overlap the start-up. The load asks :func:`checksum` and :func:`take`; when anything does
not match (another sheet, a file changed since, an error), it simply reads the file itself. This module imports
nothing from Django.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import yaml
from python_calamine import CalamineSheet, CalamineWorkbook

from pipeline.facts.archive import WorkbookLimits, check_archive
from pipeline.facts.file_kinds import EXCEL_SUFFIXES, sheets_named

VALUE_OPTIONS = {"--domain", "--sheet", "--encoding", "--name", "--settings", "--pythonpath", "--verbosity", "-v"}

Parsed = tuple[str, tuple[int, int], CalamineSheet]  # the sheet's name, the file's (size, mtime), the sheet
_pending: dict[str, Future[Parsed | None]] = {}  # by resolved path
_digests: dict[str, Future[tuple[tuple[int, int], str, int]]] = {}  # by resolved path: (size, mtime), digest, size


def _stat(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def start_from_argv(argv: list[str], default_config_dir: Path) -> None:
    """For ``process_facts`` with a workbook argument, start parsing the first workbook's sheet in the background."""
    if len(argv) < 3 or argv[1] != "process_facts":
        return

    options, files, words = {}, [], iter(argv[2:])
    for word in words:
        name, _, value = word.partition("=")
        if name in VALUE_OPTIONS:
            options[name] = value or next(words, "")
        elif not word.startswith("-"):
            files.append(Path(word))
    if not files or not files[0].is_file():
        return
    path = files[0].resolve()
    digest: Future[tuple[tuple[int, int], str, int]] = Future()
    threading.Thread(target=_digest, args=(digest, path), name="refgov-checksum", daemon=True).start()
    _digests[str(path)] = digest
    if not path.name.lower().endswith(tuple(EXCEL_SUFFIXES)):
        return
    future: Future[Parsed | None] = Future()
    threading.Thread(
        target=_parse, args=(future, path, options, default_config_dir), name="refgov-prefetch", daemon=True
    ).start()
    _pending[str(path)] = future


def _parse(future: Future[Parsed | None], path: Path, options: dict[str, str], default_config_dir: Path) -> None:
    # Nothing is imported here: an import in this thread while Django's start-up imports the same modules can
    # deadlock, and the reader would wait for this future for ever.
    try:
        sheet = options.get("--sheet") or _domain_sheet(options.get("--domain", ""), default_config_dir)
        stat = _stat(path)
        check_archive(path, WorkbookLimits.from_env())  # a zip bomb is not parsed here either
        workbook = CalamineWorkbook.from_path(str(path))
        try:
            matches = sheets_named(workbook.sheet_names, sheet)
            parsed = (matches[0], stat, workbook.get_sheet_by_name(matches[0])) if len(matches) == 1 else None
        finally:
            workbook.close()
        future.set_result(parsed)
    except BaseException as exc:  # the reader parses the file itself and reports any error properly
        future.set_exception(exc)


def file_checksum(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of the file ``path``."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _digest(future: Future[tuple[tuple[int, int], str, int]], path: Path) -> None:
    try:
        stat = _stat(path)
        future.set_result((stat, *file_checksum(path)))
    except BaseException as exc:  # the load reads the file itself
        future.set_exception(exc)


def checksum(path: Path) -> tuple[str, int] | None:
    """The SHA-256 and size of ``path`` read in the background, if the file is unchanged since; else None."""
    future = _digests.pop(str(path.resolve()), None)
    if future is None or future.exception() is not None:
        return None
    stat, digest, size = future.result()
    try:
        unchanged = _stat(path) == stat
    except OSError:
        return None
    return (digest, size) if unchanged else None


def _domain_sheet(domain: str, default_config_dir: Path) -> str:
    config_dir = Path(os.environ.get("REFGOV_CONFIG_DIR") or default_config_dir)
    data = yaml.safe_load((config_dir / "domains" / f"{domain}.yml").read_text(encoding="utf-8"))
    return data["files"]["sheet"]


def take(path: Path, sheet: str) -> CalamineSheet | None:
    """The sheet of ``path`` parsed in the background, if it is the one wanted and the file is unchanged; else None."""
    future = _pending.pop(str(path.resolve()), None)
    found = None if future is None or future.exception() is not None else future.result()
    if found is None:
        return None
    name, stat, parsed = found
    try:
        unchanged = _stat(path) == stat
    except OSError:
        return None
    return parsed if name == sheet and unchanged else None
