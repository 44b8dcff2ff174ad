"""The fact inbox: files dropped into REFGOV_INBOX_DIR are processed by every domain whose patterns match them,
in month order, then moved to ``processed/`` or, with the reasons in ``<name>.error.txt``, to ``rejected/``.

What the inbox takes (``inbox_scan``):

- regular files directly in the inbox (never through a link: links, pipes and devices are moved to ``rejected/``
  unread; a name with control characters or bytes that are not UTF-8 is rejected too);
- month folders ``YYYYMM/`` holding version folders (``202411/收集数据/数据采集/V1``, ``V2`` …): the highest version
  is loaded, and the whole month folder, older versions included, then moves to ``processed/`` (or ``rejected/``);
- a file only once it is *settled*: two scans at least REFGOV_INBOX_SETTLE_SECONDS apart saw the same size, times and
  inode, and its ctime is that old (an mtime alone proves nothing: ``cp -p``, ``rsync -t`` and SMB keep old ones).
  Names starting with ``.`` or ending with ``.part``, ``.partial``, ``.tmp`` or ``.filepart`` are copies in progress
  and are not looked at: copy under such a name, then rename.

Whatever goes wrong with one file (a killed attempt included) rejects that file alone, once; the other files go on.
What the inbox saw is kept in :class:`pipeline.models.InboxFile`: the signature of each file at the previous scan,
files being processed (marked before the work starts; one still marked when the next run holds the inbox lock was
killed), files nothing matches, and files processed but not movable out of the inbox."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.translation import gettext as _

from pipeline.alerts import alert_channel, raise_alert, resolve_alerts
from pipeline.config import load_config
from pipeline.config.loader import LoadedConfig
from pipeline.facts.inbox_fs import InboxFolders, InboxRefused, Outcome, move, open_inbox, shown, write_error
from pipeline.facts.inbox_scan import Candidate, Entry, EntryKind, domain_patterns, month_of, scan, signature
from pipeline.facts.readers import FactFileError
from pipeline.facts.service import FactLoadError, FactOutcome, FactResult, process_fact_file
from pipeline.models import AlertKind, FactBatch, FactStatus, InboxFile, InboxState
from refgov.db.locks import session_lock

__all__ = [
    "INBOX_LOCK",
    "UNFINISHED",
    "InboxBatch",
    "InboxResult",
    "Processed",
    "Rejected",
    "month_of",
    "process_inbox",
    "waiting_files",
]

logger = logging.getLogger("refgov.facts")
INBOX_LOCK = "refgov.facts.inbox"
UNFINISHED = "the previous attempt did not finish (killed, out of memory?); not retried"
MAX_KEY, MAX_SUBJECT = 200, 300  # Alert.key, Alert.subject


@dataclass(frozen=True)
class InboxBatch:
    """One domain's batch of an inbox file (``note``, ``version``: of a month folder, which version was loaded)."""

    domain: str
    result: FactResult
    note: str = ""
    version: str = ""

    @property
    def outcome(self) -> FactOutcome:
        return self.result.outcome

    @property
    def batch_id(self) -> int | None:
        return self.result.batch_id

    @property
    def file(self) -> str:
        return (self.result.skipped_as or self.result.batch).file_path

    def summary(self) -> dict[str, Any]:
        summary = {"domain": self.domain, **self.result.summary()}
        if self.note:
            summary["message"], summary["version"] = self.note + (summary.get("message") or ""), self.version
        return summary


@dataclass(frozen=True)
class Processed:
    """An entry moved to ``processed/`` with the batches of its file(s)."""

    file: str
    moved_to: str
    batches: list[InboxBatch]
    version: str

    def summary(self) -> dict[str, Any]:
        batches = [b.summary() for b in self.batches]
        return {"file": self.file, "moved_to": self.moved_to, "batches": batches, "version": self.version}


@dataclass(frozen=True)
class Rejected:
    """An entry moved to ``rejected/``, with the reasons written next to it in ``<name>.error.txt``."""

    file: str
    moved_to: str
    errors: list[str]
    version: str

    def summary(self) -> dict[str, Any]:
        return {"file": self.file, "moved_to": self.moved_to, "errors": self.errors, "version": self.version}


@dataclass
class InboxResult:
    processed: list[Processed] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    settling: list[str] = field(default_factory=list)
    refused: str = ""
    busy: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "processed": [p.summary() for p in self.processed],
            "rejected": [r.summary() for r in self.rejected],
            "unmatched": self.unmatched,
            "settling": self.settling,
            "refused": self.refused,
            "busy": self.busy,
        }


def inbox_dir(inbox: Path | None = None) -> Path:
    return Path(inbox or settings.REFGOV_INBOX_DIR)


def waiting_files(*, inbox: Path | None = None) -> list[Path]:
    """Files in the inbox that some domain will process (settled or not yet), in month order."""
    inbox = inbox_dir(inbox)
    try:
        fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        return [c.path for e in scan(inbox, fd, domain_patterns()) if e.kind.is_read for c in e.files]
    finally:
        os.close(fd)


def process_inbox(
    *, inbox: Path | None = None, config: LoadedConfig | None = None, degraded: bool = False, load: bool = True
) -> InboxResult:
    """Process every settled file once; only one inbox run at a time (a database lock, not a process flag).

    ``degraded``: the preload of the current window failed; the batches are marked so. ``load=False`` loads
    nothing: it only rejects what is never read, reports unmatched files and notes what is settling (the fact run
    does this while files wait for the preload)."""
    inbox = inbox_dir(inbox)
    result = InboxResult()
    with session_lock(INBOX_LOCK) as taken:
        if not taken:
            result.busy = True
            return result
        InboxRun(inbox, config or load_config(), result, degraded=degraded, load=load).run()
    return result


def _line(text: object) -> str:
    """One line of text, safe in a message (see ``shown``)."""
    return shown(" ".join(str(text).split()))


def _alert_key(kind: AlertKind, name: str) -> str:
    key = f"{kind.value}:{name}"
    if len(key) <= MAX_KEY:
        return key
    return f"{key[: MAX_KEY - 18]}…{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _subject(text: str) -> str:
    return text if len(text) <= MAX_SUBJECT else text[: MAX_SUBJECT - 1] + "…"


def _unexpected(exc: BaseException) -> str:
    return f"unexpected error {type(exc).__name__}: {_line(exc)}"


class InboxRun:
    """One pass over the inbox, holding its lock."""

    def __init__(self, inbox: Path, config: LoadedConfig, result: InboxResult, *, degraded: bool, load: bool) -> None:
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
            subject = _("inbox %(inbox)s is not processed: %(reason)s") % {"inbox": self.inbox, "reason": _line(exc)}
            raise_alert(
                kind=AlertKind.INBOX_REFUSED,
                key=refused_key,
                channel=self.channel,
                subject=_subject(subject),
                text=_line(exc),
            )
            return
        if self.folders is None:  # no inbox (yet)
            return
        with self.folders:
            resolution = _("the inbox folders are real folders again")
            resolve_alerts(key=refused_key, channel=self.channel, resolution=resolution)
            self.records = {r.path: r for r in InboxFile.objects.filter(inbox=str(self.inbox))}
            entries = scan(self.inbox, self.folders.inbox, domain_patterns())
            for entry in entries:
                try:
                    self.handle(entry)
                except Exception as exc:  # a fault of the inbox itself: this entry only
                    logger.exception("inbox: %s", shown(entry.name))
                    error = f"{shown(entry.name)}: {_unexpected(exc)}"
                    try:
                        self.reject(entry, [error])
                    except Exception:
                        logger.exception("inbox: %s could not be rejected either", shown(entry.name))
            self.forget({e.name for e in entries})

    def handle(self, entry: Entry) -> None:
        if entry.kind == EntryKind.HOSTILE:
            self.reject(entry, [f"{shown(entry.name)}: {entry.reason}"])
            return
        if entry.kind == EntryKind.UNMATCHED:
            self.unmatched(entry)
            return
        known = self.records.get(entry.key)
        if known is not None and known.state == InboxState.UNMATCHED:
            self.resolve_unmatched(known)
        if known is not None and known.state == InboxState.STUCK:
            if all(self.unchanged(c) for c in entry.files):  # processed before: only move it
                self.move_out(entry, Outcome(known.outcome), known.message.splitlines(), alert=False)
                return
            self.resolve_stuck(entry, _("%(file)s changed; it is processed again") % {"file": entry.name})
            if entry.is_folder:
                known.delete()
                del self.records[entry.key]
        if any(self.unfinished(c) for c in entry.files):
            self.close_running(entry)
            self.reject(entry, [f"{shown(c.rel)}: {UNFINISHED}" for c in entry.files])
            return
        if not all([self.settled(c) for c in entry.files]):  # every file's record is updated
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
        return found is not None and found.signature == signature(c.stat)

    def unfinished(self, c: Candidate) -> bool:
        return self.unchanged(c) and self.records[c.rel].state == InboxState.PROCESSING

    def settled(self, c: Candidate) -> bool:
        """Unchanged since a scan at least ``settle`` seconds ago, and its ctime that old (settle 0: at first sight)."""
        found = self.record(c.rel)
        current = signature(c.stat)
        if found.signature != current or found.state != InboxState.WAITING:
            found.signature, found.size_bytes, found.stable_since = current, c.stat.st_size, self.now
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
        errors: list[str] = []
        batches: list[InboxBatch] = []
        alert = False
        for c in entry.files:
            try:
                current = signature(os.lstat(c.path))
            except OSError as exc:
                current, problem = None, f"{shown(c.rel)}: gone while waiting ({_line(exc)})"
            else:
                problem = f"{shown(c.rel)}: changed or replaced since the inbox looked at it; not read"
            if current != signature(c.stat):
                errors.append(problem)
                alert = True
                continue
            file_errors, file_batches, unrecorded = self.load_file(c, entry)
            errors += file_errors
            batches += file_batches
            alert = alert or unrecorded
        self.move_out(entry, Outcome.REJECTED if errors else Outcome.PROCESSED, errors, batches=batches, alert=alert)

    def load_file(self, c: Candidate, entry: Entry) -> tuple[list[str], list[InboxBatch], bool]:
        """Every domain's batch of one file. Returns (errors, batches, whether an error is on no batch's record)."""
        mark = FactBatch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        errors: list[str] = []
        batches: list[InboxBatch] = []
        failed: list[tuple[str, bool]] = []
        for domain in c.domains:
            try:
                result = process_fact_file(domain=domain, path=c.path, config=self.config, degraded=self.degraded)
                batches.append(InboxBatch(domain=domain, result=result, note=entry.note, version=entry.version))
            except (FactFileError, FactLoadError, DatabaseError, psycopg.Error) as exc:
                errors.append(f"{domain}: {_line(exc)}")
                failed.append((domain, False))
            except Exception as exc:  # MemoryError, OSError, UnicodeError, a bug: this file is rejected, others go on
                logger.exception("inbox: %s, domain %s", shown(c.rel), domain)
                errors.append(f"{domain}: {shown(c.rel)}: {_unexpected(exc)}")
                failed.append((domain, True))
        attempt = FactBatch.objects.filter(pk__gt=mark, file_path=str(c.path.resolve()))
        refused = attempt.filter(status__in=[FactStatus.REJECTED, FactStatus.FAILED])
        recorded = set(refused.values_list("domain", flat=True))
        unrecorded = any(unexpected or domain not in recorded for domain, unexpected in failed)
        if failed:  # an exception the service did not record leaves its batch running
            attempt.filter(status=FactStatus.RUNNING).update(
                status=FactStatus.FAILED, finished_at=timezone.now(), message="; ".join(errors)[:10_000]
            )
        if entry.note:
            attempt.update(message=Concat(Value(entry.note), F("message")))
        return errors, batches, unrecorded

    def close_running(self, entry: Entry) -> None:
        """The batches an attempt that did not finish left ``running``."""
        for c in entry.files:
            FactBatch.objects.filter(file_path=str(c.path.resolve()), status=FactStatus.RUNNING).update(
                status=FactStatus.FAILED, finished_at=timezone.now(), message=UNFINISHED
            )

    # moving out

    def move_out(
        self,
        entry: Entry,
        outcome: Outcome,
        errors: list[str],
        *,
        batches: Sequence[InboxBatch] = (),
        alert: bool,
    ) -> None:
        """Move the entry to processed/ or rejected/ (with its .error.txt); if that fails, remember the outcome so
        that the entry is not processed again, and alert."""
        folders = self._folders()
        destination = folders.processed if outcome == Outcome.PROCESSED else folders.rejected
        try:
            target = move(folders.inbox, entry.name, destination)
            error_file = write_error(destination, target, "\n".join(errors) + "\n") if errors else ""
        except OSError as exc:
            self.stuck(entry, outcome, errors, exc)
            return
        name, moved_to = shown(entry.name), str(self.inbox / outcome / shown(target))
        if entry.key in self.records and self.records[entry.key].state == InboxState.STUCK:
            self.resolve_stuck(entry, _("%(file)s was moved to %(folder)s/") % {"file": name, "folder": outcome})
        for path in {c.rel for c in entry.files} | {entry.key}:
            if (found := self.records.pop(path, None)) is not None:
                found.delete()
        if outcome == Outcome.PROCESSED:
            self.result.processed.append(
                Processed(file=name, moved_to=moved_to, batches=list(batches), version=entry.version)
            )
            resolve_alerts(
                key=_alert_key(AlertKind.INBOX_REJECTED, name),
                channel=self.channel,
                resolution=_("%(file)s was processed") % {"file": name},
            )
            return
        self.result.rejected.append(Rejected(file=name, moved_to=moved_to, errors=errors, version=entry.version))
        logger.error("inbox: %s rejected: %s", name, " | ".join(errors))
        if alert:
            subject = _("inbox: %(file)s rejected, moved to rejected/ with %(error_file)s: %(reason)s") % {
                "file": name,
                "error_file": shown(error_file),
                "reason": errors[0] if errors else "",
            }
            raise_alert(
                kind=AlertKind.INBOX_REJECTED,
                key=_alert_key(AlertKind.INBOX_REJECTED, name),
                channel=self.channel,
                subject=_subject(subject),
                text="\n".join(errors),
                data={"file": name, "moved_to": moved_to},
            )

    def reject(self, entry: Entry, errors: list[str]) -> None:
        self.move_out(entry, Outcome.REJECTED, errors, alert=True)

    def _folders(self) -> InboxFolders:
        if self.folders is None:
            raise RuntimeError("the inbox folders are not open")
        return self.folders

    def stuck(self, entry: Entry, outcome: Outcome, errors: list[str], exc: OSError) -> None:
        name, reason = shown(entry.name), _line(exc)
        logger.error("inbox: %s could not be moved to %s/: %s", name, outcome, reason)
        if entry.kind.is_read:  # remembered, so that the next runs only try to move it
            found = self.record(entry.key)
            found.state, found.outcome, found.message = InboxState.STUCK, outcome, "\n".join(errors)
            found.save()
            for c in entry.files:
                if c.rel != found.path and (other := self.records.get(c.rel)) is not None:
                    other.state = InboxState.WAITING
                    other.save(update_fields=["state"])
        subject = _("inbox: %(file)s cannot be moved to %(folder)s/ (%(reason)s); it is not processed again") % {
            "file": name,
            "folder": outcome,
            "reason": reason,
        }
        raise_alert(
            kind=AlertKind.INBOX_REFUSED,
            key=_alert_key(AlertKind.INBOX_REFUSED, name),
            channel=self.channel,
            subject=_subject(subject),
            text="\n".join(errors),
            data={"file": name, "outcome": outcome},
        )

    def resolve_stuck(self, entry: Entry, resolution: str) -> None:
        key = _alert_key(AlertKind.INBOX_REFUSED, shown(entry.name))
        resolve_alerts(key=key, channel=self.channel, resolution=resolution)

    # reporting

    def unmatched(self, entry: Entry) -> None:
        """Alert once per file (or month folder) nothing processes; it stays in the inbox, listed on the run history."""
        self.result.unmatched.append(entry.name)
        found = self.records.get(entry.key)
        if found is not None and found.state == InboxState.UNMATCHED and found.message == entry.reason:
            return
        found = self.record(entry.key)
        found.state, found.message, found.signature = InboxState.UNMATCHED, entry.reason, ""
        found.save()
        subject = _("inbox: %(file)s waits, nothing processes it: %(reason)s") % {
            "file": entry.key,
            "reason": entry.reason,
        }
        raise_alert(
            kind=AlertKind.INBOX_UNMATCHED,
            key=_alert_key(AlertKind.INBOX_UNMATCHED, entry.key),
            channel=self.channel,
            subject=_subject(subject),
            text=entry.reason,
            data={"file": entry.key, "inbox": str(self.inbox)},
        )

    def resolve_unmatched(self, found: InboxFile) -> None:
        resolve_alerts(
            key=_alert_key(AlertKind.INBOX_UNMATCHED, found.path),
            channel=self.channel,
            resolution=_("%(file)s is now processed") % {"file": found.path},
        )
        found.state, found.message = InboxState.WAITING, ""
        found.save(update_fields=["state", "message"])

    def forget(self, present: set[str]) -> None:
        """Records of entries no longer in the inbox (taken away by an operator)."""
        for path, found in list(self.records.items()):
            if path.split("/", 1)[0] in present:
                continue
            if found.state == InboxState.UNMATCHED:
                resolve_alerts(
                    key=_alert_key(AlertKind.INBOX_UNMATCHED, path),
                    channel=self.channel,
                    resolution=_("%(file)s is no longer in the inbox") % {"file": path},
                )
            if found.state == InboxState.PROCESSING:
                file_path = str((self.inbox / path).resolve())
                FactBatch.objects.filter(file_path=file_path, status=FactStatus.RUNNING).update(
                    status=FactStatus.FAILED, finished_at=timezone.now(), message=UNFINISHED
                )
            found.delete()
            del self.records[path]
