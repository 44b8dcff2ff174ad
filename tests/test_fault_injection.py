"""A fact load killed with SIGKILL at any moment leaves the database exactly as before or exactly as after the load.

Ten real ``manage.py process_facts`` processes load a 150k–200k-row 规模明细 CSV (parallel parts, unknown keys to
derive; every other file larger than the table, so both the bulk path — indexes and foreign keys rebuilt — and the
in-place path run) and are killed at ten moments spread over the load: start-up and reading, staging (COPY, a worker's
part), the fact insert, the scope replacement, deriving references, index builds, foreign-key validation, provenance
and usage, and after the commit. The moment is found by watching the load's own queries in ``pg_stat_activity``.
After each kill: the business state (fact rows, reference rows, provenance, usage) equals the state before or the
state after that file's load, a rerun of the same file succeeds, and no batch is left ``running``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection

from pipeline.demo.facts import SCALE_COLUMNS, FactWorkbook
from pipeline.demo.legacy import LegacyDataset
from pipeline.models import FactBatch, FactStatus
from reference.registry import all_tables
from tests.facts_support import create_references

APP_NAME = "refgov-fault-load"
PART_APP_NAME = "refgov fact copy part"
BASE_ROWS = 190_000


@dataclass(frozen=True)
class Moment:
    """Where to kill: ``seconds`` after start, or when the load runs a query matching ``pattern`` (``part``: a
    worker's query). With ``lock``, the test holds that table in EXCLUSIVE mode so that the load stops at its first
    write to it, and the kill lands exactly there."""

    name: str
    pattern: str | None = None
    part: bool = False
    seconds: float | None = None
    lock: str | None = None


MOMENTS = [
    Moment("start-up and reading the file", seconds=0.4),
    Moment("staging: the load's COPY", pattern="COPY %"),
    Moment("staging: a worker's COPY of a part", pattern="COPY %", part=True),
    Moment("inserting the facts", pattern='INSERT INTO "规模明细_load_%'),
    Moment("swapping the month's partition", pattern="%DETACH PARTITION%", lock="规模明细"),
    Moment("finding the rows of unknown keys", pattern="INSERT INTO _fact %"),
    Moment("building indexes", pattern="CREATE INDEX%"),
    Moment("inserting derived references", pattern='%INSERT INTO "组合计划"%', lock="组合计划"),
    Moment("attaching the month, validating its foreign keys", pattern="%ATTACH PARTITION%"),
    Moment("after the commit", pattern="%pipeline_alert%", lock="pipeline_alert"),
]
AFTER_COMMIT = MOMENTS[-1]


def _dsn() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _connect(**kwargs) -> psycopg.Connection:
    return psycopg.connect(_dsn(), options="-c search_path=public,business", **kwargs)


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DJANGO_SETTINGS_MODULE": "refgov.settings.dev",
        "DATABASE_URL": _dsn(),
        "REFGOV_REPORTS_DIR": str(tmp_path / "reports"),
        "REFGOV_FACT_PARALLEL_MIN_BYTES": str(1 << 20),
        "PGAPPNAME": APP_NAME,
    }


def _command(path: Path) -> list[str]:
    manage = str(django_settings.BASE_DIR / "manage.py")
    return [sys.executable, manage, "process_facts", "--domain", "annuity_performance", str(path), "--force", "--json"]


def write_files(tmp_path: Path, count: int) -> list[Path]:
    """``count`` CSVs of one month: shared rows plus 10k rows on keys new to each file; odd files are 150k rows."""
    legacy = LegacyDataset(plans=30, portfolios=40)
    base = tmp_path / "base.csv"
    FactWorkbook(month="202411", scale_rows=BASE_ROWS, new_share=0.0, legacy=legacy).write_csv(base)
    header, *lines = base.read_bytes().splitlines(keepends=True)
    files = []
    for k in range(count):
        rnd = random.Random(k)
        own = FactWorkbook(
            month="202411", scale_rows=10_000, new_plans=5, new_portfolios=8, new_share=1.0, seed=k, legacy=legacy
        )
        tail = [",".join(str(v) for v in row).encode() + b"\r\n" for row in own.iter_rows("规模明细")]
        # keys new to this file only (the demo generator's new keys repeat across seeds)
        tail = [line.replace(b"N90", f"K{k:02d}".encode()).replace(b"XNP70", f"Y{k:02d}".encode()) for line in tail]
        kept = lines if k % 2 == 0 else lines[: BASE_ROWS - 50_000]
        rnd.shuffle(tail)
        path = tmp_path / f"scale_{k:02d}.csv"
        path.write_bytes(header + b"".join(kept) + b"".join(tail))
        files.append(path)
    assert header.decode().strip().split(",") == SCALE_COLUMNS
    return files


def state(cur: psycopg.Cursor) -> dict[str, tuple]:
    """The business state a load may change, without ids, batch ids and timestamps: count and order-free hash."""
    found = {}
    for table in all_tables():
        columns = [f.column for f in table.model._meta.concrete_fields if f.column != "_derived_at"]
        found[table.name] = _hash(cur, f'"{table.name}"', columns)
    cur.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = '\"规模明细\"'::regclass AND attnum > 0 "
        "AND NOT attisdropped AND attname NOT IN ('id', '_batch_id')"
    )
    found["规模明细"] = _hash(cur, '"规模明细"', [r[0] for r in cur.fetchall()])
    found["provenance"] = _hash(cur, "pipeline_derivedreference", ["table", "key", "file_name", "row_numbers"])
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND c.relname LIKE '%%usage%%' AND n.nspname IN ('public', 'business')"
    )
    for (usage,) in cur.fetchall():
        cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "AND attname NOT IN ('id', 'refreshed_at', 'updated_at')",
            [f'"{usage}"'],
        )
        found[usage] = _hash(cur, f'"{usage}"', [r[0] for r in cur.fetchall()])
    return found


def _hash(cur: psycopg.Cursor, relation: str, columns: list[str]) -> tuple:
    row = ", ".join(f'"{c}"' for c in columns)
    cur.execute(f"SELECT count(*), coalesce(sum(hashtextextended(ROW({row})::text, 0)), 0) FROM {relation}")
    return tuple(cur.fetchone())


def _load_query(watch: psycopg.Connection, moment: Moment) -> str | None:
    """The load's current query if it matches the moment (and, with a lock, waits for it)."""
    waiting = "AND wait_event_type = 'Lock'" if moment.lock else ""
    found = watch.execute(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s "
        f"AND state = 'active' AND query LIKE %s {waiting} LIMIT 1",
        [PART_APP_NAME if moment.part else APP_NAME, moment.pattern],
    ).fetchone()
    return found[0] if found else None


def kill_at(moment: Moment, path: Path, env: dict[str, str], watch: psycopg.Connection) -> str:
    """Run the load and SIGKILL it at ``moment``; returns what the load was doing then ("finished" if too late)."""
    with _connect() as holder:
        if moment.lock:
            holder.execute(f'LOCK TABLE "{moment.lock}" IN EXCLUSIVE MODE')
        proc = subprocess.Popen(_command(path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, seen = time.monotonic(), None
        try:
            while proc.poll() is None and time.monotonic() - started < 300:
                if moment.seconds is not None:
                    if time.monotonic() - started >= moment.seconds:
                        seen = f"{moment.seconds} s after start"
                else:
                    seen = _load_query(watch, moment)
                if seen:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.003)
        finally:
            proc.wait(timeout=60)
            holder.rollback()
    return seen or "finished"


@pytest.mark.django_db(transaction=True)
def test_a_load_killed_at_ten_moments_leaves_before_or_after(tmp_path):
    create_references()
    files = write_files(tmp_path, len(MOMENTS))
    env = _env(tmp_path)
    hit: list[str] = []
    with _connect(autocommit=True) as watch, watch.cursor() as cur:
        for moment, path in zip(MOMENTS, files, strict=True):
            before = state(cur)
            doing = kill_at(moment, path, env, watch)
            hit.append(f"{moment.name}: {doing[:80]}")
            killed = state(cur)

            rerun = subprocess.run(_command(path), env=env, capture_output=True, text=True, timeout=300)
            assert rerun.returncode == 0, f"rerun after a kill at {moment.name}: {rerun.stderr}"
            summary = json.loads(rerun.stdout)["files"][0]
            assert summary["status"] == "loaded" and summary["rows_loaded"] == summary["rows_read"]
            after = state(cur)

            assert killed in (before, after), f"killed at {moment.name} ({doing}): neither before nor after"
            if moment is AFTER_COMMIT:
                assert killed == after, "a kill after the commit lost the load"
            assert before != after, f"{path.name} changes nothing: the test would prove nothing"
            assert not FactBatch.objects.filter(status=FactStatus.RUNNING).exists(), (
                f"after a kill at {moment.name} and a rerun, a batch is still running"
            )

    mid_load = [h for h in hit if not h.endswith("finished")]
    print("\n".join(hit))
    assert len(mid_load) >= 8, "too few kills landed inside a load:\n" + "\n".join(hit)
    statuses = set(FactBatch.objects.values_list("status", flat=True))
    assert statuses <= {FactStatus.LOADED, FactStatus.ABANDONED}, statuses
    inside_a_batch = [h for h in mid_load if not h.startswith((MOMENTS[0].name, AFTER_COMMIT.name))]
    assert FactBatch.objects.filter(status=FactStatus.ABANDONED).count() >= len(inside_a_batch)
