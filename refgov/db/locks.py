"""Named PostgreSQL advisory locks: one holder at a time across processes and hosts (a name is hashed with
``hashtext``). A session lock is released when its session ends, however the process ended."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.db.backends.utils import CursorWrapper


def lock_for_transaction(cur: CursorWrapper, name: str) -> None:
    """Wait for the lock ``name`` and hold it until the current transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])


def try_session_lock(name: str) -> bool:
    """Take the session lock ``name`` if nobody holds it; ``False`` if somebody does."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [name])
        return bool(cur.fetchone()[0])


def release_session_lock(name: str) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])


@contextmanager
def session_lock(name: str) -> Iterator[bool]:
    """Hold the session lock ``name`` for the block if nobody else holds it; yields whether it was taken."""
    taken = try_session_lock(name)
    try:
        yield taken
    finally:
        if taken:
            release_session_lock(name)


def is_locked(name: str) -> bool:
    """Whether some session holds the lock ``name`` right now."""
    if not try_session_lock(name):
        return True
    release_session_lock(name)
    return False
