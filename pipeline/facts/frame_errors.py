"""The errors of loading a frame (``pipeline.facts.frames``), importable before Django is set up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.facts.readers import FactFileError


class FrameError(FactFileError):
    """A frame cannot be loaded. ``str(exc)``: ``<source>, row N, column C: reason``; ``row`` is the position in the
    frame (``df.iloc[row]``), ``column`` the fact column (after aliases); either is ``None`` where it does not apply."""

    def __init__(self, source: str, reason: str, *, row: int | None = None, column: str | None = None) -> None:
        self.source = source
        super().__init__(Path(source), reason, row=row, column=column)

    def __str__(self) -> str:
        where = [self.source]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.reason}"

    def __reduce__(self) -> tuple[Callable[..., FrameError], tuple[Any, ...]]:
        return (_rebuild, (type(self), self.source, self.reason, self.row, self.column))


def _rebuild(kind: type[FrameError], source: str, reason: str, row: int | None, column: str | None) -> FrameError:
    return kind(source, reason, row=row, column=column)


class MissingColumnError(FrameError):
    """A required column is missing (or two frame columns mean the same fact column)."""


class WrongTypeError(FrameError):
    """A value of a type the column cannot hold: text in a number column, a list, an infinite number, …"""


class BadMonthError(FrameError):
    """A 月度 value that is not a month."""


class ValueTooLongError(FrameError):
    """A value longer than its column (a key: longer than the reference table's key column)."""
