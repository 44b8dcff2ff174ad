"""HybridReferenceService for fact files (seed phases 2 and 3): stage, ensure references, load — one transaction.

``process_fact_file`` is the one entry point; ``manage.py process_facts`` and ``manage.py backfill`` (references
only) are thin callers. A file is either loaded completely with the references it needs, or not at all. A file the
fact table already holds (same checksum as the latest load of it, none of whose rows a later load replaced) is
skipped; a references-only run never counts as a load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from django.db import DatabaseError, DataError, connection, models, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg import sql

from pipeline.alerts import alert_channel, raise_alert, resolve_alerts
from pipeline.bulk import planner_setting, skip_jit, use_bulk_memory
from pipeline.config import load_config, load_domain
from pipeline.config.domain_schema import DomainConfig
from pipeline.config.loader import LoadedConfig, LoadedDomain
from pipeline.config.schema import Strategy
from pipeline.dry_run import rolled_back_if
from pipeline.fact_tables import BATCH_COLUMN, CLOSING_ASSETS, MONTH_COLUMN, SOURCE_ROW_COLUMN, FactTable, fact_table
from pipeline.facts import csv_parts, partitions, prefetch
from pipeline.facts.csv_parts import drop_after_load
from pipeline.facts.derive import Origin, derive_references
from pipeline.facts.errors import FactLoadError
from pipeline.facts.lookups import record_unmapped, unmapped_note
from pipeline.facts.quarantine import quarantine_note, set_aside_invalid_keys, supersede_quarantined
from pipeline.facts.readers import FactFile, FactFileError, open_fact_file
from pipeline.facts.references import (
    DeriveCandidate,
    DerivedTable,
    alias_update,
    pending_keys,
    resolve_aliases,
    tables_with_aliases,
    unknown_keys,
)
from pipeline.facts.scope import ScopePart, batch_scope
from pipeline.facts.staging import FactStager, Progress
from pipeline.facts.usage import record_batch_usage, refresh_usage
from pipeline.models import AlertKind, FactBatch, FactKind, FactStatus, UnmappedValue
from pipeline.reports import report_batch
from pipeline.runs_liveness import close_abandoned_runs, running_record
from reference.models import Source
from reference.registry import get_table
from refgov.db.locks import lock_for_transaction
from refgov.db.sql import ident, idents
from refgov.errors import first_line

logger = logging.getLogger("refgov.facts")
UNKNOWN_LIST_LIMIT = 200
LOAD_LOCK = "refgov.facts.load"


class FactOutcome(StrEnum):
    """What became of a fact file processed without an error (a refused or failed one raises)."""

    LOADED = FactStatus.LOADED.value
    SKIPPED = "skipped"  # the fact table holds it already (``--force`` loads it again)


@dataclass(frozen=True)
class FactSource:
    """What a batch reads: the fields its record shows, and how to open it as a stager (inside the transaction)."""

    file_name: str
    file_path: str
    sheet: str
    checksum: str
    size_bytes: int
    open: Callable[[DomainConfig, FactTable, Progress, list[sql.Identifier]], FactStager]


@dataclass
class FactResult:
    batch: FactBatch
    dry_run: bool = False
    skipped_as: FactBatch | None = None
    tables: dict[str, DerivedTable] = field(default_factory=dict)
    scope: list[ScopePart] = field(default_factory=list)  # dry runs of a load: the scope values of the file's rows
    unmapped: list[UnmappedValue] = field(default_factory=list)  # values ``derived_columns`` could not map
    quarantined: int = 0  # rows set aside because a new key broke the key rules (隔离行)

    @property
    def outcome(self) -> FactOutcome:
        return FactOutcome.SKIPPED if self.skipped_as else FactOutcome(self.batch.status)

    @property
    def batch_id(self) -> int | None:
        return None if self.dry_run else (self.skipped_as or self.batch).pk

    def summary(self) -> dict[str, Any]:
        batch = self.skipped_as or self.batch
        message = batch.message
        if self.skipped_as:
            finished = timezone.localtime(batch.finished_at).strftime("%Y-%m-%d %H:%M") if batch.finished_at else "?"
            message = (
                f"already loaded as batch #{batch.pk} ({batch.file_name}, {finished}) and the fact table still holds "
                f"all its rows; --force loads it again"
            )
        return {
            "batch_id": self.batch_id,
            "status": self.outcome,
            "dry_run": self.dry_run,
            "domain": batch.domain,
            "file": batch.file_path,
            "sheet": batch.sheet,
            "months": batch.periods,
            "rows_read": batch.rows_read,
            "rows_loaded": batch.rows_loaded,
            "rows_replaced": batch.rows_replaced,
            "new_references": batch.new_references,
            "filled_references": batch.filled_references,
            "derived": {table: [_jsonable(c) for c in d.candidates] for table, d in self.tables.items()},
            "rows_quarantined": self.quarantined,
            "unmapped": [
                {"column": u.column, "from": u.source_column, "value": u.value, "rows": u.rows, "fallback": u.fallback}
                for u in self.unmapped
            ],
            "message": message,
        }


def _jsonable(candidate: DeriveCandidate) -> dict[str, Any]:
    return {
        "key": candidate.key,
        **{k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in candidate.values.items()},
    }


def file_checksum(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of the file ``path`` (read while Django started, for ``manage.py``'s first)."""
    return prefetch.checksum(path) or prefetch.file_checksum(path)


def blocks_unknown_keys(config: LoadedConfig) -> bool:
    """preload_only, or backfill disabled: unknown keys refuse the batch instead of being derived."""
    settings = config.config
    return settings.strategy == Strategy.PRELOAD_ONLY or not settings.backfill.enabled


def process_fact_file(
    *,
    domain: str,
    path: Path | str,
    sheet: str | None = None,
    encoding: str | None = None,
    load_facts: bool = True,
    dry_run: bool = False,
    force: bool = False,
    config: LoadedConfig | None = None,
    progress: Progress | None = None,
    degraded: bool = False,
    allow_empty: bool = False,
) -> FactResult:
    """Process one fact file of ``domain``. Raises ConfigError before any work; records every other failure on the
    batch (and raises an alert) and raises FactFileError / FactLoadError / DatabaseError after rolling the file's
    transaction back. ``degraded``: loaded while the preload of the window had failed; the batch is marked so.
    ``allow_empty``: accept a file without data rows (rejected otherwise: usually an export error)."""
    config = config or load_config()
    if not dry_run:
        close_abandoned_runs(config=config)
    loaded = load_domain(domain)
    path = Path(path)
    if not path.is_file():
        raise FactFileError(file=path, reason="file not found")
    is_excel = path.suffix.lower() in {".xlsx", ".xlsm"}
    sheet = (sheet or loaded.config.files.sheet) if is_excel else None
    checksum, size = file_checksum(path)
    if load_facts and not dry_run and not force:
        current = _current_load(loaded, checksum=checksum, sheet=sheet or "")
        if current is not None:
            return FactResult(batch=current, skipped_as=current)

    file_encoding = encoding

    def open_file(
        domain_config: DomainConfig, fact: FactTable, report: Progress, parts: list[sql.Identifier]
    ) -> FactStager:
        file = open_fact_file(
            path,
            sheet=sheet,
            aliases=domain_config.aliases,
            required=domain_config.required_columns,
            encoding=file_encoding or domain_config.files.encoding,
        )
        return FactStager(domain=domain_config, fact=fact, file=file, progress=report, part_tables=parts)

    source = FactSource(
        file_name=path.name,
        file_path=str(path.resolve()),
        sheet=sheet or "",
        checksum=checksum,
        size_bytes=size,
        open=open_file,
    )
    return process_source(
        source,
        loaded=loaded,
        config=config,
        load_facts=load_facts,
        dry_run=dry_run,
        progress=progress,
        degraded=degraded,
        allow_empty=allow_empty,
    )


def process_source(
    source: FactSource,
    *,
    loaded: LoadedDomain,
    config: LoadedConfig,
    load_facts: bool = True,
    dry_run: bool = False,
    progress: Progress | None = None,
    degraded: bool = False,
    allow_empty: bool = False,
    replace: bool = True,
) -> FactResult:
    """Process one staged source (a file, or a frame: ``pipeline.facts.frames``) as ``process_fact_file`` does
    after its file checks. ``replace=False`` keeps the earlier rows of the batch's scope (an appending load)."""
    part_tables: list[sql.Identifier] = []
    domain = loaded.config.domain
    # Worker connections see committed rows only: inside a caller's transaction (which may hold rows the load reads,
    # e.g. references or mappings it just added) every statement that reads more than the staged file runs here.
    use_workers = not connection.in_atomic_block

    def work() -> FactResult:
        with running_record(
            FactBatch,
            domain=domain,
            file_name=source.file_name,
            file_path=source.file_path,
            sheet=source.sheet,
            checksum=source.checksum,
            size_bytes=source.size_bytes,
            degraded=degraded,
            kind=FactKind.FACTS if load_facts else FactKind.REFERENCES,
        ) as batch:
            result = _run(
                batch,
                loaded,
                config,
                source,
                load_facts=load_facts,
                progress=progress or _quiet,
                part_tables=part_tables,
                use_workers=use_workers,
                allow_empty=allow_empty,
                replace=replace,
                dry_run=dry_run,
            )
        if dry_run and load_facts:  # for a preview: read before the dry run's rows are rolled back
            domain_config = loaded.config
            result.scope = batch_scope(
                fact_table_name=domain_config.fact_table,
                scope=domain_config.replace_scope,
                batch_id=batch.pk,
                relation=_build_name(fact_table(domain_config.fact_table), batch),
            )
        return result

    try:
        result = rolled_back_if(dry_run, work)
    finally:
        drop_after_load(part_tables)
    result.dry_run = dry_run
    if not dry_run:
        # A killed load this one waited for (its month lock) is gone by now: close its batch at once.
        close_abandoned_runs(config=config)
    backfill = config.config.backfill
    if (
        not dry_run
        and backfill.notify_on_new_records
        and (result.unmapped or result.quarantined or any(d.inserted for d in result.tables.values()))
    ):
        batch_id = result.batch.pk
        transaction.on_commit(
            lambda: report_batch(batch_id, channel=backfill.notification_channel, alert_share=backfill.alert_share),
            robust=True,
        )
    return result


def drop_month(*, domain: str, month: date) -> FactBatch:
    """Drop ``month`` of ``domain``'s fact table (its partition, every row of the month) and record a batch of kind
    ``drop``. Raises FactLoadError, dropping nothing, when the table holds no such month."""
    loaded = load_domain(domain)
    fact = fact_table(loaded.config.fact_table)
    month = month.replace(day=1)
    with transaction.atomic(), connection.cursor() as cur:
        lock_for_transaction(cur, f"refgov.facts.{fact.name}.{month}")
        lock_for_transaction(cur, LOAD_LOCK)
        if month not in partitions.month_partitions(cur, fact.name):
            raise FactLoadError(f"{fact.name} holds no month {month:%Y-%m}: nothing dropped")
        rows = partitions.detach_and_drop(cur, fact.name, month)
        batch = FactBatch.objects.create(
            domain=domain,
            file_name=f"{fact.name} {month:%Y-%m}",
            file_path="",
            checksum="",
            periods=[month.isoformat()],
            kind=FactKind.DROP,
            status=FactStatus.LOADED,
            rows_replaced=rows,
            message=f"month {month:%Y-%m} dropped from {fact.name}: {rows} rows",
            finished_at=timezone.now(),
        )
        for fk in loaded.fk_order:  # the review queue's weights no longer count the month's rows
            refresh_usage(table=fk.target_table)
    logger.info("fact batch %s: %s", batch.pk, batch.message)
    return batch


def _quiet(message: str) -> None:
    pass


def _current_load(loaded: LoadedDomain, *, checksum: str, sheet: str) -> FactBatch | None:
    """The latest fact load of this very file (same checksum and sheet) if the fact table still holds every row it
    loaded: no later load replaced any part of its scope (a load deletes the earlier rows of its scope), so loading
    the file again would change nothing. An older version sent again after a newer one is therefore loaded."""
    latest = (
        FactBatch.objects.filter(
            domain=loaded.config.domain, checksum=checksum, sheet=sheet, status=FactStatus.LOADED, kind=FactKind.FACTS
        )
        .order_by("-pk")
        .first()
    )
    if latest is None:
        return None
    with connection.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(
                ident(fact_table(loaded.config.fact_table).name), ident(BATCH_COLUMN)
            ),
            [latest.pk],
        )
        held = cur.fetchone()[0]
    return latest if held == latest.rows_loaded else None


def _run(
    batch: FactBatch,
    loaded: LoadedDomain,
    config: LoadedConfig,
    source: FactSource,
    *,
    load_facts: bool,
    progress: Progress,
    part_tables: list[sql.Identifier],
    use_workers: bool,
    allow_empty: bool,
    replace: bool = True,
    dry_run: bool = False,
) -> FactResult:
    domain = loaded.config
    fact = fact_table(domain.fact_table)
    result = FactResult(batch=batch)
    started = timezone.now()
    try:
        with transaction.atomic(), connection.cursor() as cur:
            use_bulk_memory(cur)
            skip_jit(cur)
            stager = source.open(domain, fact, progress, part_tables)
            stager.normalise_in_parts = use_workers
            file = stager.file
            progress("reading")
            staged = stager.stage(cur)
            if staged.checksum is not None:  # a source that knows its checksum only once read (a frame)
                batch.checksum, batch.size_bytes = staged.checksum, staged.size_bytes
            if not staged.rows and not allow_empty:
                raise FactFileError(
                    file.path,
                    "no data rows (a header only, or blank rows): usually an export error; "
                    "--allow-empty accepts an empty file",
                    sheet=file.sheet,
                )
            batch.rows_read = staged.rows
            batch.periods = [m.isoformat() for m in staged.months]
            for month in staged.months:
                lock_for_transaction(cur, f"refgov.facts.{fact.name}.{month}")
            # Loads take turns from here to their commit: attaching a month locks the parent (and, for its foreign
            # keys, the reference tables) against what another load holds while it waits for this one's new keys.
            lock_for_transaction(cur, LOAD_LOCK)
            if not load_facts:
                progress(f"{staged.rows:,} rows read; checking keys")
                stager.materialise(cur)
                _check_lengths(cur, fact, file)
                aliased = _resolve_aliases(cur, fact, relation="_fact")
                set_aside = _set_aside(cur, loaded, config, fact, batch, file, loaded_facts=False)
                result.tables = _ensure_references(cur, loaded, config, batch, file, staged.months)
                result.unmapped = record_unmapped(cur, domain=domain, fact=fact, batch=batch, loaded=False)
            else:
                progress(f"{staged.rows:,} rows read; loading facts")
                build = _build_name(fact, batch)
                partitions.build_table(cur, fact.name, build, staged.months[0] if len(staged.months) == 1 else None)
                batch.rows_loaded, aliased = _insert(
                    cur, fact, stager, batch, target=build, with_pending=config.config.backfill.mode == "always"
                )
                set_aside = _set_aside(
                    cur, loaded, config, fact, batch, file, loaded_facts=True, relation=build, replacing=replace
                )
                batch.rows_loaded -= set_aside
                result.quarantined = set_aside
                progress("checking keys")
                result.tables = _ensure_references(cur, loaded, config, batch, file, staged.months)
                result.unmapped = record_unmapped(
                    cur, domain=domain, fact=fact, batch=batch, loaded=True, relation=build
                )
                progress("building the months")
                batch.rows_replaced = _place_months(
                    cur,
                    fact,
                    domain.replace_scope,
                    batch,
                    build=build,
                    months=staged.months,
                    dry_run=dry_run,
                    replace=replace,
                    use_workers=use_workers,
                )
            for column, rows in aliased.items():
                result.tables[fact.reference_columns[column]].aliased_rows = rows
            if load_facts:
                _record_usage(loaded, fact, result.tables)
            stager.drop(cur)
            batch.status = FactStatus.LOADED
            batch.finished_at = timezone.now()
            batch.message = _summary_line(batch, started, result.tables) + quarantine_note(set_aside, loaded=load_facts)
            batch.message += unmapped_note(result.unmapped)
            batch.save()
    except (FactFileError, FactLoadError) as exc:
        _record_failure(batch, config, FactStatus.REJECTED, str(exc))
        raise
    except (DatabaseError, psycopg.Error) as exc:
        _record_failure(batch, config, FactStatus.FAILED, first_line(exc))
        raise
    logger.info("fact batch %s %s: %s", batch.pk, batch.file_name, batch.message)
    if load_facts:
        resolve_alerts(
            key=_rejected_key(batch),
            channel=alert_channel(config),
            resolution=_("batch #%(batch)d loaded %(file)s") % {"batch": batch.pk, "file": batch.file_name},
        )
    return result


def _set_aside(
    cur: CursorWrapper,
    loaded: LoadedDomain,
    config: LoadedConfig,
    fact: FactTable,
    batch: FactBatch,
    file: FactFile,
    *,
    loaded_facts: bool,
    relation: str | None = None,
    replacing: bool = True,
) -> int:
    """Rows whose new key breaks the key rules: the file refused, or the rows quarantined (``quarantine``); a load
    that replaces its scope also retires the pending quarantined rows of that scope. ``relation``: where the batch's
    rows are (the load's month table; default the fact table)."""
    if loaded_facts and replacing:
        supersede_quarantined(cur, fact=fact, scope=loaded.config.replace_scope, batch=batch, relation=relation)
    return set_aside_invalid_keys(
        cur,
        fact=fact,
        batch=batch,
        file=file,
        patterns=config.config.key_patterns,
        mode=loaded.config.invalid_keys,
        loaded=loaded_facts,
        relation=relation,
        foreign_keys=loaded.config.foreign_keys,
        suggestions=config.config.stewardship.suggestions,
    )


def _rejected_key(batch: FactBatch) -> str:
    return f"{AlertKind.BATCH_REJECTED.value}:{batch.domain}:{batch.file_name}"


def _record_failure(batch: FactBatch, config: LoadedConfig, status: str, message: str) -> None:
    batch.status, batch.message, batch.finished_at = status, message, timezone.now()
    batch.rows_loaded = 0
    batch.save()
    logger.error("fact batch %s %s %s: %s", batch.pk, batch.file_name, status, message)
    raise_alert(
        kind=AlertKind.BATCH_REJECTED,
        key=_rejected_key(batch),
        channel=alert_channel(config),
        subject=_("%(domain)s: %(file)s %(status)s (batch #%(batch)d), nothing loaded")
        % {"domain": batch.domain, "file": batch.file_name, "status": batch.get_status_display(), "batch": batch.pk},
        text=message,
        data={"batch_id": batch.pk, "domain": batch.domain, "file": batch.file_path},
    )


def _summary_line(batch: FactBatch, started: datetime, tables: dict[str, DerivedTable]) -> str:
    derived = ", ".join(f"{t} +{n}" for t, n in batch.new_references.items() if n) or "none"
    aliased = {t: d.aliased_rows for t, d in tables.items() if d.aliased_rows}
    if aliased:
        derived += "; merged keys resolved: " + ", ".join(f"{t} {n} rows" for t, n in aliased.items())
    if batch.filled_references:
        derived += "; filled pending rows: " + ", ".join(f"{t} {n}" for t, n in batch.filled_references.items())
    seconds = (timezone.now() - started).total_seconds()
    if batch.kind == FactKind.REFERENCES:
        counts = f"references only: read {batch.rows_read}, no facts loaded"
    else:
        counts = f"read {batch.rows_read}, loaded {batch.rows_loaded}, replaced {batch.rows_replaced}"
    return ("degraded (the preload of the window had failed): " if batch.degraded else "") + (
        f"{counts}; new references: {derived}; {seconds:.1f} s"
    )


def _check_lengths(cur: CursorWrapper, fact: FactTable, file: FactFile) -> None:
    """The first value of ``_fact`` longer than its column (a key: than the reference table's key column)."""
    lengths = [(column, _max_length(field)) for column, field in fact.columns.items()]
    checks = [(c, n) for c, n in lengths if n]
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN octet_length({c}) > {n} AND char_length({c}) > {n} THEN {i}").format(
            c=ident(c), n=sql.Literal(n), i=sql.Literal(i)
        )
        for i, (c, n) in enumerate(checks)
    )
    cur.execute(
        sql.SQL(
            "SELECT _row, CASE {cases} END AS col FROM _fact WHERE CASE {cases} END IS NOT NULL ORDER BY _row LIMIT 1"
        ).format(cases=cases)
    )
    if found := cur.fetchone():
        row, (column, limit) = found[0], checks[found[1]]
        raise FactFileError(
            file=file.path, sheet=file.sheet, row=row, column=column, reason=f"longer than {limit} characters"
        )


def _max_length(field: models.Field) -> int | None:
    """A column's length limit (a key's: the reference table's key column's)."""
    return field.target_field.max_length if isinstance(field, models.ForeignKey) else field.max_length


def _ensure_references(
    cur: CursorWrapper, loaded: LoadedDomain, config: LoadedConfig, batch: FactBatch, file: FactFile, months: list[date]
) -> dict[str, DerivedTable]:
    domain = loaded.config
    blocking = blocks_unknown_keys(config)
    tables: dict[str, DerivedTable] = {}
    refresh = config.config.backfill.mode == "always"
    origin = Origin(batch=batch, file_name=file.path.name, sheet=file.sheet or "", months=months)
    for fk in loaded.fk_order:
        pending = pending_keys(cur, fk) if refresh and not blocking else []
        found = unknown_keys(cur, fk)
        if blocking or not (found or pending):
            tables[fk.target_table] = DerivedTable(table=fk.target_table, unknown=found, pending=pending)
            continue
        tables[fk.target_table] = derive_references(
            cur,
            fk,
            found=found,
            pending=pending,
            domain=domain,
            origin=origin,
            mark_for_review=config.config.backfill.mark_for_review,
            suggestions=config.config.stewardship.suggestions,
        )
    if blocking:
        refused = [(t, u) for t, d in tables.items() for u in d.unknown]
        if refused:
            listed = "; ".join(
                f"{t} {u.key} (rows {', '.join(map(str, u.rows))})" for t, u in refused[:UNKNOWN_LIST_LIMIT]
            )
            more = f"; and {len(refused) - UNKNOWN_LIST_LIMIT} more" if len(refused) > UNKNOWN_LIST_LIMIT else ""
            reason = "preload_only strategy" if config.config.strategy == Strategy.PRELOAD_ONLY else "backfill disabled"
            raise FactLoadError(
                f"{file.path.name}: {len(refused)} unknown keys ({reason}), nothing loaded: {listed}{more}"
            )
    batch.new_references = {t: len(d.inserted) for t, d in tables.items()}
    batch.filled_references = {t: len(d.filled) for t, d in tables.items() if d.filled}
    return tables


def _record_usage(loaded: LoadedDomain, fact: FactTable, tables: dict[str, DerivedTable]) -> None:
    """The review queue's weights: new keys from this batch's rows in ``_fact``; filled pending keys (which earlier
    batches may use too) from the fact tables."""
    for fk in loaded.fk_order:
        derived = tables[fk.target_table]
        record_batch_usage(
            table=fk.target_table,
            column=fk.source_column,
            keys=derived.inserted,
            assets=CLOSING_ASSETS in fact.columns,
        )
        if derived.filled:
            refresh_usage(table=fk.target_table, keys=derived.filled)


def _insert(
    cur: CursorWrapper, fact: FactTable, stager: FactStager, batch: FactBatch, *, target: str, with_pending: bool
) -> tuple[int, dict[str, int]]:
    """Normalise the staged rows into ``target`` (the load's standalone table shaped like the fact table) in one pass,
    resolve keys stewards merged away, then keep the rows with a key the reference tables lack (and, ``with_pending``,
    a key still pending review) as ``_fact``: all that deriving references needs, a few percent of the batch.
    Returns (rows loaded, alias-resolved rows per column). The statements embed config literals
    (``normalised_sql``): they are executed without parameters."""
    names = {
        "fact": ident(fact.name),
        "target": ident(target),
        "columns": idents(fact.columns),
        "source_row": ident(SOURCE_ROW_COLUMN),
        "batch_column": ident(BATCH_COLUMN),
        "batch": sql.Literal(int(batch.pk)),
    }
    wanted = []
    for column, table in fact.reference_columns.items():
        reference = get_table(table)
        parts = {"column": ident(column), "key": ident(reference.key_column), "reference": ident(reference.name)}
        wanted.append(sql.SQL("i.{column} NOT IN (SELECT {key} FROM {reference})").format(**parts))
        if with_pending:
            wanted.append(
                sql.SQL(
                    "i.{column} IN (SELECT {key} FROM {reference} WHERE _needs_review AND _source = {pending})"
                ).format(**parts, pending=sql.Literal(Source.AUTO_DERIVED.value))
            )
    try:
        with transaction.atomic():
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE _fact ON COMMIT DROP AS SELECT {source_row} AS _row, {columns} FROM {fact} "
                    "WITH NO DATA"
                ).format(**names)
            )
            loaded, aliased = _insert_normalised(
                cur, names, stager, fact, target=target, batch=batch, wanted=sql.SQL(" OR ").join(wanted)
            )
    except (DataError, psycopg.DataError):  # psycopg's: raised in a worker connection's part
        stager.materialise(cur)  # to name the row and column of a value that does not fit
        _check_lengths(cur, fact, stager.file)
        raise
    cur.execute(sql.SQL("ANALYZE _fact ({})").format(idents(sorted(fact.reference_columns))))
    return loaded, aliased


def _insert_normalised(
    cur: CursorWrapper,
    names: dict[str, sql.Composable],
    stager: FactStager,
    fact: FactTable,
    *,
    target: str,
    batch: FactBatch,
    wanted: sql.Composable,
) -> tuple[int, dict[str, int]]:
    """Insert the normalised rows into ``target``, resolve merged keys, keep the ``wanted`` rows in ``_fact``;
    returns (rows inserted, alias-resolved rows per column).

    A CSV copied in parts is normalised in parts at the same time: this connection its own part straight into the
    target; each worker connection its part into a table of its own (``csv_parts.normalise_part``), where it also
    resolves merged keys and sets the ``wanted`` rows aside, while this connection does so for its own rows. The
    parts are then appended to the target and to ``_fact``."""
    insert = sql.SQL(
        "INSERT INTO {target} ({source_row}, {columns}, {batch_column}) SELECT _row, {columns}, {batch} FROM ({rows}) n"
    )
    keep = sql.SQL("INSERT INTO _fact SELECT {source_row}, {columns} FROM {target} i WHERE {wanted}").format(
        **names, wanted=wanted
    )
    with_aliases = tables_with_aliases(cur)
    aliases = [(column, table) for column, table in fact.reference_columns.items() if table in with_aliases]
    parallel = stager.parallel_parts()
    # A worker's part table stores every column of the target in the target's order (ids and batch included): the
    # part is then appended as it is stored, without computing a value (about 40% cheaper than an INSERT that does).
    stored = partitions.stored_columns(cur, fact.name) if parallel else []
    stored_names = idents(name for name, _ in stored)
    futures: list[Future[list[int]]] = []
    with ThreadPoolExecutor(max_workers=max(len(parallel), 1)) as pool:
        for table, unknown, statement in parallel:
            make = [
                sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(table, sql.SQL(", ").join(d for _, d in stored)),
                insert.format(**{**names, "target": table}, rows=statement),
            ]
            after: list[tuple[sql.Composed, list[Any] | None]] = [
                alias_update(table, column=column, table=reference) for column, reference in aliases
            ]
            after.append(
                (
                    sql.SQL("CREATE UNLOGGED TABLE {} AS SELECT {} AS _row, {} FROM {} i WHERE {}").format(
                        unknown, names["source_row"], names["columns"], table, wanted
                    ),
                    None,
                )
            )
            futures.append(pool.submit(csv_parts.normalise_part, table, make, after, [unknown]))
        try:
            cur.execute(insert.format(**names, rows=stager.own_rows_sql() if parallel else stager.normalised_sql()))
            rows: int = cur.rowcount
            resolved = [
                resolve_aliases(cur, relation=target, column=column, table=table, batch_id=batch.pk)
                for column, table in aliases
            ]
            cur.execute(keep)
        finally:
            wait(futures)
            for (table, unknown, _), future in zip(parallel, futures, strict=True):
                if future.exception() is None:  # dropped with the staging relations
                    stager.part_tables.extend([table, unknown])
    for future in futures:
        if (error := future.exception()) is not None:
            raise error
    for (table, unknown, _), future in zip(parallel, futures, strict=True):
        cur.execute(
            sql.SQL("INSERT INTO {target} ({stored}) SELECT {stored} FROM {part}").format(
                target=names["target"], stored=stored_names, part=table
            )
        )
        rows += cur.rowcount
        cur.execute(sql.SQL("INSERT INTO _fact SELECT * FROM {}").format(unknown))
        resolved = [n + m for n, m in zip(resolved, future.result()[: len(aliases)], strict=True)]
    return rows, {column: n for (column, _), n in zip(aliases, resolved, strict=True) if n}


def _resolve_aliases(
    cur: CursorWrapper, fact: FactTable, *, relation: str, batch_id: int | None = None
) -> dict[str, int]:
    """Point the rows that use a key a steward merged away at the right key; rows changed per fact column."""
    with_aliases = tables_with_aliases(cur)
    resolved = {}
    for column, table in fact.reference_columns.items():
        if table in with_aliases:
            rows = resolve_aliases(cur, relation=relation, column=column, table=table, batch_id=batch_id)
            if rows:
                resolved[column] = rows
    return resolved


def _build_name(fact: FactTable, batch: FactBatch) -> str:
    return f"{fact.name}_load_{batch.pk}"


def _place_months(
    cur: CursorWrapper,
    fact: FactTable,
    scope: list[str],
    batch: FactBatch,
    *,
    build: str,
    months: list[date],
    dry_run: bool = False,
    replace: bool = True,
    use_workers: bool = True,
) -> int:
    """Move the rows of the standalone table ``build`` into the month partitions; returns the rows replaced.

    A month whose partition holds no row outside the file's scope (or that has no partition yet) is built off-line
    (``build`` itself for a one-month file) with its indexes and foreign keys, then swapped in at the end; a month
    whose partition keeps rows outside the scope gets the rows inserted and its scope's earlier rows deleted.
    ``dry_run`` (rolled back afterwards): whole months are only counted, and ``build`` keeps every row of the batch.
    ``replace=False`` (an appending load): the rows are added to a month that exists, nothing is replaced.
    """
    shape = partitions.parent_shape(cur, fact.name)
    existing = partitions.month_partitions(cur, fact.name)
    single = len(months) == 1
    swaps: list[tuple[date, str]] = []
    replaced = 0
    # the month tables store their columns in another order than the parent (``partitions.build_table``): every
    # INSERT names them
    columns = idents(f.column for f in fact.model._meta.concrete_fields)
    names = {"fact": ident(fact.name), "build": ident(build), "month": ident(MONTH_COLUMN), "columns": columns}
    for month in months:
        old = existing.get(month)
        if old is not None and not replace:
            cur.execute(_month_rows.format(target=names["fact"], **names), [month])
            continue
        if old is None or not _rows_outside_scope(
            cur, old, build=build, month=month, scope=scope, use_workers=use_workers
        ):
            if dry_run:
                replaced += _count(cur, old) if old else 0
                continue
            table = build
            if not single:
                table = partitions.partition_name(build, month)
                partitions.build_table(cur, fact.name, table, month)
                cur.execute(_month_rows.format(target=ident(table), **names), [month])
            partitions.index(cur, table, shape)
            swaps.append((month, table))
        else:
            cur.execute(_month_rows.format(target=names["fact"], **names), [month])
            replaced += _replace_scope(cur, old, scope, batch)
    if not (single and swaps) and not dry_run:
        cur.execute(sql.SQL("DROP TABLE {}").format(ident(build)))
    if swaps:
        # Fire pending deferred checks (rows inserted into a partition) now: a table with pending trigger events
        # cannot be detached or dropped.
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("SET CONSTRAINTS ALL DEFERRED")
    for month, table in swaps:
        replaced += partitions.swap_in(cur, fact.name, month, table)
    return replaced


_month_rows = sql.SQL("INSERT INTO {target} ({columns}) SELECT {columns} FROM {build} WHERE {month} = %s")


def _count(cur: CursorWrapper, table: str) -> int:
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(ident(table)))
    rows: int = cur.fetchone()[0]
    return rows


def _rows_outside_scope(
    cur: CursorWrapper, partition: str, *, build: str, month: date, scope: list[str], use_workers: bool
) -> bool:
    """Whether the month ``partition`` holds scope values (besides 月度) that none of the file's rows of ``month``
    has: two hash aggregates (GROUP BY takes NULLs as equal, as the scope does), the partition's on a worker
    connection (``use_workers``) while this one aggregates ``build``, compared here."""
    columns = [c for c in scope if c != MONTH_COLUMN]
    if not columns:
        return False
    grouped = sql.SQL("SELECT {columns} FROM {table} {where} GROUP BY {columns}")
    held = grouped.format(columns=idents(columns), table=ident(partition), where=sql.SQL(""))
    brought = grouped.format(
        columns=idents(columns), table=ident(build), where=sql.SQL("WHERE {} = %s").format(ident(MONTH_COLUMN))
    )
    # Without statistics on the new table the planner expects few rows and sorts them all: hash instead.
    with ThreadPoolExecutor(max_workers=1) as pool, planner_setting(cur, "enable_sort", "off"):
        earlier = pool.submit(_distinct_rows, held) if use_workers else None
        cur.execute(brought, [month])
        found = set(cur.fetchall())
        if earlier is None:
            cur.execute(held)
            return not set(cur.fetchall()) <= found
        return not earlier.result() <= found


def _distinct_rows(statement: sql.Composed) -> set[tuple[Any, ...]]:
    """The rows of ``statement`` (a GROUP BY over committed rows), on a worker connection."""
    with csv_parts.worker_connection() as conn, conn.cursor() as cur:
        cur.execute("SET enable_sort = off")
        cur.execute(statement)
        return set(cur.fetchall())


def _replace_scope(cur: CursorWrapper, table: str, scope: list[str], batch: FactBatch) -> int:
    """Delete the earlier rows of the batch's scope (e.g. 月度 + 业务类型 + 计划类型) from ``table`` (a month
    partition); returns how many."""
    match = sql.SQL(" AND ").join(
        sql.SQL("t.{0} IS NOT DISTINCT FROM s.{0}" if c != MONTH_COLUMN else "t.{0} = s.{0}").format(ident(c))
        for c in scope
    )
    cur.execute(
        sql.SQL(
            "DELETE FROM {target} t USING (SELECT DISTINCT {scope} FROM {target} "
            "WHERE {batch} = %s) s WHERE {match} AND t.{batch} <> %s"
        ).format(target=ident(table), scope=idents(scope), batch=ident(BATCH_COLUMN), match=match),
        [batch.pk, batch.pk],
    )
    replaced: int = cur.rowcount
    return replaced
