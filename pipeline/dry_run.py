"""Dry runs: the same code path as a real run, inside a transaction that is rolled back at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import transaction

T = TypeVar("T")


def rolled_back_if(dry_run: bool, work: Callable[[], T]) -> T:
    """Run ``work``; with ``dry_run`` everything it wrote is rolled back afterwards, and its result returned."""
    if not dry_run:
        return work()
    with transaction.atomic():
        result = work()
        transaction.set_rollback(True)
    return result
