"""Limits a workbook must respect before it is parsed: an .xlsx is a zip archive, and a small file can expand to
gigabytes in memory (a zip bomb). The central directory states every part's sizes; the zip reader calamine uses stops
with an error at a part's declared size, so checking the declared sizes is enough and costs no decompression.

The limits come from the settings (``REFGOV_XLSX_*``, ``REFGOV_FACT_MAX_ROWS_PER_SHEET``), or, before Django is set up
(the prefetch of ``manage.py process_facts``), from the same environment variables. This module imports nothing from
Django at import time."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

RATIO_MIN_BYTES = 1 << 20  # small parts (styles, themes) compress very well and harmlessly
SETTING_NAMES = {
    "max_uncompressed_bytes": "REFGOV_XLSX_MAX_UNCOMPRESSED_BYTES",
    "max_member_bytes": "REFGOV_XLSX_MAX_MEMBER_BYTES",
    "max_ratio": "REFGOV_XLSX_MAX_RATIO",
    "max_rows_per_sheet": "REFGOV_FACT_MAX_ROWS_PER_SHEET",
}


@dataclass(frozen=True)
class WorkbookLimits:
    max_uncompressed_bytes: int = 512 << 20
    max_member_bytes: int = 256 << 20
    max_ratio: int = 100
    max_rows_per_sheet: int = 500_000

    @classmethod
    def current(cls) -> WorkbookLimits:
        """From the Django settings when they are configured, else from the environment."""
        from django.conf import settings

        if not settings.configured:
            return cls.from_env()
        default = cls()
        return cls(
            **{f.name: int(getattr(settings, SETTING_NAMES[f.name], getattr(default, f.name))) for f in fields(cls)}
        )

    @classmethod
    def from_env(cls) -> WorkbookLimits:
        default = cls()
        return cls(
            **{f.name: int(os.environ.get(SETTING_NAMES[f.name]) or getattr(default, f.name)) for f in fields(cls)}
        )


DEFAULT_LIMITS = WorkbookLimits()


class ArchiveTooLarge(ValueError):
    """The workbook's archive exceeds a limit; the message names the part and the setting."""


def _mb(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MB" if size >= 1 << 20 else f"{size:,} bytes"


def check_archive(path: Path, limits: WorkbookLimits) -> None:
    """Raise ArchiveTooLarge when the declared sizes exceed ``limits``; zipfile.BadZipFile when it is not a zip."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > limits.max_member_bytes:
            raise ArchiveTooLarge(
                f"part {member.filename!r} expands to {_mb(member.file_size)}, more than the limit of "
                f"{_mb(limits.max_member_bytes)} (REFGOV_XLSX_MAX_MEMBER_BYTES); not parsed"
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_MIN_BYTES and ratio > limits.max_ratio:
            raise ArchiveTooLarge(
                f"part {member.filename!r} expands {ratio:,.0f} times ({_mb(member.compress_size)} to "
                f"{_mb(member.file_size)}), more than the limit of {limits.max_ratio} (REFGOV_XLSX_MAX_RATIO): "
                "a zip bomb?; not parsed"
            )
    if total > limits.max_uncompressed_bytes:
        raise ArchiveTooLarge(
            f"the workbook expands to {_mb(total)}, more than the limit of {_mb(limits.max_uncompressed_bytes)} "
            "(REFGOV_XLSX_MAX_UNCOMPRESSED_BYTES); not parsed"
        )
