"""Key rules and the quarantine: a new key with junk in it (white space, quotes, control characters) or that does not
match its table's ``key_patterns`` is never auto-derived.

A load finds such rows set-based in the staged ``_fact`` (the rows whose key the reference tables lack). Under
``invalid_keys: reject`` the file is refused, listing every bad key with its rows; under ``quarantine`` the rows
leave the fact table and ``_fact`` and are kept whole in ``QuarantinedRow`` (file, sheet, row, month, reason), where
a steward corrects the key (or remembers it as an alias of the right key) and resubmits the rows into their month as
a batch of their own. A quarantined key gets typo suggestions as a derived key does (the 隔离行 admin offers to correct
the rows by the best one).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from psycopg import sql

from pipeline.config import load_config, load_domain
from pipeline.config.domain_schema import ForeignKey, InvalidKeys
from pipeline.config.schema import ReferenceManagementConfig, Strategy, Suggestions
from pipeline.fact_tables import (
    BATCH_COLUMN,
    INTERNAL_COLUMNS,
    MONTH_COLUMN,
    SOURCE_ROW_COLUMN,
    FactTable,
    fact_table,
)
from pipeline.facts.derive import Origin, derive_references
from pipeline.facts.errors import FactLoadError
from pipeline.facts.readers import FactFile
from pipeline.facts.references import (
    resolve_aliases,
    tables_with_aliases,
    unknown_keys,
)
from pipeline.facts.suggestions import suggest_for_fact_keys
from pipeline.facts.usage import refresh_usage
from pipeline.models import (
    FactBatch,
    FactKind,
    FactStatus,
    KeyProblem,
    KeySuggestion,
    QuarantinedRow,
    QuarantineState,
    RejectedKey,
)
from reference.models import KeyAlias
from reference.registry import get_table
from refgov.db.locks import lock_for_transaction
from refgov.db.sql import column_name, ident, idents

#: white space (also no-break and ideographic), quotes of every kind, control characters: never part of a key
JUNK_PATTERN = "[[:space:][:cntrl:]\u00a0\u3000\ufeff\"'`\u2018\u2019\u201c\u201d\u300c\u300d\u300e\u300f]"
LISTED_KEYS = 200
REASONS = {
    KeyProblem.JUNK.value: "white space, quotes or control characters",
    KeyProblem.PATTERN.value: "does not match the key pattern",
    KeyProblem.REJECTED.value: "rejected by a steward",
}
ROW_SAMPLE = 20


class QuarantineError(Exception):
    """A correction or resubmission that cannot be done; nothing was changed."""


def _column(name: str) -> sql.Identifier:
    return sql.Identifier(column_name(QuarantinedRow, name))


def _quarantine_table() -> sql.Identifier:
    return sql.Identifier(QuarantinedRow._meta.db_table)


def set_aside_invalid_keys(
    cur: CursorWrapper,
    *,
    fact: FactTable,
    batch: FactBatch,
    file: FactFile,
    patterns: dict[str, str],
    mode: InvalidKeys,
    loaded: bool,
    relation: str | None = None,
    foreign_keys: list[ForeignKey] | None = None,
    suggestions: Suggestions | None = None,
) -> int:
    """Find the rows of ``_fact`` with a new key that breaks the key rules; refuse the file (``reject``) or move them
    to the quarantine (``loaded``: out of ``relation`` too — the load's month table, default the fact table — with
    typo suggestions for their keys when ``suggestions`` is given). Returns the rows set aside."""
    found = _find_invalid(cur, fact=fact, patterns=patterns, relation="_fact")
    if not found:
        cur.execute("DROP TABLE _invalid")
        return 0
    if mode == InvalidKeys.REJECT:
        where = file.path.name + (f" sheet {file.sheet}" if file.sheet else "")
        raise FactLoadError(
            f"{where}: {_listing(cur, found)}, nothing loaded (invalid_keys: reject): {_listed_keys(cur)}"
        )
    if loaded:
        _quarantine(cur, fact=fact, batch=batch, file=file)
        if suggestions is not None:
            suggest_for_quarantined(cur, fact=fact, batch=batch, foreign_keys=foreign_keys or [], settings=suggestions)
        cur.execute(
            sql.SQL("DELETE FROM {fact} t USING _invalid i WHERE t.{batch} = %s AND t.{row} = i._row").format(
                fact=ident(relation or fact.name), batch=ident(BATCH_COLUMN), row=ident(SOURCE_ROW_COLUMN)
            ),
            [batch.pk],
        )
    cur.execute("DELETE FROM _fact f USING _invalid i WHERE f._row = i._row")
    cur.execute("DROP TABLE _invalid")
    return found


def _find_invalid(cur: CursorWrapper, *, fact: FactTable, patterns: dict[str, str], relation: str) -> int:
    """The temporary table ``_invalid`` (``_row``, ``problems``) of the rows of ``relation`` with a key that the
    reference tables lack and that is junk or does not match its table's pattern; returns its rows."""
    params: dict[str, str] = {
        "junk": JUNK_PATTERN,
        "is_junk": KeyProblem.JUNK.value,
        "no_match": KeyProblem.PATTERN.value,
        "rejected": KeyProblem.REJECTED.value,
    }
    rejected_keys = sql.Identifier(RejectedKey._meta.db_table)
    rejected_columns = {f.name: sql.Identifier(f.column) for f in RejectedKey._meta.concrete_fields}
    checks = []
    for i, (column, table) in enumerate(sorted(fact.reference_columns.items())):
        reference = get_table(table)
        value = sql.SQL("f.{}").format(ident(column))
        pattern = sql.Placeholder(f"pattern_{i}")
        rejected = sql.SQL("EXISTS (SELECT FROM {x} x WHERE x.{table} = {t} AND x.{key} = {v})").format(
            x=rejected_keys,
            table=rejected_columns["table"],
            key=rejected_columns["key"],
            t=sql.Placeholder(f"table_{i}"),
            v=value,
        )
        broken = sql.SQL("({v} ~ %(junk)s OR {rejected})").format(v=value, rejected=rejected)
        reason: sql.Composable = sql.SQL("CASE WHEN {v} ~ %(junk)s THEN %(is_junk)s ELSE %(rejected)s END").format(
            v=value
        )
        if table in patterns:
            params[f"pattern_{i}"] = patterns[table]
            broken = sql.SQL("({v} ~ %(junk)s OR {v} !~ {p} OR {rejected})").format(
                v=value, p=pattern, rejected=rejected
            )
            reason = sql.SQL(
                "CASE WHEN {v} ~ %(junk)s THEN %(is_junk)s WHEN {v} !~ {p} THEN %(no_match)s ELSE %(rejected)s END"
            ).format(v=value, p=pattern)
        params[f"column_{i}"], params[f"table_{i}"] = column, table
        checks.append(
            sql.SQL(
                "CASE WHEN {v} IS NOT NULL AND {broken} AND NOT EXISTS (SELECT FROM {reference} r WHERE r.{key} = {v}) "
                "THEN jsonb_build_object('column', {c}::text, 'table', {t}::text, 'key', {v}, 'reason', {reason}) END"
            ).format(
                v=value,
                broken=broken,
                reference=ident(reference.name),
                key=ident(reference.key_column),
                c=sql.Placeholder(f"column_{i}"),
                t=sql.Placeholder(f"table_{i}"),
                reason=reason,
            )
        )
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _invalid ON COMMIT DROP AS SELECT _row, problems FROM "
            "(SELECT f._row, array_remove(ARRAY[{checks}], NULL) AS problems FROM {relation} f) p "
            "WHERE cardinality(problems) > 0"
        ).format(checks=sql.SQL(", ").join(checks), relation=sql.Identifier(relation)),
        params,
    )
    found: int = cur.rowcount
    return found


def supersede_quarantined(
    cur: CursorWrapper, *, fact: FactTable, scope: list[str], batch: FactBatch, relation: str | None = None
) -> int:
    """Pending quarantined rows of earlier batches whose scope (e.g. 月度 + 业务类型 + 计划类型) this batch has just
    replaced: their file is no longer what the fact table holds, so they are no longer to be resubmitted."""
    if not QuarantinedRow.objects.filter(state=QuarantineState.PENDING, fact_table=fact.name).exists():
        return 0
    match = sql.SQL(" AND ").join(
        sql.SQL("(q.{data} ->> {name}) IS NOT DISTINCT FROM s.{column}::text").format(
            data=_column("data"), name=sql.Literal(c), column=ident(c)
        )
        for c in scope
    )
    cur.execute(
        sql.SQL(
            "UPDATE {quarantine} q SET {state} = %s FROM (SELECT DISTINCT {scope} FROM {fact} WHERE {batch} = %s) s "
            "WHERE q.{state} = %s AND q.{fact_table} = %s AND q.{batch_id} <> %s AND {match}"
        ).format(
            quarantine=_quarantine_table(),
            state=_column("state"),
            scope=idents(scope),
            fact=ident(relation or fact.name),
            batch=ident(BATCH_COLUMN),
            fact_table=_column("fact_table"),
            batch_id=_column("batch"),
            match=match,
        ),
        [QuarantineState.SUPERSEDED.value, batch.pk, QuarantineState.PENDING.value, fact.name, batch.pk],
    )
    superseded: int = cur.rowcount
    return superseded


def _listing(cur: CursorWrapper, rows: int) -> str:
    cur.execute("SELECT count(DISTINCT (p->>'table', p->>'key')) FROM _invalid i, unnest(i.problems) p")
    return f"{cur.fetchone()[0]} keys in {rows} rows break the key rules"


def _listed_keys(cur: CursorWrapper) -> str:
    """Every bad key of ``_invalid`` with its reason and (the first) rows."""
    cur.execute(
        """
        SELECT p->>'table', p->>'key', p->>'reason', (array_agg(i._row ORDER BY i._row))[1:%s], count(*)
        FROM _invalid i, unnest(i.problems) p GROUP BY 1, 2, 3 ORDER BY 1, 2
        """,
        [ROW_SAMPLE],
    )
    keys = cur.fetchall()
    listed = "; ".join(
        f"{table} {key!r} ({REASONS[reason]}; rows {', '.join(map(str, sample))}"
        + (f" and {n - len(sample)} more" if n > len(sample) else "")
        + ")"
        for table, key, reason, sample, n in keys[:LISTED_KEYS]
    )
    return listed + (f"; and {len(keys) - LISTED_KEYS} more keys" if len(keys) > LISTED_KEYS else "")


# The columns a quarantining INSERT fills, in its SELECT's order.
INSERTED = [
    "batch",
    "domain",
    "fact_table",
    "file_name",
    "sheet",
    "row_number",
    "month",
    "bad_keys",
    "problems",
    "data",
    "state",
    "resolved_by",
    "created_at",
]


def _inserted_columns() -> sql.Composed:
    return sql.SQL(", ").join(_column(c) for c in INSERTED)


def _quarantine(cur: CursorWrapper, *, fact: FactTable, batch: FactBatch, file: FactFile) -> None:
    cur.execute(
        sql.SQL(
            """
            INSERT INTO {table} ({columns})
            SELECT %(batch)s, %(domain)s, %(fact)s, %(file)s, %(sheet)s, f._row, f.{month},
                   left((SELECT string_agg((p->>'column') || '=' || (p->>'key'), '; ') FROM unnest(i.problems) p), 500),
                   to_jsonb(i.problems), to_jsonb(f) - '_row', %(state)s, '', %(now)s
            FROM _fact f JOIN _invalid i USING (_row)
            """
        ).format(
            table=_quarantine_table(),
            columns=_inserted_columns(),
            month=ident(MONTH_COLUMN),
        ),
        {
            "batch": batch.pk,
            "domain": batch.domain,
            "fact": fact.name,
            "file": file.path.name,
            "sheet": file.sheet or "",
            "state": QuarantineState.PENDING.value,
            "now": timezone.now(),
        },
    )


def quarantine_rows_of_key(cur: CursorWrapper, *, fact: FactTable, column: str, table: str, key: str, note: str) -> int:
    """Move the rows of ``fact`` whose ``column`` holds ``key`` (of ``table``) from the fact table to the quarantine,
    whole, with the problem "rejected by a steward" and ``note``; their batch, file, sheet and row stay theirs.
    Returns the rows moved."""
    batch = {f.name: sql.Identifier(f.column) for f in FactBatch._meta.concrete_fields}
    problems = [{"column": column, "table": table, "key": key, "reason": KeyProblem.REJECTED.value, "note": note}]
    cur.execute(
        sql.SQL(
            """
            WITH moved AS (DELETE FROM {fact} f WHERE f.{column} = %(key)s RETURNING f.*)
            INSERT INTO {table} ({columns})
            SELECT m.{batch_column}, b.{domain}, %(fact)s, b.{file}, b.{sheet}, m.{source_row}, m.{month},
                   left(%(bad)s, 500), %(problems)s::jsonb, to_jsonb(m) - {internal}, %(state)s, '', now()
            FROM moved m JOIN {batches} b ON b.{id} = m.{batch_column}
            """
        ).format(
            fact=ident(fact.name),
            column=ident(column),
            table=_quarantine_table(),
            columns=_inserted_columns(),
            batch_column=ident(BATCH_COLUMN),
            domain=batch["domain"],
            file=batch["file_name"],
            sheet=batch["sheet"],
            source_row=ident(SOURCE_ROW_COLUMN),
            month=ident(MONTH_COLUMN),
            internal=sql.SQL(" - ").join(sql.Literal(c) for c in sorted(INTERNAL_COLUMNS)),
            batches=sql.Identifier(FactBatch._meta.db_table),
            id=batch["id"],
        ),
        {
            "key": key,
            "fact": fact.name,
            "bad": f"{column}={key}",
            "problems": json.dumps(problems, ensure_ascii=False),
            "state": QuarantineState.PENDING.value,
        },
    )
    moved: int = cur.rowcount
    return moved


def suggest_for_quarantined(
    cur: CursorWrapper, *, fact: FactTable, batch: FactBatch, foreign_keys: list[ForeignKey], settings: Suggestions
) -> int:
    """Typo suggestions for the bad keys of the rows ``_invalid`` just quarantined (pattern mismatches, and junk that
    still has letters or digits of a key), as for a derived key: a key's names and parent are the most frequent
    values of the fact columns its table's derive rules read. Returns the suggestions stored."""
    stored = 0
    for column, table in sorted(fact.reference_columns.items()):
        per_table = settings.tables.get(table)
        if per_table is None or not settings.enabled:
            continue
        derive = next((fk.derive for fk in foreign_keys if fk.source_column == column), {})
        wanted = [*per_table.names, *([per_table.siblings] if per_table.siblings else [])]
        reads = {name: rule.column for name in wanted if (rule := derive.get(name)) and rule.column}  # of _fact
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE _suggest_rows ON COMMIT DROP AS SELECT p->>'key' AS _key, {columns} "
                "FROM _invalid i JOIN _fact f USING (_row), unnest(i.problems) p "
                "WHERE p->>'column' = %s AND (p->>'reason' = %s OR p->>'key' ~ '[0-9A-Za-z]')"
            ).format(columns=idents(sorted(set(reads.values())) or [column], prefix="f")),
            [column, KeyProblem.PATTERN.value],
        )
        if cur.rowcount:
            stored += suggest_for_fact_keys(
                cur,
                table=table,
                relation="_suggest_rows",
                key_column="_key",
                name_columns=reads,
                parent_column=reads.get(per_table.siblings) if per_table.siblings else None,
                batch_id=batch.pk,
                settings=settings,
            )
        cur.execute("DROP TABLE _suggest_rows")
    return stored


def quarantine_note(rows: int, *, loaded: bool) -> str:
    """The batch message's part about the rows set aside."""
    if not rows:
        return ""
    if loaded:
        return f"; quarantined {rows} rows with invalid keys (see 隔离行)"
    return f"; {rows} rows with invalid keys not derived"


# --- the steward's side --------------------------------------------------------------------------------------------


@dataclass
class Resubmitted:
    batches: list[FactBatch] = field(default_factory=list)
    rows: int = 0


def _user_name(user: AbstractBaseUser | None) -> str:
    return user.get_username() if user is not None else ""


@transaction.atomic
def correct_quarantined(
    *, ids: list[int], table: str, wrong_key: str, right_key: str, remember_alias: bool, user: AbstractBaseUser
) -> int:
    """In the pending quarantined rows ``ids``, replace ``wrong_key`` of ``table`` by ``right_key`` (an existing
    key); ``remember_alias``: later loads resolve ``wrong_key`` to ``right_key`` directly (a ``KeyAlias``, as a
    merge leaves). Returns the rows corrected."""
    reference = get_table(table)
    right_key = right_key.strip()
    if not right_key:
        raise QuarantineError("the right key is empty")
    if not reference.model._default_manager.filter(pk=right_key).exists():
        config = load_config().config
        with connection.cursor() as cur:
            cur.execute("SELECT refgov_norm_key(%s)", [right_key])
            right_key = cur.fetchone()[0] or ""
            if not reference.model._default_manager.filter(pk=right_key).exists():
                if _derivation_blocked(config):
                    raise QuarantineError(f"{table} has no row with key {right_key!r}: create or preload it first")
                if problem := _key_problem(cur, table=table, key=right_key, patterns=config.key_patterns):
                    raise QuarantineError(f"{right_key!r} cannot be a key of {table}: {problem}")
    if remember_alias:
        alias, created = KeyAlias.objects.get_or_create(
            table=table, alias=wrong_key, defaults={"canonical": right_key, "created_by": _user_name(user)}
        )
        if not created and alias.canonical != right_key:
            raise QuarantineError(f"{table}: {wrong_key!r} is already an alias of {alias.canonical!r}")
    rows = QuarantinedRow.objects.select_for_update().filter(pk__in=ids, state=QuarantineState.PENDING)
    changed = []
    for row in rows:  # the rows a steward selected in the admin: a page at most
        problems = [p for p in row.problems if p["table"] == table and p["key"] == wrong_key]
        if not problems:
            continue
        for problem in problems:
            row.data[problem["column"]] = right_key
        row.problems = [p for p in row.problems if p not in problems]
        row.bad_keys = "; ".join(f"{p['column']}={p['key']}" for p in row.problems)
        changed.append(row)
    QuarantinedRow.objects.bulk_update(changed, ["data", "problems", "bad_keys"])
    return len(changed)


@transaction.atomic
def resubmit_quarantined(*, ids: list[int], user: AbstractBaseUser) -> Resubmitted:
    """Load the pending quarantined rows ``ids`` into their fact table and month, one batch per original batch.
    Keys a steward merged away since are resolved; every key must now exist. Refused (nothing changed) when a key is
    still unknown, or when a later load replaced the rows' scope (its file holds the month now)."""
    rows = list(
        QuarantinedRow.objects.select_for_update()
        .filter(pk__in=ids, state=QuarantineState.PENDING)
        .order_by("batch_id", "row_number")
    )
    _refuse_rejected(rows)
    result = Resubmitted()
    by_table: dict[str, list[QuarantinedRow]] = defaultdict(list)
    for row in rows:
        by_table[row.fact_table].append(row)
    with connection.cursor() as cur:
        for table_name, table_rows in by_table.items():
            _resubmit_rows(cur, fact_table(table_name), table_rows, user=user, result=result)
    return result


@dataclass
class CorrectedBySuggestion:
    corrected: int = 0  # rows whose bad keys were all corrected
    left: int = 0  # selected pending rows with a bad key no suggestion covers (not resubmitted)
    resubmitted: Resubmitted = field(default_factory=Resubmitted)


@transaction.atomic
def correct_by_suggestions(*, ids: list[int], user: AbstractBaseUser) -> CorrectedBySuggestion:
    """Correct each bad key of the pending quarantined rows ``ids`` to its best typo suggestion (remembered as an
    alias, so later loads resolve it directly) and resubmit the rows left without a bad key. All or nothing."""
    rows = list(QuarantinedRow.objects.filter(pk__in=ids, state=QuarantineState.PENDING).values_list("pk", "problems"))
    wanted = {(p["table"], p["key"]) for _, problems in rows for p in problems}
    best: dict[tuple[str, str], str] = {}
    for table in {t for t, _ in wanted}:
        keys = [k for t, k in wanted if t == table]
        for key, candidate in KeySuggestion.objects.filter(table=table, key__in=keys, rank=1).values_list(
            "key", "candidate"
        ):
            best[(table, key)] = candidate
    by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pk, problems in rows:
        for p in problems:
            if (p["table"], p["key"]) in best:
                by_key[(p["table"], p["key"])].append(pk)
    for (table, wrong_key), row_ids in sorted(by_key.items()):
        correct_quarantined(
            ids=row_ids,
            table=table,
            wrong_key=wrong_key,
            right_key=best[(table, wrong_key)],
            remember_alias=True,
            user=user,
        )
    done = [
        pk
        for pk, problems in QuarantinedRow.objects.filter(pk__in=[pk for pk, _ in rows]).values_list("pk", "problems")
        if not problems
    ]
    result = CorrectedBySuggestion(corrected=len(done), left=len(rows) - len(done))
    if done:
        result.resubmitted = resubmit_quarantined(ids=done, user=user)
    return result


def _resubmit_rows(
    cur: CursorWrapper, fact: FactTable, rows: list[QuarantinedRow], *, user: AbstractBaseUser, result: Resubmitted
) -> None:
    columns = list(fact.columns)
    for month in sorted({r.month for r in rows if r.month}):
        lock_for_transaction(cur, f"refgov.facts.{fact.name}.{month}")
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE _resubmit ON COMMIT DROP AS SELECT q.{id} AS _id, q.{batch} AS _batch, "
            "q.{row} AS _row, {columns} FROM {quarantine} q, jsonb_populate_record(NULL::{fact}, q.{data}) r "
            "WHERE q.{id} = ANY(%s)"
        ).format(
            id=_column("id"),
            batch=_column("batch"),
            row=_column("row_number"),
            columns=idents(columns, prefix="r"),
            quarantine=_quarantine_table(),
            fact=ident(fact.name),
            data=_column("data"),
        ),
        [[r.pk for r in rows]],
    )
    with_aliases = tables_with_aliases(cur)
    for column, table in fact.reference_columns.items():
        if table in with_aliases:
            resolve_aliases(cur, relation="_resubmit", column=column, table=table)
    config = load_config().config
    if _derivation_blocked(config):
        _refuse_unknown_keys(cur, fact)
    else:
        _refuse_invalid_keys(cur, fact, config.key_patterns)
    _refuse_superseded(cur, fact, rows)
    originals = {r.batch_id: r.batch for r in rows}
    for batch_id, original in originals.items():
        part = [r for r in rows if r.batch_id == batch_id]
        batch = FactBatch.objects.create(
            domain=original.domain,
            file_name=original.file_name,
            file_path=original.file_path,
            sheet=original.sheet,
            checksum=original.checksum,
            kind=FactKind.RESUBMIT,
            status=FactStatus.LOADED,
            periods=sorted({r.month.isoformat() for r in part if r.month}),
            rows_read=len(part),
            rows_loaded=len(part),
            message=(
                f"resubmitted {len(part)} quarantined rows of batch #{batch_id} ({original.file_name}) "
                f"by {_user_name(user)}"
            ),
            finished_at=timezone.now(),
        )
        batch.new_references = _derive_keys(
            cur, fact, original=original, batch=batch, months=sorted({r.month for r in part if r.month}), config=config
        )
        batch.save(update_fields=["new_references"])
        cur.execute(
            sql.SQL(
                "INSERT INTO {fact} ({source_row}, {columns}, {batch_column}) "
                "SELECT _row, {columns}, %s FROM _resubmit WHERE _batch = %s"
            ).format(
                fact=ident(fact.name),
                source_row=ident(SOURCE_ROW_COLUMN),
                columns=idents(columns),
                batch_column=ident(BATCH_COLUMN),
            ),
            [batch.pk, batch_id],
        )
        cur.execute(
            sql.SQL(
                "UPDATE {quarantine} q SET {data} = to_jsonb(s) - '_id' - '_batch' - '_row', {state} = %s, "
                "{resubmitted} = %s, {by} = %s, {at} = %s FROM _resubmit s WHERE q.{id} = s._id AND s._batch = %s"
            ).format(
                quarantine=_quarantine_table(),
                data=_column("data"),
                state=_column("state"),
                resubmitted=_column("resubmitted_batch"),
                by=_column("resolved_by"),
                at=_column("resolved_at"),
                id=_column("id"),
            ),
            [QuarantineState.RESUBMITTED.value, batch.pk, _user_name(user), timezone.now(), batch_id],
        )
        result.batches.append(batch)
        result.rows += len(part)
    for column, table in fact.reference_columns.items():
        cur.execute(sql.SQL("SELECT DISTINCT {0} FROM _resubmit WHERE {0} IS NOT NULL").format(ident(column)))
        refresh_usage(table=table, keys=[k for (k,) in cur.fetchall()])
    cur.execute("DROP TABLE _resubmit")


def _refuse_rejected(rows: list[QuarantinedRow]) -> None:
    """Rows that still carry a key a steward rejected are not resubmitted (the load would derive the key again)
    unless the key exists again (the rejection was undone, or the source brought it)."""
    rejected = {
        (p["table"], p["key"]) for r in rows for p in r.problems if p.get("reason") == KeyProblem.REJECTED.value
    }
    back = {(t, k) for t, k in rejected if get_table(t).model._default_manager.filter(pk=k).exists()}
    still = sorted(rejected - back)
    if still:
        listed = ", ".join(f"{t} {k!r}" for t, k in still[:LISTED_KEYS])
        raise QuarantineError(f"rows carry keys a steward rejected: {listed}; correct them first")


def _derivation_blocked(config: ReferenceManagementConfig) -> bool:
    """preload_only, or backfill disabled: a key nobody has is not derived (as in a load)."""
    return config.strategy == Strategy.PRELOAD_ONLY or not config.backfill.enabled


def _key_problem(cur: CursorWrapper, *, table: str, key: str, patterns: dict[str, str]) -> str | None:
    """Why a new ``key`` of ``table`` breaks the key rules, or None."""
    cur.execute(
        "SELECT %s ~ %s, %s !~ coalesce(%s, '')",
        [key, JUNK_PATTERN, key, patterns.get(table)],
    )
    junk, no_match = cur.fetchone()
    if junk:
        return REASONS[KeyProblem.JUNK.value]
    if no_match:
        return f"{REASONS[KeyProblem.PATTERN.value]} {patterns[table]!r}"
    return None


def _refuse_invalid_keys(cur: CursorWrapper, fact: FactTable, patterns: dict[str, str]) -> None:
    found = _find_invalid(cur, fact=fact, patterns=patterns, relation="_resubmit")
    if found:
        message = f"{_listing(cur, found)}: {_listed_keys(cur)}. Correct them first"
        raise QuarantineError(message)
    cur.execute("DROP TABLE _invalid")


def _derive_keys(
    cur: CursorWrapper,
    fact: FactTable,
    *,
    original: FactBatch,
    batch: FactBatch,
    months: list[date],
    config: ReferenceManagementConfig,
) -> dict[str, int]:
    """Derive the reference rows the resubmitted rows of ``original`` need (keys that passed the key rules), as a load
    does: auto-derived, pending review, with provenance and typo suggestions. Returns the rows derived per table."""
    cur.execute(
        sql.SQL("CREATE TEMP TABLE _fact ON COMMIT DROP AS SELECT _row, {} FROM _resubmit WHERE _batch = %s").format(
            idents(fact.columns)
        ),
        [original.pk],
    )
    loaded = load_domain(original.domain)
    origin = Origin(batch=batch, file_name=original.file_name, sheet=original.sheet, months=months)
    counts: dict[str, int] = {}
    for fk in loaded.fk_order:
        found = unknown_keys(cur, fk)
        if found:
            derived = derive_references(
                cur,
                fk,
                found=found,
                pending=[],
                domain=loaded.config,
                origin=origin,
                mark_for_review=config.backfill.mark_for_review,
                suggestions=config.stewardship.suggestions,
            )
            counts[fk.target_table] = len(derived.inserted)
    cur.execute("DROP TABLE _fact")
    return counts


def _refuse_unknown_keys(cur: CursorWrapper, fact: FactTable) -> None:
    unknown = []
    for column, table in sorted(fact.reference_columns.items()):
        reference = get_table(table)
        cur.execute(
            sql.SQL(
                "SELECT s.{c}, array_agg(s._row ORDER BY s._row) FROM _resubmit s WHERE s.{c} IS NOT NULL "
                "AND NOT EXISTS (SELECT FROM {reference} r WHERE r.{key} = s.{c}) GROUP BY 1 ORDER BY 1"
            ).format(c=ident(column), reference=ident(reference.name), key=ident(reference.key_column))
        )
        unknown += [
            f"{table} {key!r} (rows {', '.join(map(str, found[:ROW_SAMPLE]))})" for key, found in cur.fetchall()
        ]
    if unknown:
        raise QuarantineError(
            f"{len(unknown)} keys are still unknown: {'; '.join(unknown[:LISTED_KEYS])}. Correct them to an "
            "existing key, or add the key to its table first"
        )


def _refuse_superseded(cur: CursorWrapper, fact: FactTable, rows: list[QuarantinedRow]) -> None:
    """A later load of the same scope (e.g. month + 业务类型 + 计划类型) replaced the rows' file in the fact table."""
    scope = _scope_of(fact, rows)
    match = sql.SQL(" AND ").join(sql.SQL("t.{0} IS NOT DISTINCT FROM s.{0}").format(ident(c)) for c in scope)
    cur.execute(
        sql.SQL(
            """
            SELECT s._row, s.{month}, min(t.{batch}) FROM _resubmit s
            JOIN {fact} t ON {match} AND t.{batch} > s._batch
            JOIN {batches} b ON b.{batch_id} = t.{batch} AND b.{kind} = %s
            GROUP BY 1, 2 ORDER BY 1
            """
        ).format(
            month=ident(MONTH_COLUMN),
            batch=ident(BATCH_COLUMN),
            fact=ident(fact.name),
            match=match,
            batches=sql.Identifier(FactBatch._meta.db_table),
            batch_id=sql.Identifier(column_name(FactBatch, "id")),
            kind=sql.Identifier(column_name(FactBatch, "kind")),
        ),
        [FactKind.FACTS.value],
    )
    superseded = cur.fetchall()
    if superseded:
        listed = ", ".join(
            f"row {row} ({month:%Y-%m}, batch #{later})" for row, month, later in superseded[:ROW_SAMPLE]
        )
        raise QuarantineError(
            f"{len(superseded)} rows belong to a month a later file loaded again: {listed}. Correct that file instead"
        )


def _scope_of(fact: FactTable, rows: list[QuarantinedRow]) -> list[str]:
    """The replace scope of the rows' domain (their batches name it)."""
    domains = {r.domain for r in rows}
    scopes = {tuple(load_domain(d).config.replace_scope) for d in domains}
    return sorted({c for s in scopes for c in s if c in fact.columns}, key=lambda c: c != MONTH_COLUMN)
