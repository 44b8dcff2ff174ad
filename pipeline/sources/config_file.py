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

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record))
        return list(seen)

    def rows(self, columns: list[str], **_: Any) -> Iterator[list[tuple[str | None, ...]]]:
        yield [tuple(_as_text(record.get(c)) for c in columns) for record in self.records]


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
