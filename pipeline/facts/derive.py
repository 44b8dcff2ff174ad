"""Auto-derived reference rows for the new keys of the staged rows ``_fact``: the one implementation a load
(``service``) and a resubmission of quarantined rows (``quarantine``) share.

For one foreign key: the candidates' values from the rows (``derive_candidates``), the rows inserted pending review,
their typo suggestions, the pending rows the batch now fills, and the provenance of every row it derived or filled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.backends.utils import CursorWrapper

from pipeline.config.domain_schema import DomainConfig, ForeignKey
from pipeline.config.schema import Suggestions
from pipeline.facts.references import (
    DerivedTable,
    UnknownKey,
    derive_candidates,
    fill_pending,
    insert_derived,
    template_values,
)
from pipeline.facts.suggestions import suggest_for_new_keys
from pipeline.models import DerivedReference, FactBatch
from reference.history import Action, change_context


@dataclass(frozen=True)
class Origin:
    """Where the rows of ``_fact`` come from: the batch that derives, the file (and sheet) its provenance names, and
    the months whose templates the derived values use."""

    batch: FactBatch
    file_name: str
    sheet: str
    months: list[date]


def derive_references(
    cur: CursorWrapper,
    fk: ForeignKey,
    *,
    found: list[UnknownKey],
    pending: list[UnknownKey],
    domain: DomainConfig,
    origin: Origin,
    mark_for_review: bool,
    suggestions: Suggestions,
) -> DerivedTable:
    """Insert a row for each key of ``found`` (keys the reference table lacks) and fill what the rows know of the
    auto-derived rows of ``pending`` (keys still pending review), with provenance and typo suggestions."""
    derived = DerivedTable(table=fk.target_table, unknown=found, pending=pending)
    values = template_values(origin.months, domain.domain, origin.file_name) if origin.months else {}
    candidates = derive_candidates(
        cur,
        fk,
        [u.key for u in found + pending],
        temporary_company_id=domain.keys.temporary_company_id,
        template_values=values,
    )
    unknown = {u.key for u in found}
    inserted = set(
        insert_derived(
            cur,
            fk,
            [c for c in candidates if c.key in unknown],
            domain=domain.domain,
            mark_for_review=mark_for_review,
        )
    )
    derived.inserted = sorted(inserted)
    suggest_for_new_keys(
        cur, table=fk.target_table, keys=derived.inserted, batch_id=origin.batch.pk, settings=suggestions
    )
    derived.candidates = [c for c in candidates if c.key in inserted]
    if pending:
        with change_context(action=Action.BACKFILL, batch_id=origin.batch.pk, domain=domain.domain):
            derived.filled = fill_pending(cur, fk, [c for c in candidates if c.key not in unknown])
    DerivedReference.objects.bulk_create(
        DerivedReference(
            table=fk.target_table,
            key=u.key,
            batch=origin.batch,
            file_name=origin.file_name,
            sheet=origin.sheet,
            row_numbers=u.rows,
            fact_rows=u.fact_rows,
        )
        for u in found + pending
        if u.key in inserted or u.key in derived.filled
    )
    return derived
