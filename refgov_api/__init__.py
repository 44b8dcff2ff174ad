"""refgov's ETL API: load a month of facts held as a DataFrame, or only derive the references it needs.

    import refgov_api
    result = refgov_api.load_facts(df, domain="annuity_performance", source="etl_202411")

Accepts pandas DataFrames and pyarrow Tables (polars: ``df.to_arrow()``). Inside a Django project whose settings
are refgov's (a management command, a django-q task, ``manage.py shell``) it runs as it is; in a plain script the
first call runs :func:`setup` (``DJANGO_SETTINGS_MODULE``, default ``refgov.settings.dev``; ``DATABASE_URL`` and
``REFGOV_CONFIG_DIR`` as for ``manage.py``).

Transactions: each call is one transaction. Called while the caller's transaction is open (``transaction.atomic``),
it joins it: its work is a savepoint, which a failure rolls back (the caller's earlier work stays, the exception
propagates, and the rejected batch record is written in the caller's transaction); its rows, references and batch
record commit or roll back with the caller's transaction, the month locks are held until then, and the new-keys
notification is sent only when the caller's transaction commits.

This package is the top layer (import-linter): it imports ``pipeline`` only, and only when called, so that importing
it does not need Django to be configured.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pipeline.facts.frame_errors import (
    BadMonthError,
    FrameError,
    MissingColumnError,
    ValueTooLongError,
    WrongTypeError,
)

if TYPE_CHECKING:
    from pipeline.facts.frames import BatchResult, DerivationResult
    from pipeline.facts.staging import Progress

__all__ = [
    "BadMonthError",
    "FrameError",
    "MissingColumnError",
    "ValueTooLongError",
    "WrongTypeError",
    "ensure_references",
    "load_facts",
    "setup",
]

DEFAULT_SETTINGS = "refgov.settings.dev"


def setup(settings_module: str | None = None) -> None:
    """Configure Django for a script that is not a Django project: ``settings_module``, else
    ``DJANGO_SETTINGS_MODULE``, else ``refgov.settings.dev`` (production: ``refgov.settings.production``, which needs
    ``DJANGO_SECRET_KEY``). Does nothing when Django is set up already."""
    import django
    from django.apps import apps
    from django.conf import settings

    if apps.ready:
        return
    if not settings.configured:
        if settings_module:
            os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
        else:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    django.setup()


def load_facts(
    data: Any,
    *,
    domain: str,
    source: str = "dataframe",
    replace: bool = True,
    allow_empty: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Phases 2+3 for a frame: its rows into the domain's fact table with the references they need, one transaction,
    the same normalisation, checks and scope replacement as a file. ``source`` is the batch's label (its file name);
    ``replace=False`` appends instead of replacing the earlier rows of the frame's scope (e.g. 月度 + 业务类型 +
    计划类型). Raises a :class:`FrameError` naming row (position in the frame) and column; nothing is loaded then."""
    setup()
    from pipeline.facts import frames

    return frames.load_facts(
        data, domain=domain, source=source, replace=replace, allow_empty=allow_empty, progress=progress
    )


def ensure_references(
    data: Any, *, domain: str, source: str = "dataframe", progress: Progress | None = None
) -> DerivationResult:
    """Phase 3 only: derive (with provenance, notification and a ``references`` batch record) the reference rows the
    frame's unknown keys need; loads no facts."""
    setup()
    from pipeline.facts import frames

    return frames.ensure_references(data, domain=domain, source=source, progress=progress)
