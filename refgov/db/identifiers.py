"""Identifiers from config files reach SQL only after passing this check (letters, digits, _ and CJK)."""

import re

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_\u3400-\u4dbf\u4e00-\u9fff]{1,64}$")


def check_identifier(value: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"unsafe identifier {value!r}: use 1-64 letters, digits, underscores or Chinese characters")
    return value


def quote_mysql(identifier: str) -> str:
    """A MySQL name in backticks (PostgreSQL names are composed with ``refgov.db.sql``)."""
    return f"`{check_identifier(identifier)}`"
