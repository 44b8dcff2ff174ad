"""Required fields per reference table (``stewardship.required_fields``): what must be filled before a promote."""

from __future__ import annotations

import operator
from functools import lru_cache, reduce
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from pipeline.config import load_config
from pipeline.config.loader import MAIN_FILE
from reference.registry import get_table


def required_fields(table: str) -> list[models.Field]:
    """The model fields of the table's required database columns, in configured order."""
    main = Path(settings.REFGOV_CONFIG_DIR) / MAIN_FILE
    try:
        stamp = main.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = 0  # load_config names the missing file
    columns = _required_columns(str(main), stamp).get(table, [])
    by_column = get_table(table).data_fields
    return [by_column[c] for c in columns]


@lru_cache(maxsize=8)
def _required_columns(main: str, stamp: int) -> dict[str, list[str]]:
    """Per config file version: an admin page asks once per row, the YAML is read once per change of the file."""
    return load_config(Path(main).parent).config.stewardship.required_fields


def _blank(field: models.Field) -> Q:
    """The row has no value for ``field`` (NULL, or an empty or blank text)."""
    name = field.attname if field.is_relation else field.name
    empty = Q(**{f"{name}__isnull": True})
    if isinstance(field, (models.CharField, models.TextField)):
        empty |= Q(**{f"{name}__regex": r"^\s*$"})
    return empty


def missing_q(fields: list[models.Field]) -> Q:
    """Rows missing at least one of ``fields`` (which must not be empty)."""
    return reduce(operator.or_, (_blank(f) for f in fields))


def blank_q(field: models.Field) -> Q:
    return _blank(field)


def is_blank(value: Any) -> bool:
    """No value, as the required-field rule sees it (None, or an empty or blank text)."""
    return value is None or (isinstance(value, str) and not value.strip())


def missing_of(obj: models.Model, fields: list[models.Field]) -> list[models.Field]:
    """The fields ``obj`` leaves empty."""
    return [field for field in fields if is_blank(getattr(obj, field.attname))]
