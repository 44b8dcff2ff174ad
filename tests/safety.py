"""Tests refuse any database whose name does not look like a test database (a fixture once dropped production)."""

import re

TEST_NAME = re.compile(r"^test_[a-z0-9_]+$")


class NotATestDatabase(RuntimeError):
    pass


def require_test_database(name: str, *, what: str) -> str:
    if not TEST_NAME.fullmatch(name or ""):
        raise NotATestDatabase(
            f"refusing to use {what} database {name!r}: test database names must match {TEST_NAME.pattern}"
        )
    return name
