"""How an exception is shown in one line (run messages, alerts, command output)."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first non-blank line of the exception's text, or its type's name when it has no text."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "") or type(exc).__name__
