"""What is in the inbox: each entry at its top, classified without reading any file and without following links.

- a regular file a domain's patterns match (``file``), or that none matches (``unmatched``);
- a month folder ``YYYYMM/`` whose highest version folder (``V1``, ``V2`` … at any depth) holds matching files
  (``folder``), or that has none (``unmatched``);
- anything never to be read (``hostile``): a link, pipe or device, a file with other hard links, a name with control
  characters or bytes that are not UTF-8;
- names of copies in progress (``.name``, ``name.part`` …) and other folders are not entries at all."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path

from pipeline.config import domain_names, load_domain
from pipeline.facts.inbox_fs import Outcome, hostile_name, kind_of, lstat, shown, walk_folders
from pipeline.facts.readers import parse_month

MONTH_IN_NAME = re.compile(r"(\d{4}年\d{1,2}月|\d{4}[-_.]?\d{2})")
MONTH_FOLDER = re.compile(r"\d{6}")
VERSION_FOLDER = re.compile(r"[Vv](\d{1,6})")
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".filepart")
FOLDER_DEPTH, FOLDER_LIMIT = 6, 1000

Domains = dict[str, list[str]]


@dataclass
class Candidate:
    """A file some domain processes: its path in the inbox (``202411/…/V2/x.xlsx`` in a month folder)."""

    rel: str
    path: Path
    stat: os.stat_result
    domains: list[str]


class EntryKind(StrEnum):
    FILE = "file"
    FOLDER = "folder"
    HOSTILE = "hostile"  # rejected unread
    UNMATCHED = "unmatched"  # left where it is, reported

    @property
    def is_read(self) -> bool:
        """A fact file or month folder some domain processes."""
        return self in (EntryKind.FILE, EntryKind.FOLDER)


@dataclass
class Entry:
    """One thing at the top of the inbox: a fact file, a month folder, or something to reject or report."""

    name: str
    kind: EntryKind
    month: date | None = None
    files: list[Candidate] = field(default_factory=list)
    reason: str = ""
    version: str = ""
    older: list[str] = field(default_factory=list)
    is_folder: bool = False

    @property
    def key(self) -> str:
        """The entry's InboxFile path (a month folder's ends with ``/``; a file's is its name)."""
        return self.name + "/" if self.is_folder else self.name

    @property
    def note(self) -> str:
        """For a month folder's batches: which version was loaded."""
        if not self.version:
            return ""
        older = f"; older versions not loaded: {', '.join(self.older)}" if self.older else ""
        return f"month folder {self.name}, version {self.version}{older}: "


def month_of(name: str) -> date | None:
    """The month a file name carries (202411, 2024-11, 2024年11月), for processing files in period order."""
    for candidate in MONTH_IN_NAME.findall(name):
        try:
            return parse_month(candidate.replace("_", "-").replace(".", "-"))
        except ValueError:
            continue
    return None


def domain_patterns() -> Domains:
    return {name: load_domain(name).config.files.patterns for name in domain_names()}


def matching(name: str, domains: Domains) -> list[str]:
    return [d for d, patterns in domains.items() if any(fnmatch.fnmatch(name, pat) for pat in patterns)]


def in_progress(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES)


def signature(st: os.stat_result) -> str:
    """Size, times and inode (not the device number, which differs between hosts mounting the same share)."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def refusal(name: str, st: os.stat_result) -> str:
    """Why a non-folder entry is not read, or "" when it is a plain file."""
    if hostile_name(name):
        return "the file name contains control characters or bytes that are not UTF-8; not read"
    if not stat.S_ISREG(st.st_mode):
        return f"{kind_of(st.st_mode)}, not a regular file: only files directly in the inbox are read; not read"
    if st.st_nlink > 1:
        return f"a file with {st.st_nlink} hard links: copy it into the inbox instead of linking it; not read"
    return ""


def scan(inbox: Path, fd: int, domains: Domains) -> list[Entry]:
    """Every entry at the top of the inbox (open as ``fd``), in month order, then by name."""
    entries = []
    with os.scandir(fd) as listing:
        names = sorted(e.name for e in listing)
    for name in names:
        if in_progress(name):
            continue
        try:
            st = lstat(fd, name)
        except FileNotFoundError:
            continue
        month = month_of(name)
        if stat.S_ISDIR(st.st_mode):
            if name not in set(Outcome) and MONTH_FOLDER.fullmatch(name) and _month(name):
                entries.append(_month_folder(inbox, fd, name, domains))
        elif reason := refusal(name, st):
            entries.append(Entry(name, EntryKind.HOSTILE, reason=reason))
        elif found := matching(name, domains):
            entries.append(Entry(name, EntryKind.FILE, month=month, files=[Candidate(name, inbox / name, st, found)]))
        else:
            reason = "no domain's file patterns match the name"
            entries.append(Entry(name, EntryKind.UNMATCHED, month=month, reason=reason))
    return sorted(entries, key=lambda e: (e.month or date.max, e.name))


def _month(name: str) -> date | None:
    try:
        return parse_month(name)
    except ValueError:
        return None


def _version_folders(fd: int, name: str) -> dict[int, list[tuple[str, list[tuple[str, os.stat_result]]]]]:
    """Version number → [(path of the version folder, its entries with their lstat)]."""
    versions: dict[int, list[tuple[str, list[tuple[str, os.stat_result]]]]] = {}
    is_version = lambda folder: VERSION_FOLDER.fullmatch(folder) is not None  # noqa: E731
    for rel, folder_fd in walk_folders(fd, name, depth=FOLDER_DEPTH, limit=FOLDER_LIMIT, prune=is_version):
        if rel != name and (found := VERSION_FOLDER.fullmatch(rel.rsplit("/", 1)[-1])):
            with os.scandir(folder_fd) as listing:
                files = [(e.name, lstat(folder_fd, e.name)) for e in sorted(listing, key=lambda e: e.name)]
            versions.setdefault(int(found[1]), []).append((rel, files))
    return versions


def _month_folder(inbox: Path, fd: int, name: str, domains: Domains) -> Entry:
    """A month folder: the files of its highest version folder that a domain matches."""
    folder = Entry(name, EntryKind.UNMATCHED, month=_month(name), is_folder=True)
    versions = _version_folders(fd, name)
    if not versions:
        folder.reason = "a month folder without version folders (V1, V2, …); nothing in it is loaded"
        return folder
    number = max(versions)
    if len(versions[number]) > 1:
        paths = ", ".join(shown(rel) for rel, _ in versions[number])
        folder.reason = f"several folders of version V{number} ({paths}); nothing is loaded until only one is left"
        return folder
    [(version_rel, files)] = versions[number]
    folder.version = version_rel.rsplit("/", 1)[-1]
    folder.older = sorted(shown(rel) for n, found in versions.items() if n != number for rel, _ in found)
    if hostile_name(version_rel):
        folder.kind = EntryKind.HOSTILE
        folder.reason = (
            f"{shown(version_rel)}: a folder name contains control characters or bytes that are not UTF-8; not read"
        )
        return folder
    for file_name, st in files:
        if in_progress(file_name) or stat.S_ISDIR(st.st_mode):
            continue
        if reason := refusal(file_name, st):
            folder.kind, folder.files = EntryKind.HOSTILE, []
            folder.reason = f"{shown(version_rel)}/{shown(file_name)}: {reason}"
            return folder
        if found := matching(file_name, domains):
            rel = f"{version_rel}/{file_name}"
            folder.files.append(Candidate(rel, inbox / rel, st, found))
    if folder.files:
        folder.kind = EntryKind.FOLDER
    else:
        names = ", ".join(shown(n) for n, st in files if stat.S_ISREG(st.st_mode)) or "no files"
        folder.reason = f"version {folder.version} holds no file a domain's patterns match ({names})"
    return folder
