"""The fact tables by name: their model, columns and reference foreign keys."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.db import models

from pipeline.models import IncomeFact, ScaleFact
from reference.registry import for_model
from refgov.db.sql import column_name

# Columns every fact table has (``FactRow``), and the closing assets the review queue's weights sum.
MONTH_COLUMN = column_name(ScaleFact, "month")
BATCH_COLUMN = column_name(ScaleFact, "batch")
SOURCE_ROW_COLUMN = column_name(ScaleFact, "source_row")
CLOSING_ASSETS = column_name(ScaleFact, "closing_assets")
INTERNAL_COLUMNS = {column_name(ScaleFact, "id"), BATCH_COLUMN, SOURCE_ROW_COLUMN}


@dataclass(frozen=True)
class FactTable:
    name: str
    model: type[models.Model]

    @property
    def columns(self) -> dict[str, models.Field]:
        """Business columns (db column → field), without the id, batch and source-row columns."""
        return {f.column: f for f in self.model._meta.concrete_fields if f.column not in INTERNAL_COLUMNS}

    @property
    def reference_columns(self) -> dict[str, str]:
        """Foreign-key column → reference table it points to."""
        return {
            f.column: for_model(_related_model(f)).name
            for f in self.model._meta.concrete_fields
            if f.is_relation and f.column not in INTERNAL_COLUMNS
        }


def _related_model(field: models.Field) -> type[models.Model]:
    model = field.related_model
    if not isinstance(model, type):
        raise TypeError(f"{field} points to no model")
    return model


@cache
def _tables() -> dict[str, FactTable]:
    return {m._meta.db_table: FactTable(name=m._meta.db_table, model=m) for m in (ScaleFact, IncomeFact)}


def fact_table(name: str) -> FactTable:
    return _tables()[name]


def fact_table_names() -> list[str]:
    return list(_tables())
