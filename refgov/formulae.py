"""Formula injection in exports: a text cell that a spreadsheet would run as a formula is written with a leading ``'``.

OWASP's CSV-injection rule: a text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed
with a single quote, so Excel, LibreOffice and WPS show it as text. A text that already starts with ``'`` (or with a
line feed, which is what an xlsx file gives back for a carriage return) is prefixed too, so that ``unescape_formula``
(used when a file comes back as an import) strips exactly one quote and every exported value returns unchanged.
xlsx writers must also write the escaped value as a string, never as a formula (``XLSXWRITER_OPTIONS``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"
_ESCAPED_STARTS = (*FORMULA_STARTS, "\n", ESCAPE)

#: XlsxWriter options for exports: text stays text (no formula, no hyperlink, no number guessed from a string).
XLSXWRITER_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}


def escape_formula(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is a text a spreadsheet could take for a formula; anything else as is."""
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        return ESCAPE + value
    return value


def unescape_formula(value: Any) -> Any:
    """The reverse of ``escape_formula`` for a value read back from an exported file."""
    if isinstance(value, str) and value.startswith(ESCAPE) and value[1:].startswith(_ESCAPED_STARTS):
        return value[1:]
    return value


def escape_row(values: Iterable[Any]) -> list[Any]:
    return [escape_formula(v) for v in values]
