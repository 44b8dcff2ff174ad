"""Fact files uploaded in the admin (上传事实文件): kept, previewed, then loaded by a q task.

- ``store_upload`` checks the name (control characters, file type) and the size (REFGOV_UPLOAD_MAX_BYTES), picks the
  domains (the one chosen, or every domain whose ``files.patterns`` match the name, as the inbox does) and keeps the
  file as ``REFGOV_UPLOADS_DIR/<upload id>-<token>/<name>``, the path its batches record;
- ``preview_upload`` runs each domain's load as a dry run (rolled back: nothing is written) and keeps what it would
  do on the upload: rows, months, the scope it replaces and how many rows that holds today, new keys with their rows,
  or the error naming file, sheet, row and column;
- ``confirm_upload`` queues a clean preview once; ``load_upload`` (the q task) loads each domain in its own
  transaction as ``process_facts`` does, and writes its progress on a connection of its own, so that the upload page
  sees it while the load's transaction is open.

Everything about the file's content — zip bombs and rows per sheet (REFGOV_XLSX_*, REFGOV_FACT_MAX_ROWS_PER_SHEET), a
CSV cut off, bad months and numbers — is checked by the same readers as the inbox and ``process_facts``."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, connection
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg import sql

from pipeline.config import ConfigError, domain_names, load_domain
from pipeline.facts.file_kinds import EXCEL_SUFFIXES, TEXT_SUFFIXES
from pipeline.facts.inbox_fs import hostile_name, shown
from pipeline.facts.inbox_scan import domain_patterns, matching
from pipeline.facts.readers import FactFileError
from pipeline.facts.references import DerivedTable
from pipeline.facts.scope import rows_in_scope
from pipeline.facts.service import FactLoadError, FactOutcome, FactResult, file_checksum, process_fact_file
from pipeline.models import FactBatch, FactKind, FactStatus, FactUpload, UploadState
from refgov.db.sql import column_name, ident
from refgov.errors import first_line

logger = logging.getLogger("refgov.facts")

NAME_MAX_BYTES = 200  # file systems allow 255 bytes; a Chinese character takes 3
UNSAFE_CHARACTERS = re.compile(r'[<>:"/\\|?*]')
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
KEYS_SHOWN, ROWS_SHOWN = 50, 10
UNFINISHED = "the previous attempt to load this upload did not finish (killed, out of memory?); not retried"


class UploadRefused(Exception):
    """The upload is not kept or not loaded; the message says why, for the steward."""


def upload_limit() -> int:
    return int(settings.REFGOV_UPLOAD_MAX_BYTES)


def uploads_dir() -> Path:
    return Path(settings.REFGOV_UPLOADS_DIR)


def _mb(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MB" if size >= 1 << 20 else f"{size:,} B"


def too_large(*, name: str, size: int | None = None) -> str:
    limit = _mb(upload_limit())
    if size is None:
        return _(
            "%(name)s is larger than the upload limit of %(limit)s (REFGOV_UPLOAD_MAX_BYTES); nothing was kept"
        ) % {
            "name": name,
            "limit": limit,
        }
    return _(
        "%(name)s (%(size)s) is larger than the upload limit of %(limit)s (REFGOV_UPLOAD_MAX_BYTES); nothing was kept"
    ) % {"name": name, "size": _mb(size), "limit": limit}


def safe_name(name: str) -> str:
    """The name an uploaded file is kept (and recorded) under: its last path component, without characters file
    systems or shells treat specially, a leading dot or more than NAME_MAX_BYTES bytes. A name with control or
    format characters (line breaks, bidi overrides) is refused, as the inbox refuses it."""
    base = unicodedata.normalize("NFC", re.split(r"[/\\]", name)[-1])
    if hostile_name(base):
        raise UploadRefused(
            _("the file name %(name)s contains control characters; rename the file and upload it again")
            % {"name": shown(base)}
        )
    base = UNSAFE_CHARACTERS.sub("_", base).strip().lstrip(".").strip()
    stem, suffix = os.path.splitext(base)
    if suffix.lower() not in EXCEL_SUFFIXES | TEXT_SUFFIXES:
        raise UploadRefused(
            _("%(name)s: unsupported file type %(suffix)s; upload an .xlsx, .xlsm, .csv or .txt file")
            % {"name": base or shown(name), "suffix": suffix or _("(none)")}
        )
    if not stem.strip():
        raise UploadRefused(_("%(name)s: the file has no name") % {"name": base})
    while len((stem + suffix).encode()) > NAME_MAX_BYTES:
        stem = stem[:-1]
    return stem.rstrip() + suffix


def detect_domains(name: str) -> list[str]:
    """Every domain whose file patterns match the name (the monthly workbook matches both), as in the inbox."""
    return matching(name, domain_patterns())


def _domains_for(name: str, domain: str | None) -> list[str]:
    if domain:
        if domain not in domain_names():
            raise UploadRefused(_("unknown domain %(domain)s") % {"domain": domain})
        return [domain]
    found = detect_domains(name)
    if not found:
        patterns = "; ".join(f"{d}: {', '.join(p)}" for d, p in domain_patterns().items())
        raise UploadRefused(
            _("%(name)s: no domain's file patterns match the name (%(patterns)s); choose the domain")
            % {"name": name, "patterns": patterns}
        )
    return found


def store_upload(*, name: str, chunks: Iterable[bytes], size: int, domain: str | None, user: User | None) -> FactUpload:
    """Keep an uploaded file with its upload record (not yet previewed). Raises UploadRefused; keeps nothing then."""
    if size > upload_limit():
        raise UploadRefused(too_large(name=shown(name), size=size))
    name = safe_name(name)
    domains = _domains_for(name, domain)
    root = uploads_dir()
    root.mkdir(parents=True, exist_ok=True)
    upload = FactUpload.objects.create(
        file_name=name,
        domains=domains,
        domains_detected=not domain,
        uploaded_by=user,
    )
    folder = root / f"{upload.pk}-{secrets.token_hex(4)}"  # a database restored from a backup reuses ids
    try:
        folder.mkdir(mode=0o750)
        path = folder / name
        upload.checksum, upload.size_bytes = _write(path, chunks, name=name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        upload.delete()
        raise
    upload.stored_path = str(path.resolve())  # what its batches record as their file path
    upload.save(update_fields=["stored_path", "checksum", "size_bytes"])
    return upload


def _write(path: Path, chunks: Iterable[bytes], *, name: str) -> tuple[str, int]:
    digest, written, limit = hashlib.sha256(), 0, upload_limit()
    with os.fdopen(os.open(path, NEW_FILE_FLAGS, 0o640), "wb") as fh:
        for chunk in chunks:
            written += len(chunk)
            if written > limit:
                raise UploadRefused(too_large(name=name))
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest(), written


def stored_file(upload: FactUpload) -> Path:
    """The kept file of an upload: a regular file (not a link) inside REFGOV_UPLOADS_DIR, named as recorded."""
    path = Path(upload.stored_path)
    root = uploads_dir().resolve()
    if not upload.stored_path or path.parent.parent != root or path.name != upload.file_name:
        raise UploadRefused(
            _("the file of upload #%(id)d is not in the uploads folder %(root)s (REFGOV_UPLOADS_DIR)")
            % {"id": upload.pk, "root": root}
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise UploadRefused(
            _("the file of upload #%(id)d is gone: %(path)s") % {"id": upload.pk, "path": path}
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise UploadRefused(_("the file of upload #%(id)d is not a regular file") % {"id": upload.pk})
    return path


def open_stored(upload: FactUpload) -> Any:
    """The kept file opened for reading (never through a link)."""
    fd = os.open(stored_file(upload), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


# preview


def preview_upload(*, upload: FactUpload) -> FactUpload:
    """A dry run of every domain of the upload (nothing written); the upload is then ``previewed`` or ``refused``."""
    path = stored_file(upload)
    entries = [_preview_domain(domain, path, upload) for domain in upload.domains]
    upload.preview = {"domains": entries}
    upload.state = UploadState.REFUSED if any("error" in e for e in entries) else UploadState.PREVIEWED
    upload.save(update_fields=["preview", "state"])
    return upload


def _preview_domain(domain: str, path: Path, upload: FactUpload) -> dict[str, Any]:
    try:
        result = process_fact_file(domain=domain, path=path, dry_run=True)
        config = load_domain(domain).config
        scope = rows_in_scope(fact_table_name=config.fact_table, parts=result.scope)
    except (FactFileError, FactLoadError, ConfigError) as exc:
        return {"domain": domain, "error": str(exc)}
    except (DatabaseError, psycopg.Error) as exc:
        return {"domain": domain, "error": first_line(exc)}
    except Exception as exc:  # a bug or an odd file: shown as this domain's error, the page still answers
        logger.exception("upload #%s preview, domain %s", upload.pk, domain)
        return {"domain": domain, "error": f"unexpected error {type(exc).__name__}: {first_line(exc)}"}
    summary = result.summary()
    return {
        "domain": domain,
        "fact_table": config.fact_table,
        "sheet": summary["sheet"],
        "rows": summary["rows_read"],
        "months": summary["months"],
        "replaced": summary["rows_replaced"],
        "scope_columns": list(config.replace_scope),
        "scope": [part.summary() for part in scope],
        "new_keys": {table: _new_keys(d) for table, d in result.tables.items() if d.inserted},
        "filled": {table: len(d.filled) for table, d in result.tables.items() if d.filled},
        "quarantined": summary["rows_quarantined"],
        "unmapped": summary["unmapped"],
        "loaded_before": _loaded_before(domain, upload.checksum, summary["sheet"] or ""),
    }


def _new_keys(derived: DerivedTable) -> dict[str, Any]:
    inserted = set(derived.inserted)
    found = [u for u in derived.unknown if u.key in inserted]
    shown_keys = [{"key": u.key, "rows": u.rows[:ROWS_SHOWN], "fact_rows": u.fact_rows} for u in found[:KEYS_SHOWN]]
    return {"count": len(inserted), "keys": shown_keys}


def _loaded_before(domain: str, checksum: str, sheet: str) -> int | None:
    """The latest batch that loaded the same content (the load skips the file while the fact table holds it all)."""
    return (
        FactBatch.objects.filter(
            domain=domain, checksum=checksum, sheet=sheet, status=FactStatus.LOADED, kind=FactKind.FACTS
        )
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )


# confirm and load


def confirm_upload(*, upload_id: int, user: User | None) -> bool:
    """Queue a clean preview for loading; False when it is not (or no longer) awaiting confirmation."""
    confirmed = FactUpload.objects.filter(pk=upload_id, state=UploadState.PREVIEWED).update(
        state=UploadState.QUEUED,
        confirmed_by=user,
        confirmed_at=timezone.now(),
        progress=0,
    )
    return confirmed == 1


def load_upload(*, upload_id: int) -> FactUpload:
    """Load a queued upload, each domain in its own transaction (as ``process_facts``); one attempt only.

    Returns the upload ``loaded`` or ``failed`` (a domain's error does not stop the others, as in the inbox);
    raises UploadRefused when it was not queued."""
    claimed = FactUpload.objects.filter(pk=upload_id, state=UploadState.QUEUED).update(
        state=UploadState.RUNNING, progress=0
    )
    upload = FactUpload.objects.get(pk=upload_id)
    if not claimed:
        if upload.state == UploadState.RUNNING:  # a retry of a task whose worker died
            _finish(upload, UploadState.FAILED, UNFINISHED)
            raise UploadRefused(f"upload #{upload_id}: {UNFINISHED}")
        raise UploadRefused(f"upload #{upload_id} is {upload.state}, not queued")
    try:
        path = stored_file(upload)
        if file_checksum(path)[0] != upload.checksum:
            raise UploadRefused(f"upload #{upload_id}: the kept file changed since the preview; not loaded")
    except UploadRefused as exc:
        _finish(upload, UploadState.FAILED, str(exc))
        raise
    rows = {e["domain"]: e.get("rows") or 0 for e in upload.preview.get("domains", [])}
    failed = False
    for index, domain in enumerate(upload.domains):
        with UploadProgress(
            upload.pk, domain=domain, index=index, count=len(upload.domains), rows=rows.get(domain, 0)
        ) as progress:
            entry = _load_domain(upload, domain, path, progress)
        failed = failed or entry["status"] not in (FactOutcome.LOADED, FactOutcome.SKIPPED)
        upload.results = [*upload.results, entry]
        upload.save(update_fields=["results"])
    message = "\n".join(f"{e['domain']}: {e['message']}" for e in upload.results)
    _finish(upload, UploadState.FAILED if failed else UploadState.LOADED, message)
    return upload


def _load_domain(upload: FactUpload, domain: str, path: Path, progress: UploadProgress) -> dict[str, Any]:
    mark = FactBatch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    try:
        result: FactResult = process_fact_file(domain=domain, path=path, progress=progress)
    except (FactFileError, FactLoadError, ConfigError, DatabaseError, psycopg.Error) as exc:
        message = first_line(exc)
    except Exception as exc:  # MemoryError, OSError, a bug: this domain fails, the others go on
        logger.exception("upload #%s, domain %s", upload.pk, domain)
        message = f"unexpected error {type(exc).__name__}: {first_line(exc)}"
    else:
        summary = result.summary()
        return {
            "domain": domain,
            "status": str(result.outcome),
            "batch_id": summary["batch_id"],
            "message": summary["message"],
        }
    batch = FactBatch.objects.filter(pk__gt=mark, domain=domain, file_path=upload.stored_path).order_by("-pk").first()
    return {
        "domain": domain,
        "status": batch.status if batch else FactStatus.FAILED.value,
        "batch_id": batch.pk if batch else None,
        "message": message,
    }


def _finish(upload: FactUpload, state: UploadState, message: str) -> None:
    upload.state, upload.message, upload.finished_at = state, message, timezone.now()
    if state == UploadState.LOADED:
        upload.progress = 100
    upload.save(update_fields=["state", "message", "finished_at", "progress"])


class UploadProgress:
    """The fact service's progress messages as a share of the whole upload, written on a connection of its own in
    autocommit (the load's transaction would hide them until it ends). Reading takes most of a load: up to 60% of a
    domain's share; loading the facts 65%, checking the keys 85%."""

    READ_SHARE = 0.6
    PHASES = (("checking keys", 0.85), ("loading facts", 0.65))
    FILE_READ = re.compile(r"^(\d+)% of the file read")
    ROWS_READ = re.compile(r"^([\d,]+) rows read$")

    def __init__(self, upload_id: int, *, domain: str, index: int, count: int, rows: int) -> None:
        self.upload_id, self.domain, self.index, self.count, self.rows = upload_id, domain, index, max(count, 1), rows
        self.fraction = 0.0
        self.conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> UploadProgress:
        self("")
        return self

    def __exit__(self, *exc: object) -> None:
        self.fraction = 1.0
        self.write("")
        if self.conn is not None:
            self.conn.close()

    def __call__(self, message: str) -> None:
        self.fraction = max(self.fraction, self.share(message))
        self.write(message)

    def share(self, message: str) -> float:
        for phase, share in self.PHASES:
            if phase in message:
                return share
        if found := self.FILE_READ.match(message):
            return self.READ_SHARE * min(int(found[1]), 100) / 100
        if (found := self.ROWS_READ.match(message)) and self.rows:
            return self.READ_SHARE * min(int(found[1].replace(",", "")) / self.rows, 1.0)
        return 0.02 if message else 0.0

    @property
    def percent(self) -> int:
        return min(int((self.index + self.fraction) * 100 / self.count), 100)

    def write(self, message: str) -> None:
        columns = [ident(column_name(FactUpload, f)) for f in ("progress", "progress_domain", "progress_message", "id")]
        statement = sql.SQL("UPDATE {} SET {} = %s, {} = %s, {} = %s WHERE {} = %s").format(
            ident(FactUpload._meta.db_table), *columns
        )
        try:
            if self.conn is None:
                params = {
                    k: v
                    for k, v in connection.get_connection_params().items()
                    if k not in {"cursor_factory", "context"}
                }
                self.conn = psycopg.connect(**params, autocommit=True, application_name="refgov upload progress")
            self.conn.execute(statement, [self.percent, self.domain, message[:255], self.upload_id])
        except psycopg.Error:  # progress is a courtesy: the load goes on without it
            logger.warning("upload #%s: progress not recorded", self.upload_id, exc_info=True)
