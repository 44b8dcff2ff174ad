"""Rows of a ``config_file`` source, already read and validated by the config loader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class ConfigFileReader:
    path: str
    records: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path

    def columns(self) -> dict[str, str]:
        seen: dict[str, str] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record, ""))
        return seen

    def is_unique(self, column: str) -> bool:
        return False

    def max_length(self, column: str) -> int | None:
        return None

    def rows(self, columns: list[tuple[str, str]], **_: Any) -> Iterator[list[tuple[str | None, ...]]]:
        yield [tuple(_as_text(record.get(name), how) for name, how in columns) for record in self.records]


def _as_text(value: Any, how: str) -> str | None:
    """YAML scalars as text; keys and blanks are normalised in PostgreSQL as for every source."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
