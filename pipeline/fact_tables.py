"""The fact tables by name: their model, columns and reference foreign keys."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.db import models

from pipeline.models import IncomeFact, ScaleFact
from reference.registry import for_model

INTERNAL_COLUMNS = {"id", "_batch_id", "_source_row"}


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
            f.column: for_model(f.related_model).name
            for f in self.model._meta.concrete_fields
            if f.is_relation and f.column not in INTERNAL_COLUMNS
        }


@cache
def _tables() -> dict[str, FactTable]:
    return {m._meta.db_table: FactTable(name=m._meta.db_table, model=m) for m in (ScaleFact, IncomeFact)}


def fact_table(name: str) -> FactTable:
    return _tables()[name]


def fact_table_names() -> list[str]:
    return list(_tables())
