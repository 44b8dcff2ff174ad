"""The fact inbox: files dropped into REFGOV_INBOX_DIR are processed by every domain whose patterns match them,
in month order, then moved to ``processed/`` or, with the reasons in ``<name>.error.txt``, to ``rejected/``.

What the inbox takes:

- regular files directly in the inbox (never through a link: links, pipes and devices are moved to ``rejected/``
  unread; a name with control characters or bytes that are not UTF-8 is rejected too);
- month folders ``YYYYMM/`` holding version folders (``202411/收集数据/数据采集/V1``, ``V2`` …): the highest version
  is loaded, and the whole month folder, older versions included, then moves to ``processed/`` (or ``rejected/``);
- a file only once it is *settled*: two scans at least REFGOV_INBOX_SETTLE_SECONDS apart saw the same size, times and
  inode, and its ctime is that old (an mtime alone proves nothing: ``cp -p``, ``rsync -t`` and SMB keep old ones).
  Names starting with ``.`` or ending with ``.part``, ``.partial``, ``.tmp`` or ``.filepart`` are copies in progress
  and are not looked at: copy under such a name, then rename.

Whatever goes wrong with one file (a killed attempt included) rejects that file alone, once; other files go on.
What the inbox saw is kept in :class:`pipeline.models.InboxFile`."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from pipeline.alerts import alert_channel, raise_alert, resolve_alerts
from pipeline.config import domain_names, load_config, load_domain
from pipeline.config.loader import LoadedConfig
from pipeline.facts.inbox_fs import (
    PROCESSED,
    REJECTED,
    InboxFolders,
    InboxRefused,
    hostile_name,
    kind_of,
    lstat,
    move,
    open_inbox,
    shown,
    walk_folders,
    write_error,
)
from pipeline.facts.readers import FactFileError, parse_month
from pipeline.facts.service import FactLoadError, process_fact_file
from pipeline.models import AlertKind, FactBatch, FactStatus, InboxFile, InboxState

logger = logging.getLogger("refgov.facts")
MONTH_IN_NAME = re.compile(r"(\d{4}年\d{1,2}月|\d{4}[-_.]?\d{2})")
MONTH_FOLDER = re.compile(r"\d{6}")
VERSION_FOLDER = re.compile(r"[Vv](\d{1,6})")
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".filepart")
FOLDER_DEPTH, FOLDER_LIMIT = 6, 1000
INBOX_LOCK = "refgov.facts.inbox"
UNFINISHED = "the previous attempt did not finish (killed, out of memory?); not retried"
MAX_KEY = 200  # Alert.key


@dataclass
class InboxResult:
    processed: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    settling: list[str] = field(default_factory=list)
    refused: str = ""
    busy: bool = False

    def summary(self) -> dict:
        return {
            "processed": self.processed, "rejected": self.rejected, "unmatched": self.unmatched,
            "settling": self.settling, "refused": self.refused, "busy": self.busy,
        }  # fmt: skip


@dataclass
class Candidate:
    """A file some domain processes: its path in the inbox (``202411/…/V2/x.xlsx`` in a month folder)."""

    rel: str
    path: Path
    stat: os.stat_result
    domains: list[str]


@dataclass
class Entry:
    """One thing at the top of the inbox: a fact file, a month folder, or something to reject or report."""

    name: str
    kind: str  # "file", "folder", "hostile" (rejected unread), "unmatched" (left, reported)
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


def inbox_dir(inbox: Path | None = None) -> Path:
    return Path(inbox or settings.REFGOV_INBOX_DIR)


def _domain_patterns() -> dict[str, list[str]]:
    return {name: load_domain(name).config.files.patterns for name in domain_names()}


def _matching(name: str, domains: dict[str, list[str]]) -> list[str]:
    return [d for d, patterns in domains.items() if any(fnmatch.fnmatch(name, pat) for pat in patterns)]


def _in_progress(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES)


def _signature(st: os.stat_result) -> str:
    """Size, times and inode (not the device number, which differs between hosts mounting the same share)."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _line(text: object) -> str:
    """One line of text, safe in a message (see ``shown``)."""
    return shown(" ".join(str(text).split()))


def _refusal(name: str, st: os.stat_result) -> str:
    """Why a non-folder entry is not read, or "" when it is a plain file."""
    if hostile_name(name):
        return "the file name contains control characters or bytes that are not UTF-8; not read"
    if not stat.S_ISREG(st.st_mode):
        return f"{kind_of(st.st_mode)}, not a regular file: only files directly in the inbox are read; not read"
    if st.st_nlink > 1:
        return f"a file with {st.st_nlink} hard links: copy it into the inbox instead of linking it; not read"
    return ""


# --- scanning ------------------------------------------------------------------------------------------------------


def _scan(inbox: Path, fd: int, domains: dict[str, list[str]]) -> list[Entry]:
    """Everything at the top of the inbox that the inbox acts on, in month order (then by name)."""
    entries = []
    with os.scandir(fd) as listing:
        names = sorted(e.name for e in listing)
    for name in names:
        if _in_progress(name):
            continue
        try:
            st = lstat(fd, name)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            if name not in (PROCESSED, REJECTED) and MONTH_FOLDER.fullmatch(name) and _month(name) is not None:
                entries.append(_month_folder(inbox, fd, name, domains))
            continue
        if reason := _refusal(name, st):
            entries.append(Entry(name, "hostile", reason=reason))
        elif matching := _matching(name, domains):
            entries.append(Entry(name, "file", month=month_of(name), files=[Candidate(name, inbox / name, st, matching)]))
        else:
            entries.append(Entry(name, "unmatched", month=month_of(name), reason="no domain's file patterns match the name"))
    return sorted(entries, key=lambda e: (e.month or date.max, e.name))


def _month(name: str) -> date | None:
    try:
        return parse_month(name)
    except ValueError:
        return None


def _month_folder(inbox: Path, fd: int, name: str, domains: dict[str, list[str]]) -> Entry:
    """A month folder: the files of its highest version folder that a domain matches."""
    month = _month(name)
    versions: dict[int, list[tuple[str, list[tuple[str, os.stat_result]]]]] = {}
    is_version = lambda folder: VERSION_FOLDER.fullmatch(folder) is not None  # noqa: E731
    for rel, folder_fd in walk_folders(fd, name, depth=FOLDER_DEPTH, limit=FOLDER_LIMIT, prune=is_version):
        if rel != name and (found := VERSION_FOLDER.fullmatch(rel.rsplit("/", 1)[-1])):
            with os.scandir(folder_fd) as listing:
                files = [(e.name, lstat(folder_fd, e.name)) for e in sorted(listing, key=lambda e: e.name)]
            versions.setdefault(int(found[1]), []).append((rel, files))
    folder = Entry(name, "unmatched", month=month, is_folder=True)
    if not versions:
        folder.reason = "a month folder without version folders (V1, V2, …); nothing in it is loaded"
        return folder
    number = max(versions)
    if len(versions[number]) > 1:
        folder.reason = f"several folders of version V{number} ({', '.join(shown(r) for r, _ in versions[number])}); " \
                        "nothing in it is loaded until only one is left"
        return folder
    [(version_rel, files)] = versions[number]
    folder.version = version_rel.rsplit("/", 1)[-1]
    folder.older = sorted((shown(r) for n, found in versions.items() if n != number for r, _ in found))
    for file_name, st in files:
        if _in_progress(file_name) or stat.S_ISDIR(st.st_mode):
            continue
        if reason := _refusal(file_name, st):
            folder.kind, folder.reason, folder.files = "hostile", f"{shown(version_rel)}/{shown(file_name)}: {reason}", []
            return folder
        if matching := _matching(file_name, domains):
            rel = f"{version_rel}/{file_name}"
            folder.files.append(Candidate(rel, inbox / rel, st, matching))
    if folder.files:
        folder.kind = "folder"
    else:
        names = ", ".join(shown(n) for n, st in files if stat.S_ISREG(st.st_mode)) or "no files"
        folder.reason = f"version {folder.version} holds no file a domain's patterns match ({names})"
    return folder


def waiting_files(*, inbox: Path | None = None) -> list[Path]:
    """Files in the inbox that some domain will process (settled or not yet), in month order."""
    inbox = inbox_dir(inbox)
    try:
        fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        return [c.path for e in _scan(inbox, fd, _domain_patterns()) if e.kind in ("file", "folder") for c in e.files]
    finally:
        os.close(fd)


# --- processing ----------------------------------------------------------------------------------------------------


def process_inbox(
    *, inbox: Path | None = None, config: LoadedConfig | None = None, degraded: bool = False, load: bool = True
) -> InboxResult:
    """Process every settled file once; only one inbox run at a time (a database lock, not a process flag).

    ``degraded``: the preload of the current window failed; the batches are marked so. ``load=False`` loads
    nothing: it only rejects what is never read, reports unmatched files and notes what is settling (the fact run
    does this while files wait for the preload)."""
    inbox = inbox_dir(inbox)
    result = InboxResult()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [INBOX_LOCK])
        if not cur.fetchone()[0]:
            result.busy = True
            return result
        try:
            InboxRun(inbox, config or load_config(), result, degraded=degraded, load=load).run()
        finally:
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", [INBOX_LOCK])
    return result


def _alert_key(kind: AlertKind, name: str) -> str:
    key = f"{kind.value}:{name}"
    if len(key) <= MAX_KEY:
        return key
    return f"{key[: MAX_KEY - 18]}…{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _subject(text: str) -> str:
    return text if len(text) <= 300 else text[:299] + "…"


class InboxRun:
    """One pass over the inbox, holding its lock (a later run that finds an attempt still marked as being processed
    knows that its worker is gone)."""

    def __init__(self, inbox: Path, config: LoadedConfig, result: InboxResult, *, degraded: bool, load: bool):
        self.inbox, self.config, self.result, self.degraded, self.load = inbox, config, result, degraded, load
        self.channel = alert_channel(config)
        self.settle = settings.REFGOV_INBOX_SETTLE_SECONDS
        self.now = timezone.now()
        self.records: dict[str, InboxFile] = {}
        self.folders: InboxFolders | None = None

    def run(self) -> None:
        refused_key = _alert_key(AlertKind.INBOX_REFUSED, str(self.inbox))
        try:
            self.folders = open_inbox(self.inbox)
        except InboxRefused as exc:
            self.result.refused = str(exc)
            logger.error("inbox %s refused: %s", self.inbox, exc)
            raise_alert(
                kind=AlertKind.INBOX_REFUSED, key=refused_key, channel=self.channel, text=_line(exc),
                subject=_subject(_("inbox %(inbox)s is not processed: %(reason)s") % {"inbox": self.inbox, "reason": _line(exc)}),
            )  # fmt: skip
            return
        if self.folders is None:
            return
        with self.folders:
            resolve_alerts(key=refused_key, channel=self.channel, resolution=_("the inbox folders are real folders again"))
            self.records = {r.path: r for r in InboxFile.objects.filter(inbox=str(self.inbox))}
            entries = _scan(self.inbox, self.folders.inbox, _domain_patterns())
            for entry in entries:
                try:
                    self.handle(entry)
                except Exception as exc:  # a fault of the inbox itself: this entry only
                    logger.exception("inbox: %s", shown(entry.name))
                    try:
                        self.reject(entry, [f"{shown(entry.name)}: unexpected error {type(exc).__name__}: {_line(exc)}"])
                    except Exception:
                        logger.exception("inbox: %s could not be rejected either", shown(entry.name))
            self.forget({e.name for e in entries})

    def handle(self, entry: Entry) -> None:
        if entry.kind == "hostile":
            self.reject(entry, [f"{shown(entry.name)}: {entry.reason}"])
            return
        if entry.kind == "unmatched":
            self.unmatched(entry)
            return
        known = self.records.get(entry.key)
        if known is not None and known.state == InboxState.UNMATCHED:
            self.resolve_unmatched(known)
        if known is not None and known.state == InboxState.STUCK:
            if all(self.unchanged(c) for c in entry.files):
                self.move_out(entry, known.outcome, known.message.splitlines(), alert=False)
                return
            self.resolve_stuck(entry, _("%(file)s changed; it is processed again") % {"file": entry.name})
            if entry.is_folder:
                known.delete()
                del self.records[entry.key]
        if any(self.unfinished(c) for c in entry.files):
            self.close_running(entry, UNFINISHED)
            self.reject(entry, [f"{shown(c.rel)}: {UNFINISHED}" for c in entry.files])
            return
        settled = [self.settled(c) for c in entry.files]
        if not all(settled):
            self.result.settling.append(entry.name)
            return
        if self.load:
            self.process(entry)

    # settling

    def record(self, path: str) -> InboxFile:
        found = self.records.get(path)
        if found is None:
            found = self.records[path] = InboxFile.objects.create(
                inbox=str(self.inbox), path=path, stable_since=self.now, first_seen=self.now
            )
        return found

    def unchanged(self, c: Candidate) -> bool:
        found = self.records.get(c.rel)
        return found is not None and found.signature == _signature(c.stat)

    def unfinished(self, c: Candidate) -> bool:
        found = self.records.get(c.rel)
        return found is not None and found.state == InboxState.PROCESSING and found.signature == _signature(c.stat)

    def settled(self, c: Candidate) -> bool:
        """Unchanged since a scan at least ``settle`` seconds ago, and its ctime that old (0: at first sight)."""
        found = self.record(c.rel)
        signature = _signature(c.stat)
        if found.signature != signature or found.state != InboxState.WAITING:
            found.signature, found.size_bytes, found.stable_since = signature, c.stat.st_size, self.now
            found.state, found.started_at, found.outcome, found.message = InboxState.WAITING, None, "", ""
            found.save()
            return self.settle <= 0
        if self.settle <= 0:
            return True
        stable = (self.now - found.stable_since).total_seconds()
        return stable >= self.settle and time.time() - c.stat.st_ctime >= self.settle

    # loading

    def process(self, entry: Entry) -> None:
        for c in entry.files:
            found = self.records[c.rel]
            found.state, found.started_at = InboxState.PROCESSING, timezone.now()
            found.save(update_fields=["state", "started_at"])  # committed before any work: a kill leaves it so
        errors, batches, alert = [], [], False
        for c in entry.files:
            try:
                current = os.lstat(c.path)
            except OSError as exc:
                current, problem = None, f"{shown(c.rel)}: gone while waiting ({_line(exc)})"
            else:
                problem = f"{shown(c.rel)}: changed or replaced since the inbox looked at it; not read"
            if current is None or _signature(current) != _signature(c.stat):
                errors.append(problem)
                alert = True
                continue
            file_errors, file_batches, unrecorded = self.load_file(c, entry)
            errors += file_errors
            batches += file_batches
            alert = alert or unrecorded
        self.move_out(entry, REJECTED if errors else PROCESSED, errors, batches=batches, alert=alert)

    def load_file(self, c: Candidate, entry: Entry) -> tuple[list[str], list[dict], bool]:
        """Every domain's batch of one file. Returns (errors, batches, whether an error is on no batch record)."""
        mark = FactBatch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        errors, batches, failed = [], [], []
        for domain in c.domains:
            try:
                outcome = process_fact_file(domain=domain, path=c.path, config=self.config, degraded=self.degraded)
                batches.append({"domain": domain, **outcome.summary()})
            except (FactFileError, FactLoadError, DatabaseError, psycopg.Error) as exc:
                errors.append(f"{domain}: {_line(exc)}")
                failed.append((domain, False))
            except Exception as exc:  # MemoryError, OSError, UnicodeError, a bug: this file is rejected, others go on
                logger.exception("inbox: %s, domain %s", shown(c.rel), domain)
                errors.append(f"{domain}: {shown(c.rel)}: unexpected error {type(exc).__name__}: {_line(exc)}")
                failed.append((domain, True))
        attempt = FactBatch.objects.filter(pk__gt=mark, file_path=str(c.path.resolve()))
        recorded = set(attempt.filter(status__in=[FactStatus.REJECTED, FactStatus.FAILED]).values_list("domain", flat=True))
        unrecorded = any(unexpected or domain not in recorded for domain, unexpected in failed)
        if failed:
            attempt.filter(status=FactStatus.RUNNING).update(
                status=FactStatus.FAILED, finished_at=timezone.now(), message="; ".join(errors)[:10_000]
            )
        if entry.note:
            attempt.update(message=Concat(Value(entry.note), F("message")))
            for batch in batches:
                batch["message"] = entry.note + (batch.get("message") or "")
                batch["version"] = entry.version
        return errors, batches, unrecorded

    def close_running(self, entry: Entry, message: str) -> None:
        """Batches an attempt that did not finish left ``running``."""
        for c in entry.files:
            FactBatch.objects.filter(file_path=str(c.path.resolve()), status=FactStatus.RUNNING).update(
                status=FactStatus.FAILED, finished_at=timezone.now(), message=message
            )

    # moving out

    def move_out(self, entry: Entry, outcome: str, errors: list[str], *, batches=(), alert: bool) -> None:
        """Move the entry to processed/ or rejected/ (with its .error.txt); if that fails, remember the outcome so
        that the entry is not processed again, and alert."""
        folders = self.folders
        destination = folders.processed if outcome == PROCESSED else folders.rejected
        try:
            target = move(folders.inbox, entry.name, destination)
            error_file = write_error(destination, target, "\n".join(errors) + "\n") if errors else None
        except OSError as exc:
            self.stuck(entry, outcome, errors, exc)
            return
        moved_to = str(self.inbox / outcome / shown(target))
        if entry.key in self.records and self.records[entry.key].state == InboxState.STUCK:
            self.resolve_stuck(entry, _("%(file)s was moved to %(folder)s/") % {"file": entry.name, "folder": outcome})
        for path in {c.rel for c in entry.files} | {entry.key}:
            if (found := self.records.pop(path, None)) is not None and found.pk:
                found.delete()
        if outcome == PROCESSED:
            self.result.processed.append({"file": entry.name, "moved_to": moved_to, "batches": list(batches), "version": entry.version})
            resolve_alerts(
                key=_alert_key(AlertKind.INBOX_REJECTED, entry.name), channel=self.channel,
                resolution=_("%(file)s was processed") % {"file": entry.name},
            )  # fmt: skip
            return
        self.result.rejected.append({"file": shown(entry.name), "moved_to": moved_to, "errors": errors, "version": entry.version})
        logger.error("inbox: %s rejected: %s", shown(entry.name), " | ".join(errors))
        if alert:
            raise_alert(
                kind=AlertKind.INBOX_REJECTED, key=_alert_key(AlertKind.INBOX_REJECTED, shown(entry.name)),
                channel=self.channel, text="\n".join(errors),
                subject=_subject(_("inbox: %(file)s rejected, moved to rejected/ with %(error_file)s: %(reason)s") % {
                    "file": shown(entry.name), "error_file": shown(error_file or ""), "reason": errors[0] if errors else "",
                }),
                data={"file": shown(entry.name), "moved_to": moved_to},
            )  # fmt: skip

    def reject(self, entry: Entry, errors: list[str]) -> None:
        self.move_out(entry, REJECTED, errors, alert=True)

    def stuck(self, entry: Entry, outcome: str, errors: list[str], exc: OSError) -> None:
        reason = _line(exc)
        logger.error("inbox: %s could not be moved to %s/: %s", shown(entry.name), outcome, reason)
        if entry.kind in ("file", "folder"):  # remembered, so that the next runs only try to move it
            found = self.record(entry.key)
            found.state, found.outcome, found.message = InboxState.STUCK, outcome, "\n".join(errors)
            found.save()
            for c in entry.files:
                if c.rel != found.path and (other := self.records.get(c.rel)) is not None:
                    other.state = InboxState.WAITING
                    other.save(update_fields=["state"])
        raise_alert(
            kind=AlertKind.INBOX_REFUSED, key=_alert_key(AlertKind.INBOX_REFUSED, shown(entry.name)), channel=self.channel,
            subject=_subject(_("inbox: %(file)s cannot be moved to %(folder)s/ (%(reason)s); it is not processed again") % {
                "file": shown(entry.name), "folder": outcome, "reason": reason,
            }),
            text="\n".join(errors), data={"file": shown(entry.name), "outcome": outcome},
        )  # fmt: skip

    def resolve_stuck(self, entry: Entry, resolution: str) -> None:
        resolve_alerts(key=_alert_key(AlertKind.INBOX_REFUSED, shown(entry.name)), channel=self.channel, resolution=resolution)

    # reporting

    def unmatched(self, entry: Entry) -> None:
        key = entry.key
        self.result.unmatched.append(entry.name)
        found = self.records.get(key)
        if found is not None and found.state == InboxState.UNMATCHED and found.message == entry.reason:
            return
        found = self.record(key)
        found.state, found.message, found.signature = InboxState.UNMATCHED, entry.reason, ""
        found.save()
        raise_alert(
            kind=AlertKind.INBOX_UNMATCHED, key=_alert_key(AlertKind.INBOX_UNMATCHED, key), channel=self.channel,
            subject=_subject(_("inbox: %(file)s waits, nothing processes it: %(reason)s") % {"file": key, "reason": entry.reason}),
            text=entry.reason, data={"file": key, "inbox": str(self.inbox)},
        )  # fmt: skip

    def resolve_unmatched(self, found: InboxFile, resolution: str | None = None) -> None:
        resolve_alerts(
            key=_alert_key(AlertKind.INBOX_UNMATCHED, found.path), channel=self.channel,
            resolution=resolution or _("%(file)s is now processed") % {"file": found.path},
        )  # fmt: skip
        found.state, found.message = InboxState.WAITING, ""
        found.save(update_fields=["state", "message"])

    def forget(self, present: set[str]) -> None:
        """Records of entries no longer in the inbox (taken away by an operator, or moved out)."""
        for path, found in list(self.records.items()):
            if path.split("/", 1)[0] in present:
                continue
            if found.state == InboxState.UNMATCHED:
                resolve_alerts(
                    key=_alert_key(AlertKind.INBOX_UNMATCHED, path), channel=self.channel,
                    resolution=_("%(file)s is no longer in the inbox") % {"file": path},
                )  # fmt: skip
            if found.state == InboxState.PROCESSING:
                FactBatch.objects.filter(file_path=str((self.inbox / path).resolve()), status=FactStatus.RUNNING).update(
                    status=FactStatus.FAILED, finished_at=timezone.now(), message=UNFINISHED
                )
            found.delete()
            del self.records[path]
