"""Bulk field completion: set chosen fields on many rows at once, only where empty or overwriting."""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.db.models import Case, Expression, F, Q, QuerySet, Value, When

from reference.history import Action, stewardship_context
from reference.models import TrackedReference
from reference.registry import for_model, model_field, value_field
from stewardship.required import blank_q


def _changes(
    model: type[models.Model], values: dict[str, Any], clear: list[str], overwrite: bool
) -> tuple[dict[str, Expression], Q | None]:
    """(field name → new value expression, Q of rows where something changes)."""
    updates: dict[str, Expression] = {}
    changing: list[Q] = []
    for name, value in values.items():
        field = model_field(model, name)
        column, typed = field.attname, value_field(field)
        differs = ~Q(**{column: value}) | Q(**{f"{column}__isnull": True})
        where = differs if overwrite else blank_q(field)
        updates[column] = Case(
            When(where, then=Value(value, output_field=typed)), default=F(column), output_field=typed
        )
        changing.append(where)
    for name in clear:
        field = model_field(model, name)
        column = field.attname
        updates[column] = Value(None, output_field=value_field(field))
        changing.append(Q(**{f"{column}__isnull": False}))
    return updates, reduce(operator.or_, changing) if changing else None


def complete_preview(
    *, queryset: QuerySet[TrackedReference], values: dict[str, Any], clear: list[str], overwrite: bool
) -> int:
    """How many rows of ``queryset`` a completion would change."""
    _, changing = _changes(queryset.model, values, clear, overwrite)
    return queryset.filter(changing).count() if changing is not None else 0


@transaction.atomic
def complete(
    *,
    queryset: QuerySet[TrackedReference],
    values: dict[str, Any],
    clear: list[str],
    overwrite: bool,
    user: AbstractBaseUser,
) -> int:
    """Apply ``values`` (only to empty fields unless ``overwrite``) and empty the ``clear`` fields, in one UPDATE
    of the rows that change; returns their number."""
    overlap = set(values) & set(clear)
    if overlap:
        raise ValueError(f"fields both set and cleared: {', '.join(sorted(overlap))}")
    updates, changing = _changes(queryset.model, values, clear, overwrite)
    if changing is None:
        return 0
    rows = queryset.model.objects.filter(pk__in=queryset.filter(changing).values("pk"))
    with stewardship_context(user=user, action=Action.BULK_COMPLETE, table=for_model(queryset.model).name):
        return rows.update(**updates)
