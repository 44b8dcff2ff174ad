"""Runs always end in a recorded state: a run record (preload SyncRun, fact FactBatch) left ``running`` by a process
that died is closed as ``abandoned`` by the next run.

While its process runs it, a record holds a session-level PostgreSQL advisory lock on its id (taken in the same
transaction that creates the record, so nobody sees the record without its lock). PostgreSQL drops the lock when the
session ends, however the process ended (SIGKILL, out of memory, host lost), so any process on any host tells a live
run from a dead one by asking whether anybody holds that lock: ``close_abandoned_runs`` closes the ``running``
records whose lock nobody holds, in one statement per kind of record, and never a run that is still alive.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DatabaseError, connection, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLWrapper
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg import sql

from pipeline.alerts import alert_channel, raise_alert
from pipeline.config.loader import LoadedConfig
from pipeline.models import AlertKind, FactBatch, RunStatus, SyncRun
from refgov.errors import first_line
from refgov.redact import redact

logger = logging.getLogger("refgov.runs")
# SyncRun and FactBatch share these status values.
RUNNING, ABANDONED, FAILED = RunStatus.RUNNING.value, RunStatus.ABANDONED.value, RunStatus.FAILED.value
# Ids are kept in the lock's second (int4) key; beyond 2**31 two ids can share a lock, which can only make a dead
# run look alive (it is then closed by a later check), never the reverse.
ID_MASK = 0x7FFFFFFF
RECORD_FIELDS = ("status", "finished_at", "message")  # what closing a record writes
M = TypeVar("M", bound=models.Model)

ABANDONED_MESSAGES = {
    SyncRun: "abandoned: the process running this preload ended without recording an outcome (killed or crashed); "
    "the tables with a result below were synced, the others were not",
    FactBatch: "abandoned: the process loading this file ended before it finished (killed or crashed); nothing of it "
    "was loaded",
}


# A process killed while its server session runs a long statement: the server notices the lost client within this
# many milliseconds (PostgreSQL 14+), ends the statement, rolls back and releases the run's liveness lock, so the
# next run can close the record at once instead of waiting for the statement to end.
CLIENT_CHECK_MS = 2000


def check_client_connection(sender: type[BaseDatabaseWrapper], connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: set ``client_connection_check_interval`` on every PostgreSQL session."""
    if isinstance(connection, PostgreSQLWrapper) and connection.pg_version >= 140000:
        with connection.cursor() as cur:
            cur.execute("SELECT set_config('client_connection_check_interval', %s, false)", [str(CLIENT_CHECK_MS)])


def lock_namespace(model: type[models.Model]) -> int:
    """The first advisory-lock key of a kind of run record (a stable positive int4, apart from other locks)."""
    return zlib.crc32(f"refgov.run.{model._meta.db_table}".encode()) & 0x7FFFFFFF


def _lock_args(record: models.Model) -> list[int]:
    return [lock_namespace(type(record)), record.pk & ID_MASK]


@contextmanager
def running_record(model: type[M], **fields: Any) -> Iterator[M]:
    """Create a ``running`` record of ``model`` that holds its liveness lock until the block ends.

    An exception that leaves the record ``running`` marks it ``failed`` with the exception's type and first line
    (secrets masked) before it propagates: the record never stays ``running`` behind a live process either."""
    with transaction.atomic():
        record = model._default_manager.create(**fields)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", _lock_args(record))
    try:
        yield record
    except BaseException as exc:
        _fail_if_running(record, exc)
        raise
    finally:
        _unlock(record)


def _fail_if_running(record: models.Model, exc: BaseException) -> None:
    first = first_line(exc)
    message = redact(f"unexpected error: {type(exc).__name__}" + (f": {first}" if first != type(exc).__name__ else ""))
    try:
        with transaction.atomic():
            type(record)._default_manager.filter(pk=record.pk, status=RUNNING).update(
                status=FAILED, message=message, finished_at=timezone.now()
            )
    except DatabaseError:  # the connection is gone or inside a failed transaction: the next run closes the record
        logger.exception("could not record the failure of %s #%s", type(record).__name__, record.pk)


def _unlock(record: models.Model) -> None:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", _lock_args(record))
    except DatabaseError:  # a broken connection has released its locks already
        logger.warning("could not release the liveness lock of %s #%s", type(record).__name__, record.pk)


def is_alive(record: models.Model) -> bool:
    """Whether some session (this one included) holds the record's liveness lock right now."""
    with connection.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}").format(_lock_held(sql.Placeholder(), sql.Placeholder())), _lock_args(record))
        return bool(cur.fetchone()[0])


def _lock_held(namespace: sql.Composable, objid: sql.Composable) -> sql.Composed:
    """SQL: whether a session of this database holds the two-key advisory lock (namespace, objid)."""
    return sql.SQL(
        "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = {namespace}::oid AND l.objid = {objid}::oid)"
    ).format(namespace=namespace, objid=objid)


@dataclass
class Abandoned:
    preload_runs: list[int]
    fact_batches: list[int]

    def summary(self) -> dict:
        return {"abandoned_preload_runs": self.preload_runs, "abandoned_fact_batches": self.fact_batches}


def _close(model: type[models.Model]) -> list[int]:
    meta = model._meta
    column = {f.name: sql.Identifier(f.column) for f in meta.concrete_fields if f.name in RECORD_FIELDS}
    pk = sql.Identifier(meta.pk.column)
    statement = sql.SQL(
        """
        UPDATE {table} r SET {status} = %s, {finished_at} = %s,
               {message} = %s || CASE WHEN r.{message} = '' THEN '' ELSE E'\\n' || r.{message} END
        WHERE r.{status} = %s AND NOT {held}
        RETURNING r.{pk}
        """
    ).format(
        table=sql.Identifier(meta.db_table),
        pk=pk,
        held=_lock_held(sql.Placeholder(), sql.SQL("(r.{} & {})").format(pk, sql.Placeholder())),
        **column,
    )
    with connection.cursor() as cur:
        cur.execute(
            statement, [ABANDONED, timezone.now(), ABANDONED_MESSAGES[model], RUNNING, lock_namespace(model), ID_MASK]
        )
        return sorted(row[0] for row in cur.fetchall())


def close_abandoned_runs(*, config: LoadedConfig | None = None) -> Abandoned:
    """Close every ``running`` preload run and fact batch whose process is gone as ``abandoned``, and raise the alert
    an operator would have had if it had failed (when ``config`` names the alert channel)."""
    with transaction.atomic():
        closed = Abandoned(preload_runs=_close(SyncRun), fact_batches=_close(FactBatch))
    for pk in closed.preload_runs:
        logger.error("preload run %s abandoned: %s", pk, ABANDONED_MESSAGES[SyncRun])
    for pk in closed.fact_batches:
        logger.error("fact batch %s abandoned: %s", pk, ABANDONED_MESSAGES[FactBatch])
    if config is not None:
        _alert(config, closed)
    return closed


def _alert(config: LoadedConfig, closed: Abandoned) -> None:
    channel = alert_channel(config)
    for run in SyncRun.objects.filter(pk__in=closed.preload_runs):
        raise_alert(
            kind=AlertKind.PRELOAD_FAILED,
            key=AlertKind.PRELOAD_FAILED.value,
            channel=channel,
            subject=_("preload run #%(run)d %(status)s") % {"run": run.pk, "status": run.get_status_display()},
            text=run.message,
            data={"run_id": run.pk, "status": run.status},
        )
    for batch in FactBatch.objects.filter(pk__in=closed.fact_batches):
        raise_alert(
            # The key of the batch's rejection alert (pipeline.facts.service): loading the file later resolves it.
            kind=AlertKind.BATCH_REJECTED,
            key=f"{AlertKind.BATCH_REJECTED.value}:{batch.domain}:{batch.file_name}",
            channel=channel,
            subject=_("%(domain)s: %(file)s %(status)s (batch #%(batch)d), nothing loaded")
            % {
                "domain": batch.domain,
                "file": batch.file_name,
                "status": batch.get_status_display(),
                "batch": batch.pk,
            },
            text=batch.message,
            data={"batch_id": batch.pk, "domain": batch.domain, "file": batch.file_path},
        )
