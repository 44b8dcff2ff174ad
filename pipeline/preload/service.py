"""ReferenceSyncService: seed phase 1 — sync the reference tables from their authoritative sources, then validate."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from pipeline.alerts import alert_channel, raise_alert, resolve_alerts
from pipeline.config import load_config
from pipeline.config.loader import LoadedConfig
from pipeline.config.schema import LegacyMySQLSource, Strategy
from pipeline.dry_run import rolled_back_if
from pipeline.models import AlertKind, RunStatus, SyncRun, SyncTableResult, SyncWatermark, TableStatus
from pipeline.runs_liveness import close_abandoned_runs, running_record
from pipeline.sources.config_file import ConfigFileReader
from pipeline.sources.legacy_mysql import LegacyTableReader, MySQLServer, SourceError
from reference.integrity import IntegrityReport, check_reference_integrity
from reference.registry import get_table
from refgov.db.locks import is_locked, session_lock
from refgov.errors import first_line

from .table_sync import SyncError, TableSync, TableSyncOutcome

logger = logging.getLogger("refgov.preload")


class PreloadError(Exception):
    """The preload cannot start (bad request or configuration); nothing was written."""


class PreloadBusy(PreloadError):
    """Another preload holds the lock; this one did not start."""


PRELOAD_LOCK = "refgov.preload"


@dataclass
class PreloadResult:
    run: SyncRun
    tables: list[SyncTableResult]
    integrity: IntegrityReport
    dry_run: bool
    upgrades: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.run.status == RunStatus.SUCCESS

    def summary(self) -> dict[str, Any]:
        fields = [
            "table",
            "source",
            "mode",
            "status",
            "rows_read",
            "inserted",
            "updated",
            "upgraded",
            "confirmed",
            "unchanged",
            "errors",
            "error_samples",
            "missing_at_source",
            "missing_samples",
            "awaiting_source",
            "awaiting_samples",
            "columns_not_in_source",
            "watermark_from",
            "watermark_to",
            "message",
            "warnings",
            "duration_ms",
            "timings_ms",
        ]
        return {
            "run_id": None if self.dry_run else self.run.pk,
            "status": self.run.status,
            "dry_run": self.dry_run,
            "full": self.run.full,
            "started_at": self.run.started_at.isoformat(),
            "finished_at": self.run.finished_at.isoformat() if self.run.finished_at else None,
            "message": self.run.message,
            "tables": [{f: getattr(t, f) for f in fields} for t in self.tables],
            "upgrades": self.upgrades,
            "integrity": self.integrity.as_dict(),
        }


class ReferenceSyncService:
    """Syncs configured tables in dependency order; each table in its own transaction."""

    def __init__(self, *, config: LoadedConfig, server: MySQLServer | None = None) -> None:
        self.loaded = config
        self.config = config.config
        self._server = server

    @property
    def server(self) -> MySQLServer:
        if self._server is None:
            self._server = MySQLServer.from_settings()
        return self._server

    def plan(self, tables: list[str] | None) -> list[str]:
        if not self.config.preload.enabled or self.config.strategy == Strategy.BACKFILL_ONLY:
            raise PreloadError(
                f"{self.loaded.path}: preload is disabled (preload.enabled={self.config.preload.enabled}, "
                f"strategy={self.config.strategy.value})"
            )
        configured = self.loaded.sync_order
        if not tables:
            return configured
        unknown = [t for t in tables if t not in configured]
        if unknown:
            raise PreloadError(
                f"no preload source configured for {', '.join(unknown)} in {self.loaded.path} "
                f"(configured: {', '.join(configured)})"
            )
        return [t for t in configured if t in tables]

    def check_sources(self, tables: list[str]) -> None:
        """Raise SourceError when a table of ``tables`` reads the legacy server and LEGACY_MYSQL_URL is malformed."""
        if any(isinstance(self.config.preload.sources[t], LegacyMySQLSource) for t in tables):
            self.server  # noqa: B018 — parsing the URL is the check

    def reader_for(self, table: str) -> LegacyTableReader | ConfigFileReader:
        source = self.config.preload.sources[table]
        if isinstance(source, LegacyMySQLSource):
            return LegacyTableReader(server=self.server, database=source.database, table=source.table)
        return ConfigFileReader(path=source.path, records=self.loaded.file_rows[table])

    def sync_table(
        self, *, table: str, run: SyncRun, full: bool, before_checks: Callable[[], None] = lambda: None
    ) -> TableSyncOutcome:
        """One table inside the caller's transaction: stream, check, merge, move the watermark.

        An incremental source is asked first, in one statement, for its rows, the largest watermark value and how
        many rows are newer than the stored watermark: when nothing is newer and the row count did not move, the
        table is not read at all; when only the count moved (rows deleted, or added with an old watermark value),
        it is read in full. A source without its configured incremental column is read in full, with a warning."""
        source = self.config.preload.sources[table]
        reader = self.reader_for(table)
        renames = source.columns if isinstance(source, LegacyMySQLSource) else {}
        mark_column = source.incremental_column if isinstance(source, LegacyMySQLSource) else None
        warnings: list[str] = []
        if mark_column and mark_column not in reader.columns():
            warnings.append(
                f"{reader.name}: incremental column {mark_column!r} (preload.sources.{table}.incremental_column) "
                f"not found: read in full"
            )
            mark_column = None
        watermark = SyncWatermark.objects.filter(table=table, column=mark_column).first() if mark_column else None
        since = watermark.value if watermark is not None and not full else None
        stats = None
        if mark_column and isinstance(reader, LegacyTableReader):
            stats = reader.stats(mark_column, since=since)
        table_sync = TableSync(table=table, reader=reader, renames=renames)
        if watermark is not None and since is not None and stats is not None and not stats.newer:
            if stats.rows == watermark.rows:
                return table_sync.unchanged(
                    mode="incremental", note=f"source unchanged ({stats.rows:,} rows, {mark_column} ≤ {since})"
                )
            if watermark.rows is not None:
                warnings.append(
                    f"{reader.name}: {stats.rows:,} rows instead of {watermark.rows:,} without a newer "
                    f"{mark_column}: read in full"
                )
                since = None
        incremental = since is not None
        outcome = table_sync.run(
            run_id=run.pk,
            mode="incremental" if incremental else "full",
            read_kwargs={"since_column": mark_column, "since": since} if incremental else {},
            report_missing=not incremental,
            before_checks=before_checks,
        )
        outcome.warnings = warnings
        for warning in warnings:
            logger.warning("preload %s: %s", table, warning)
        if mark_column and stats is not None:
            moved = since is None or stats.newer > 0
            value = stats.max_value if moved else since
            if value is not None:
                SyncWatermark.objects.update_or_create(
                    table=table, defaults={"column": mark_column, "value": value, "rows": stats.rows}
                )
            if moved and stats.max_value is not None:
                outcome.watermark_from, outcome.watermark_to = since or "", stats.max_value
        return outcome


def _table_message(outcome: TableSyncOutcome) -> str:
    parts = [*outcome.warnings, *([outcome.note] if outcome.note else [])]
    if outcome.errors:
        first = outcome.error_samples[0] if outcome.error_samples else {}
        parts.append(
            f"{outcome.errors} rows rejected "
            f"(first: row {first.get('row')} key {first.get('key')!r}: {first.get('error')})"
        )
    if outcome.missing_at_source:
        parts.append(f"{outcome.missing_at_source} authoritative keys no longer at the source (kept)")
    if outcome.awaiting_source:
        parts.append(
            f"{outcome.awaiting_source} rows promoted by stewards await the source (not deletions; the feedback export "
            f"carries them)"
        )
    if outcome.columns_not_in_source:
        parts.append(f"source lacks columns {', '.join(outcome.columns_not_in_source)} (left as they are)")
    return "; ".join(parts)


def _record(run: SyncRun, outcome: TableSyncOutcome, status: str, message: str) -> SyncTableResult:
    data = asdict(outcome)
    del data["note"]
    return SyncTableResult.objects.create(run=run, status=status, message=message, **data)


def run_preload(
    *,
    tables: list[str] | None = None,
    full: bool = False,
    dry_run: bool = False,
    trigger: str = "command",
    config: LoadedConfig | None = None,
    server: MySQLServer | None = None,
) -> PreloadResult:
    """Run seed phase 1 and record it as one SyncRun. Raises ConfigError/PreloadError before any work."""
    service = ReferenceSyncService(config=config or load_config(), server=server)
    order = service.plan(tables)
    with preload_lock():
        if not dry_run:
            close_abandoned_runs(config=service.loaded)
        return rolled_back_if(
            dry_run, lambda: _execute(service, order, full=full, dry_run=dry_run, trigger=trigger, tables=tables)
        )


@contextmanager
def preload_lock() -> Iterator[None]:
    """Only one preload at a time on this database, whichever host or process starts it."""
    with session_lock(PRELOAD_LOCK) as taken:
        if not taken:
            raise PreloadBusy("another preload is running (database lock refgov.preload); this one did not start")
        yield


def preload_running() -> bool:
    """Whether some session holds the preload lock right now."""
    return is_locked(PRELOAD_LOCK)


def _alert(config: LoadedConfig, run: SyncRun, results: list[SyncTableResult], upgrades: list[dict[str, Any]]) -> None:
    """A failed or partial run opens the preload alert; a successful one closes it and any degraded-mode alert."""
    channel = alert_channel(config)
    if run.status == RunStatus.SUCCESS:
        resolve_alerts(
            kind=AlertKind.PRELOAD_FAILED,
            channel=channel,
            resolution=_("preload run #%(run)d succeeded") % {"run": run.pk},
        )
        resolve_alerts(
            kind=AlertKind.DEGRADED,
            channel=channel,
            resolution=_("preload run #%(run)d succeeded; %(n)d auto-derived rows upgraded to authoritative")
            % {"run": run.pk, "n": sum(not u["promoted"] for u in upgrades)},
        )
        return
    failed = [r.table for r in results if r.status != TableStatus.SUCCESS]
    raise_alert(
        kind=AlertKind.PRELOAD_FAILED,
        key=AlertKind.PRELOAD_FAILED.value,
        channel=channel,
        subject=_("preload run #%(run)d %(status)s") % {"run": run.pk, "status": run.get_status_display()}
        + (_(": %(tables)s not synced") % {"tables": "、".join(failed)} if failed else ""),
        text=run.message,
        data={"run_id": run.pk, "status": run.status, "tables_failed": failed},
    )


class ParentFailed(Exception):
    def __init__(self, parents: list[str]) -> None:
        super().__init__(f"skipped: depends on {', '.join(parents)}, which failed")
        self.parents = parents


class _Gates:
    """Completion of each table of a run: a table checks its rows against its parents only after they committed."""

    def __init__(self, service: ReferenceSyncService, order: list[str]) -> None:
        wanted = set(order)
        self.parents = {
            t: sorted((set(get_table(t).depends_on) | set(service.config.depends_on.get(t, []))) & wanted)
            for t in order
        }
        self.done = {t: threading.Event() for t in order}
        self.ok: dict[str, bool] = {}

    def finish(self, table: str, ok: bool) -> None:
        self.ok[table] = ok
        self.done[table].set()

    def wait_for_parents(self, table: str) -> None:
        for parent in self.parents[table]:
            self.done[parent].wait()
        failed = [p for p in self.parents[table] if not self.ok[p]]
        if failed:
            raise ParentFailed(failed)


def _sync_one(
    service: ReferenceSyncService, gates: _Gates, table: str, run: SyncRun, *, full: bool, wait_first: bool
) -> tuple[SyncTableResult, str | None]:
    """Sync one table in its own transaction and record its result; returns the result and a problem line."""
    source = service.config.preload.sources[table].describe()
    try:
        if wait_first:
            gates.wait_for_parents(table)
        with transaction.atomic():
            outcome = service.sync_table(
                table=table, run=run, full=full, before_checks=lambda: gates.wait_for_parents(table)
            )
            message = _table_message(outcome)
            result = _record(run, outcome, TableStatus.SUCCESS, message)
        gates.finish(table, True)
        logger.info(
            "preload %s: read %s, inserted %s, updated %s, upgraded %s, unchanged %s, rejected %s",
            table,
            outcome.rows_read,
            outcome.inserted,
            outcome.updated,
            outcome.upgraded,
            outcome.unchanged,
            outcome.errors,
        )
        return result, (f"{table}: {message}" if outcome.errors else None)
    except ParentFailed as exc:
        status, message = TableStatus.SKIPPED, str(exc)
    except (SourceError, SyncError, DatabaseError, psycopg.Error) as exc:
        status = TableStatus.FAILED
        message = first_line(exc)
        logger.error("preload %s failed: %s", table, message)
    gates.finish(table, False)
    outcome = TableSyncOutcome(table=table, source=source, mode="full" if full else "-")
    return _record(run, outcome, status, message), f"{table}: {message}"


def _sync_concurrently(
    service: ReferenceSyncService, gates: _Gates, order: list[str], run: SyncRun, *, full: bool
) -> list[tuple[SyncTableResult, str | None]]:
    """One thread (and database connection) per table: a child stages its rows while its parents still sync."""

    def work(table: str) -> tuple[SyncTableResult, str | None]:
        try:
            return _sync_one(service, gates, table, run, full=full, wait_first=False)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(order), thread_name_prefix="refgov-preload") as pool:
        futures = [pool.submit(work, table) for table in order]
        return [f.result() for f in futures]


def _execute(
    service: ReferenceSyncService,
    order: list[str],
    *,
    full: bool,
    dry_run: bool,
    trigger: str,
    tables: list[str] | None,
) -> PreloadResult:
    with running_record(SyncRun, trigger=trigger, full=full, tables_requested=list(tables or [])) as run:
        logger.info("preload run %s started: %s", run.pk, ", ".join(order))
        try:
            service.check_sources(order)
        except SourceError as exc:
            return _finish(service, run, [], [str(exc)], dry_run=dry_run, status=RunStatus.FAILED)
        gates = _Gates(service, order)
        # Worker threads have their own connections: only possible when this one holds no open transaction.
        if len(order) > 1 and not connection.in_atomic_block:
            outcomes = _sync_concurrently(service, gates, order, run, full=full)
        else:
            outcomes = [_sync_one(service, gates, t, run, full=full, wait_first=True) for t in order]
        results = [result for result, _ in outcomes]
        problems = [problem for _, problem in outcomes if problem]
        succeeded = [r for r in results if r.status == TableStatus.SUCCESS]
        status = RunStatus.FAILED if not succeeded and order else None
        return _finish(service, run, results, problems, dry_run=dry_run, status=status)


def _finish(
    service: ReferenceSyncService,
    run: SyncRun,
    results: list[SyncTableResult],
    problems: list[str],
    *,
    dry_run: bool,
    status: RunStatus | None,
) -> PreloadResult:
    """Check integrity, record the run's outcome (``status``, or success/partial from the problems), alert."""
    integrity = check_reference_integrity(trust_constraints=True)
    if not integrity.ok:
        problems = [*problems, *(f"integrity: {v}" for v in integrity.violations)]
    run.status = status or (RunStatus.PARTIAL if problems else RunStatus.SUCCESS)
    # Warnings (a full read instead of an incremental one, say) are shown with the run but do not make it partial.
    warnings = [f"{r.table}: warning: {w}" for r in results for w in r.warnings]
    run.message = "\n".join([*problems, *warnings])
    run.integrity = integrity.as_dict()
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "message", "integrity", "finished_at"])
    logger.log(
        logging.INFO if run.status == RunStatus.SUCCESS else logging.ERROR, "preload run %s: %s", run.pk, run.status
    )
    upgrades: list[dict[str, Any]] = [
        dict(u) for u in run.upgrades.values("table", "key", "derived_from_domain", "promoted", "changed", "kept")
    ]
    _alert(service.loaded, run, results, upgrades)
    return PreloadResult(run=run, tables=results, integrity=integrity, dry_run=dry_run, upgrades=upgrades)
