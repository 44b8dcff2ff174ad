"""The fact inbox: files dropped into REFGOV_INBOX_DIR are processed by every domain whose patterns match them,
in month order, then moved to ``processed/`` or, with the reasons, to ``rejected/``."""

from __future__ import annotations

import fnmatch
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

from pipeline.config import domain_names, load_domain
from pipeline.config.loader import LoadedConfig
from pipeline.facts.readers import FactFileError, parse_month
from pipeline.facts.service import FactLoadError, process_fact_file

logger = logging.getLogger("refgov.facts")
MONTH_IN_NAME = re.compile(r"(\d{4}年\d{1,2}月|\d{4}[-_.]?\d{2})")
INBOX_LOCK = "refgov.facts.inbox"


@dataclass
class InboxResult:
    processed: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    busy: bool = False

    def summary(self) -> dict:
        return {"processed": self.processed, "rejected": self.rejected, "unmatched": self.unmatched, "busy": self.busy}


def month_of(name: str) -> date | None:
    """The month a file name carries (202411, 2024-11, 2024年11月), for processing files in period order."""
    for candidate in MONTH_IN_NAME.findall(name):
        try:
            return parse_month(candidate.replace("_", "-").replace(".", "-"))
        except ValueError:
            continue
    return None


def _destination(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / name, 1
    while target.exists():
        target, n = folder / f"{Path(name).stem}.{n}{Path(name).suffix}", n + 1
    return target


def inbox_dir(inbox: Path | None = None) -> Path:
    return Path(inbox or settings.REFGOV_INBOX_DIR)


def _domain_patterns() -> dict[str, list[str]]:
    return {name: load_domain(name).config.files.patterns for name in domain_names()}


def _matching(name: str, domains: dict[str, list[str]]) -> list[str]:
    return [d for d, patterns in domains.items() if any(fnmatch.fnmatch(name, pat) for pat in patterns)]


def _inbox_files(inbox: Path) -> list[Path]:
    """The files of the inbox in month order (then by name). Sub-folders and hidden files are not files to process;
    a file changed in the last REFGOV_INBOX_SETTLE_SECONDS may still be being copied and waits for the next run."""
    if not inbox.is_dir():
        return []
    settled = time.time() - settings.REFGOV_INBOX_SETTLE_SECONDS
    files = (p for p in inbox.glob("*") if p.is_file() and not p.name.startswith(".") and p.stat().st_mtime <= settled)
    return sorted(files, key=lambda p: (month_of(p.name) or date.max, p.name))


def waiting_files(*, inbox: Path | None = None) -> list[Path]:
    """Files in the inbox that some domain will process, in month order."""
    domains = _domain_patterns()
    return [p for p in _inbox_files(inbox_dir(inbox)) if _matching(p.name, domains)]


def process_inbox(
    *, inbox: Path | None = None, config: LoadedConfig | None = None, degraded: bool = False
) -> InboxResult:
    """Process every waiting file once; only one inbox run at a time (a database lock, not a process flag).

    ``degraded``: the preload of the current window failed; the batches are marked so."""
    inbox = inbox_dir(inbox)
    result = InboxResult()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [INBOX_LOCK])
        if not cur.fetchone()[0]:
            result.busy = True
            return result
        try:
            _process(inbox, config, result, degraded=degraded)
        finally:
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", [INBOX_LOCK])
    return result


def _process(inbox: Path, config: LoadedConfig | None, result: InboxResult, *, degraded: bool) -> None:
    domains = _domain_patterns()
    for path in _inbox_files(inbox):
        matching = _matching(path.name, domains)
        if not matching:
            result.unmatched.append(path.name)
            continue
        errors, batches = [], []
        for domain in matching:
            try:
                outcome = process_fact_file(domain=domain, path=path, config=config, degraded=degraded)
                batches.append({"domain": domain, **outcome.summary()})
            except (FactFileError, FactLoadError, DatabaseError) as exc:
                errors.append(f"{domain}: {exc}")
        if errors:
            target = _destination(inbox / "rejected", path.name)
            shutil.move(path, target)
            target.with_name(target.name + ".error.txt").write_text("\n".join(errors) + "\n", encoding="utf-8")
            result.rejected.append({"file": path.name, "moved_to": str(target), "errors": errors})
            logger.error("inbox: %s rejected: %s", path.name, " | ".join(errors))
        else:
            target = _destination(inbox / "processed", path.name)
            shutil.move(path, target)
            result.processed.append({"file": path.name, "moved_to": str(target), "batches": batches})
