"""Feedback to the source system: rows stewards promoted that the legacy database does not have yet, in the legacy
table's layout (its column names, per the preload's ``columns`` renames), for the team that owns it."""

from __future__ import annotations

from typing import Any, BinaryIO

import xlsxwriter
from django.db.models import QuerySet
from django.utils import timezone

from pipeline.config import load_config
from pipeline.config.schema import LegacyMySQLSource
from pipeline.selectors import promoted_rows
from reference.models import TrackedReference
from reference.registry import get_table
from refgov.formulae import XLSXWRITER_OPTIONS, escape_row

PROVENANCE_SHEET = "来源说明"


def legacy_columns(*, table: str) -> list[tuple[str, str]]:
    """(model attribute, legacy column name) in the table's column order."""
    source = load_config().config.preload.sources.get(table)
    renames = source.columns if isinstance(source, LegacyMySQLSource) else {}
    return [(field.attname, renames.get(column, column)) for column, field in get_table(table).data_fields.items()]


def write_feedback(*, table: str, queryset: QuerySet[TrackedReference], stream: BinaryIO) -> int:
    """Write the promoted rows of ``queryset`` as an xlsx workbook: the legacy layout, then their provenance (text that
    a spreadsheet could run as a formula is escaped, ``refgov.formulae``)."""
    columns = legacy_columns(table=table)
    rows = promoted_rows(table=table).filter(pk__in=queryset.values("pk")).order_by("pk")
    book = xlsxwriter.Workbook(stream, {"in_memory": True, "remove_timezone": True, **XLSXWRITER_OPTIONS})
    sheet = book.add_worksheet(table)
    sheet.write_row(0, 0, [legacy for _, legacy in columns])
    notes = book.add_worksheet(PROVENANCE_SHEET)
    notes.write_row(0, 0, [get_table(table).key_column, "_derived_from_domain", "_derived_at", "exported_at"])
    exported = timezone.localtime().strftime("%Y-%m-%d %H:%M")
    count = 0
    for count, row in enumerate(rows.iterator(chunk_size=2000), start=1):
        sheet.write_row(count, 0, escape_row(_cell(getattr(row, attr)) for attr, _ in columns))
        derived = timezone.localtime(row.derived_at).strftime("%Y-%m-%d %H:%M") if row.derived_at else ""
        notes.write_row(count, 0, escape_row([row.pk, row.derived_from_domain, derived, exported]))
    book.close()
    return count


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
