"""What a fact file is by its name and how its names are compared: suffixes, the trimming of header cells and sheet
names. Imports nothing (the command-line prefetch uses it before Django starts)."""

from __future__ import annotations

import re
from collections.abc import Sequence

EXCEL_SUFFIXES = frozenset({".xlsx", ".xlsm"})
TEXT_SUFFIXES = frozenset({".csv", ".txt"})

_TRIM = re.compile(r"^[\s\ufeff\u200b]+|[\s\ufeff\u200b]+$")
# The characters ``trim`` removes (``\s`` is ``str.isspace``, whose last character is U+3000), for SQL's btrim.
BLANK_CHARACTERS = "".join(c for c in map(chr, range(0x3001)) if c.isspace()) + "\ufeff\u200b"


def trim(text: str) -> str:
    """Remove surrounding whitespace, including full-width spaces (U+3000), NBSP and a BOM."""
    return _TRIM.sub("", text)


def sheets_named(available: Sequence[str], sheet: str) -> list[str]:
    """The sheets whose name is ``sheet``, both trimmed."""
    wanted = trim(sheet)
    return [name for name in available if trim(name) == wanted]
