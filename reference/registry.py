"""The one registry of reference tables: table name → model, business key, columns and dependencies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from graphlib import CycleError, TopologicalSorter
from typing import Any, NamedTuple

from django.db import models
from psycopg import sql

from .models import AnnuityPlan, Organization, PortfolioPlan, ProductLine, TrackedReference

#: The tracking columns of the hybrid strategy (``TrackedReference``): model field names, and database columns.
TRACKING_FIELDS: tuple[str, ...] = tuple(f.name for f in TrackedReference._meta.local_fields)
TRACKING_COLUMNS: tuple[str, ...] = tuple(f.column for f in TrackedReference._meta.local_fields)


def tracking_column(field_name: str) -> str:
    """The database column of a tracking field (``"source"`` → ``"_source"``)."""
    return TRACKING_COLUMNS[TRACKING_FIELDS.index(field_name)]


SCHEMA = "business"


class UnknownTable(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown reference table {self.name!r} (known: {', '.join(sorted(table_names()))})"


class DependencyCycle(ValueError):
    pass


@dataclass(frozen=True)
class ReferenceTable:
    name: str
    model: type[TrackedReference]

    @property
    def key_column(self) -> str:
        return self.model._meta.pk.column

    @property
    def qualified_name(self) -> str:
        return sql.Identifier(SCHEMA, self.name).as_string()

    @property
    def data_fields(self) -> dict[str, models.Field]:
        """Business columns (db column → field), key first, tracking columns excluded."""
        return {f.column: f for f in self.model._meta.concrete_fields if f.column not in TRACKING_COLUMNS}

    @property
    def parents(self) -> dict[str, str]:
        """Foreign-key column → referenced reference table."""
        by_model: dict[type[models.Model], str] = {t.model: t.name for t in _tables().values()}
        return {
            f.column: by_model[f.related_model]
            for f in self.model._meta.concrete_fields
            if isinstance(f.related_model, type) and f.related_model in by_model
        }

    @property
    def depends_on(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.parents.values())))


@cache
def _tables() -> dict[str, ReferenceTable]:
    entries: list[type[TrackedReference]] = [AnnuityPlan, PortfolioPlan, ProductLine, Organization]
    return {m._meta.db_table: ReferenceTable(name=m._meta.db_table, model=m) for m in entries}


def table_names() -> list[str]:
    return list(_tables())


def get_table(name: str) -> ReferenceTable:
    try:
        return _tables()[name]
    except KeyError:
        raise UnknownTable(name) from None


def all_tables() -> list[ReferenceTable]:
    return list(_tables().values())


def for_model(model: type[models.Model]) -> ReferenceTable:
    for table in _tables().values():
        if table.model is model:
            return table
    raise UnknownTable(model.__name__)


def model_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """A concrete field of ``model`` by name (``_meta.get_field`` would also find reverse relations)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a concrete field")
    return field


def value_field(field: models.Field[Any, Any]) -> models.Field[Any, Any]:
    """The field whose type ``field``'s values have: the referenced key for a foreign key, else ``field`` itself."""
    return field.target_field if isinstance(field, models.ForeignKey) else field


def trigram_indexed_columns(model: type[models.Model]) -> set[str]:
    """Database columns of ``model`` with a trigram index (``gin_trgm_ops``, see ``models.trigram_index``)."""
    return {
        model_field(model, index.fields[0]).column
        for index in model._meta.indexes
        if "gin_trgm_ops" in getattr(index, "opclasses", ()) and len(index.fields) == 1
    }


class ChildRelation(NamedTuple):
    """A reference table's foreign key to another reference table: the child table, its model and the key's field."""

    table: str
    model: type[TrackedReference]
    attr: str


def child_relations(model: type[models.Model]) -> list[ChildRelation]:
    """The foreign keys of reference tables whose rows point at ``model``."""
    return [
        ChildRelation(t.name, t.model, f.name)
        for t in all_tables()
        for f in t.model._meta.concrete_fields
        if f.is_relation and f.related_model is model
    ]


def dependency_order(
    names: Iterable[str] | None = None, extra_depends_on: Mapping[str, Iterable[str]] | None = None
) -> list[str]:
    """Topological order (parents first) of the given tables, using model FKs plus configured ``depends_on``."""
    wanted = list(names) if names is not None else table_names()
    graph: dict[str, set[str]] = {}
    for name in table_names():
        deps = set(get_table(name).depends_on)
        deps.update((extra_depends_on or {}).get(name, ()))
        graph[name] = deps
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " → ".join(exc.args[1])
        raise DependencyCycle(f"dependency cycle: {cycle}") from None
    wanted_set = set(wanted)
    return [n for n in order if n in wanted_set]
