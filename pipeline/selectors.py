"""Read-only queries on the fact tables and the pipeline's records (no writes): what the reference admin and the
stewardship services show about reference rows — where a row came from, which facts use it and when, and which
promoted rows still await the source."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple, NotRequired, TypedDict

from django.db import models
from django.db.models import Count, Exists, Max, OuterRef, QuerySet, Subquery, Sum
from django.db.models.fields.json import KT

from pipeline.fact_tables import fact_table, fact_table_names
from pipeline.models import DerivedReference, KeySuggestion, SyncUpgrade, UnmappedValue, ValueMapping
from reference.models import Source, TrackedReference
from reference.registry import get_table, model_field

CLOSING_ASSETS_FIELD = "closing_assets"


KeySuggestionColumns = dict[str, Subquery]


class FactRelation(NamedTuple):
    """A fact table's foreign key to a reference table: the fact model and the key's field name."""

    fact: type[models.Model]
    attr: str


def fact_relations(model: type[models.Model]) -> list[FactRelation]:
    """The foreign keys of every fact table (``pipeline.fact_tables``) that point at the reference ``model``."""
    return [
        FactRelation(fact, f.name)
        for fact in (fact_table(name).model for name in fact_table_names())
        for f in fact._meta.concrete_fields
        if f.is_relation and f.related_model is model
    ]


def _has_assets(fact: type[models.Model]) -> bool:
    return any(f.name == CLOSING_ASSETS_FIELD for f in fact._meta.concrete_fields)


class MonthUsage(TypedDict):
    month: dt.date
    rows: int
    assets: NotRequired[Decimal | None]  # only for fact tables with closing assets


@dataclass(frozen=True)
class FactMonths:
    """The facts of one fact table that use a reference row, per month (newest first)."""

    name: str  # the fact table
    label: str  # its verbose name, for people
    months: list[MonthUsage] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(m["rows"] for m in self.months)


def facts_by_month(*, model: type[TrackedReference], key: str, months: int | None = None) -> list[FactMonths]:
    """Per fact table using ``key``: fact rows (and closing assets where the table has them) per month, newest first,
    the last ``months`` months only if given. Fact tables without a row for ``key`` are left out."""
    found = []
    for fact, attr in fact_relations(model):
        sums: dict[str, Any] = {"assets": Sum(CLOSING_ASSETS_FIELD)} if _has_assets(fact) else {}
        per_month = (
            fact._default_manager.filter(**{attr: key})
            .order_by("-month")
            .values("month")
            .annotate(rows=Count("pk"), **sums)
        )
        rows: list[MonthUsage] = list(per_month[:months] if months is not None else per_month)
        if rows:
            found.append(FactMonths(name=fact._meta.db_table, label=str(fact._meta.verbose_name), months=rows))
    return found


def fact_rows_of_keys(*, model: type[TrackedReference], keys: Collection[str]) -> dict[str, int]:
    """Key → number of fact rows using it (keys no fact uses are left out): one GROUP BY per fact table however many
    keys are asked for."""
    counts: dict[str, int] = {}
    if not keys:
        return counts
    for fact, attr in fact_relations(model):
        column = model_field(fact, attr).attname
        grouped = (
            fact._default_manager.filter(**{f"{column}__in": list(keys)})
            .order_by()
            .values(column)
            .annotate(n=Count("pk"))
        )
        for row in grouped:
            counts[row[column]] = counts.get(row[column], 0) + row["n"]
    return counts


def provenance(*, table: str, key: str, limit: int) -> list[DerivedReference]:
    """The batches (file, sheet, rows) that derived the reference row, newest first."""
    return list(
        DerivedReference.objects.filter(table=table, key=key).select_related("batch").order_by("-created_at")[:limit]
    )


def promoted_rows(*, table: str) -> QuerySet[TrackedReference]:
    """Authoritative rows that began as auto-derived and that no preload has brought from the source since."""
    model = get_table(table).model
    upgraded = SyncUpgrade.objects.filter(table=table).values("key")
    return model.objects.filter(source=Source.AUTHORITATIVE, derived_from_domain__isnull=False).exclude(pk__in=upgraded)


class KeyUsage(NamedTuple):
    rows: int
    assets: Decimal | None


def usage_of_keys(*, model: type[TrackedReference], keys: Collection[str]) -> dict[str, KeyUsage]:
    """Key → fact rows and closing assets using it, over every fact table (one GROUP BY per fact table)."""
    rows: dict[str, int] = {}
    assets: dict[str, Decimal] = {}
    for fact, attr in fact_relations(model):
        column = model_field(fact, attr).attname
        sums: dict[str, Any] = {"assets": Sum(CLOSING_ASSETS_FIELD)} if _has_assets(fact) else {}
        grouped = (
            fact._default_manager.filter(**{f"{column}__in": list(keys)})
            .order_by()
            .values(column)
            .annotate(n=Count("pk"), **sums)
        )
        for row in grouped:
            key = row[column]
            rows[key] = rows.get(key, 0) + row["n"]
            if row.get("assets") is not None:
                assets[key] = assets.get(key, Decimal(0)) + row["assets"]
    return {key: KeyUsage(rows.get(key, 0), assets.get(key)) for key in keys}


def suggestions_for(*, table: str, key: str) -> list[KeySuggestion]:
    """The typo suggestions for an auto-derived key whose candidate row still exists, best first."""
    model = get_table(table).model
    existing = model._default_manager.filter(pk=OuterRef("candidate"))
    return list(KeySuggestion.objects.filter(table=table, key=key).filter(Exists(existing)).order_by("rank"))


def best_suggestion(*, table: str) -> KeySuggestionColumns:
    """Subqueries for a reference queryset's ``annotate``: each row's best suggested key and its score."""
    best = KeySuggestion.objects.filter(table=table, key=OuterRef("pk"), rank=1)
    return {
        "suggested_key": Subquery(best.values("candidate")[:1]),
        "suggestion_score": Subquery(best.values("score")[:1]),
    }


def best_quarantine_suggestion() -> dict[str, Any]:
    """For a ``QuarantinedRow`` queryset's ``annotate``: the first bad key's best suggested key and its score
    (``quarantine_table`` and ``quarantine_key`` name the bad key); one query with the page, none per row."""
    best = KeySuggestion.objects.filter(table=OuterRef("quarantine_table"), key=OuterRef("quarantine_key"), rank=1)
    return {
        "quarantine_table": KT("problems__0__table"),
        "quarantine_key": KT("problems__0__key"),
        "suggested_key": Subquery(best.values("candidate")[:1]),
        "suggestion_score": Subquery(best.values("score")[:1]),
    }


def with_suggestion(*, table: str, min_score: float = 0.0) -> Exists:
    """A filter: the row has a typo suggestion scoring at least ``min_score``."""
    return Exists(KeySuggestion.objects.filter(table=table, key=OuterRef("pk"), rank=1, score__gte=min_score))


def best_suggested_keys(*, table: str, keys: Collection[str]) -> dict[str, str]:
    """Key → its best suggested key, for the keys that have one (one query however many keys)."""
    return dict(KeySuggestion.objects.filter(table=table, key__in=list(keys), rank=1).values_list("key", "candidate"))


@dataclass(frozen=True)
class OpenValue:
    """A value still unmapped, over all batches."""

    table: str
    match: str
    source_column: str
    column: str
    value: str
    fallback: str | None
    rows: int
    batches: int
    last_batch: int


def open_unmapped() -> list[OpenValue]:
    """Values recorded as unmapped that are still unmapped (no mapping, no reference row matches them now), most
    rows first: what the review report lists."""
    mapped = {(m.table, m.match, m.value) for m in ValueMapping.objects.all()}
    grouped = (
        UnmappedValue.objects.values("table", "match", "source_column", "column", "value", "fallback")
        .annotate(total=Sum("rows"), batches=Count("batch", distinct=True), last=Max("batch"))
        .order_by("-total", "value")
    )
    result = []
    for g in grouped:
        if (g["table"], g["match"], g["value"]) in mapped:
            continue
        reference = get_table(g["table"])
        if reference.model._default_manager.filter(**{reference.data_fields[g["match"]].name: g["value"]}).exists():
            continue
        result.append(
            OpenValue(
                table=g["table"],
                match=g["match"],
                source_column=g["source_column"],
                column=g["column"],
                value=g["value"],
                fallback=g["fallback"],
                rows=g["total"],
                batches=g["batches"],
                last_batch=g["last"],
            )
        )
    return result
