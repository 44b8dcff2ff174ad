"""File-system steps of the inbox that never follow a link somebody planted.

Anyone who can drop files into the inbox can also plant symbolic links there. So the inbox is worked through
directory descriptors: ``processed/`` and ``rejected/`` are opened with ``O_NOFOLLOW`` (a link there is refused, not
written through), entries are examined with ``lstat``, moved with ``rename`` (which moves a link itself and replaces,
never follows, whatever is at the destination) to a name that is free, and ``.error.txt`` files are created with
``O_CREAT | O_EXCL | O_NOFOLLOW``. Names are shown with :func:`shown`, which escapes control characters and bytes that
are not UTF-8, so that a file name cannot add lines to a message."""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType


class Outcome(StrEnum):
    """Where the inbox moves an entry it dealt with: the name of that folder (and ``InboxFile.outcome``)."""

    PROCESSED = "processed"
    REJECTED = "rejected"


ERROR_SUFFIX = ".error.txt"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
HOSTILE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})  # controls, bidi marks, line separators, not UTF-8
MAX_NAME_TRIES = 1000


class InboxRefused(Exception):
    """The inbox cannot be worked on safely (``processed/`` or ``rejected/`` is a link or not a folder)."""


def shown(name: str) -> str:
    """``name`` as text that is safe in a message: bytes that are not UTF-8 as ``\\xNN``, control and format
    characters (line breaks, escape sequences, bidi overrides) as ``\\n``, ``\\x1b``, ``\\u202e``."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if all(unicodedata.category(ch) not in HOSTILE_CATEGORIES for ch in text):
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in HOSTILE_CATEGORIES else ch
        for ch in text
    )


def hostile_name(name: str) -> bool:
    """Control or format characters, or bytes that are not UTF-8 (seen as surrogates)."""
    return any(unicodedata.category(ch) in HOSTILE_CATEGORIES for ch in name)


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def lstat(dir_fd: int, name: str) -> os.stat_result:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def lexists(dir_fd: int, name: str) -> bool:
    try:
        lstat(dir_fd, name)
    except FileNotFoundError:
        return False
    return True


@dataclass
class InboxFolders:
    """Descriptors of the inbox and of its ``processed/`` and ``rejected/`` folders (real folders, not links)."""

    path: Path
    inbox: int
    processed: int
    rejected: int

    def close(self) -> None:
        for fd in (self.rejected, self.processed, self.inbox):
            with suppress(OSError):
                os.close(fd)

    def __enter__(self) -> InboxFolders:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def open_inbox(path: Path) -> InboxFolders | None:
    """The inbox's folders, creating ``processed/`` and ``rejected/``; None when the inbox does not exist.

    The inbox itself is configuration (it may be a link an operator made); its sub-folders are not followed."""
    try:
        inbox = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise InboxRefused(f"{path} is not a folder") from None
    opened = [inbox]
    try:
        for name in Outcome:
            with suppress(FileExistsError):
                os.mkdir(name, 0o750, dir_fd=inbox)
            try:
                opened.append(os.open(name, DIR_FLAGS, dir_fd=inbox))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    what = kind_of(lstat(inbox, name).st_mode)
                    raise InboxRefused(
                        f"{path / name} is {what}, not a folder: refusing to move files through it; replace it with "
                        "a real folder"
                    ) from None
                raise
    except BaseException:
        for fd in opened:
            os.close(fd)
        raise
    return InboxFolders(path, *opened)


def free_name(dir_fd: int, name: str) -> str:
    """``name``, or ``stem.1.suffix``, ``stem.2.suffix``…: the first for which neither it nor its error file exists."""
    stem, dot, suffix = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    for n in range(MAX_NAME_TRIES):
        candidate = name if n == 0 else f"{stem}.{n}{dot}{suffix}"
        if not lexists(dir_fd, candidate) and not lexists(dir_fd, candidate + ERROR_SUFFIX):
            return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {shown(name)} after {MAX_NAME_TRIES} tries")


def move(src_fd: int, name: str, dst_fd: int) -> str:
    """Move the entry ``name`` (a file, folder or link: never followed) to a free name in ``dst_fd``; the name used."""
    target = free_name(dst_fd, name)
    os.rename(name, target, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
    return target


def write_error(dir_fd: int, name: str, text: str) -> str:
    """Create ``name.error.txt`` (or ``name.error.1.txt`` …) in ``dir_fd`` without following a link; the name used."""
    for n in range(MAX_NAME_TRIES):
        target = name + (ERROR_SUFFIX if n == 0 else f".error.{n}.txt")
        try:
            fd = os.open(target, NEW_FILE_FLAGS, 0o640, dir_fd=dir_fd)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return target
    raise FileExistsError(errno.EEXIST, f"no free error file name for {shown(name)}")


def walk_folders(
    dir_fd: int, name: str, *, depth: int, limit: int, prune: Callable[[str], bool] = lambda name: False
) -> Iterator[tuple[str, int]]:
    """(relative path, descriptor) of the folder ``name`` and of every folder below it, links not followed, at most
    ``depth`` levels and ``limit`` folders, not below folders whose name ``prune`` accepts. Each descriptor is closed
    when the walk moves on."""
    budget = [limit]

    def visit(parent: int, entry: str, rel: str, level: int) -> Iterator[tuple[str, int]]:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        try:
            fd = os.open(entry, DIR_FLAGS, dir_fd=parent)
        except OSError:
            return  # a link, or gone meanwhile
        try:
            yield rel, fd
            if level < depth and (level == 0 or not prune(entry)):
                for child in sorted(e.name for e in os.scandir(fd) if e.is_dir(follow_symlinks=False)):
                    yield from visit(fd, child, f"{rel}/{child}", level + 1)
        finally:
            os.close(fd)

    yield from visit(dir_fd, name, name, 0)
