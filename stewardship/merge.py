"""Merge a wrong auto-derived key (typically a typo) into the right key: facts and child rows are re-pointed, the
wrong row removed, and the alias remembered so that later fact loads resolve the typo directly."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from pipeline.facts.usage import refresh_usage
from pipeline.selectors import fact_relations, facts_by_month
from reference.history import Action, stewardship_context
from reference.models import KeyAlias, MergeRecord, Source
from reference.registry import child_relations, get_table
from reference.selectors import child_rows


class MergeRefused(Exception):
    """The merge cannot be done; nothing was changed."""


@dataclass
class MergeImpact:
    table: str
    wrong_key: str
    fact_rows: dict[str, int] = field(default_factory=dict)
    months: list[str] = field(default_factory=list)
    child_rows: dict[str, int] = field(default_factory=dict)

    @property
    def total_fact_rows(self) -> int:
        return sum(self.fact_rows.values())


@dataclass
class MergeResult:
    impact: MergeImpact
    right_key: str
    aliases_moved: int = 0
    context_id: uuid.UUID | None = None


def merge_impact(*, table: str, wrong_key: str) -> MergeImpact:
    """What a merge of ``wrong_key`` would touch: fact rows per fact table, their months, child reference rows."""
    model = get_table(table).model
    facts = facts_by_month(model=model, key=wrong_key)
    return MergeImpact(
        table=table,
        wrong_key=wrong_key,
        fact_rows={f.name: f.rows for f in facts},
        months=sorted({m["month"].strftime("%Y-%m") for f in facts for m in f.months}),
        child_rows=child_rows(model=model, key=wrong_key),
    )


@transaction.atomic
def merge(*, table: str, wrong_key: str, right_key: str, user: AbstractBaseUser) -> MergeResult:
    """Re-point everything from ``wrong_key`` to ``right_key``, delete the wrong row, remember the alias."""
    model = get_table(table).model
    if wrong_key == right_key:
        raise MergeRefused(f"{table}: cannot merge {wrong_key!r} into itself")
    rows = {str(r.pk): r for r in model.objects.select_for_update().filter(pk__in=[wrong_key, right_key])}
    if wrong_key not in rows:
        raise MergeRefused(f"{table}: no row with key {wrong_key!r}")
    if right_key not in rows:
        raise MergeRefused(f"{table}: no row with key {right_key!r} to merge {wrong_key!r} into")
    if rows[wrong_key].source != Source.AUTO_DERIVED:
        raise MergeRefused(f"{table}: {wrong_key!r} is authoritative; only auto-derived rows can be merged away")
    impact = merge_impact(table=table, wrong_key=wrong_key)
    with stewardship_context(
        user=user, action=Action.MERGE, table=table, wrong_key=wrong_key, right_key=right_key
    ) as context_id:
        fact_ids = {}
        for fact, attr in fact_relations(model):
            ids = list(fact._default_manager.filter(**{attr: wrong_key}).values_list("pk", flat=True))
            fact._default_manager.filter(pk__in=ids).update(**{attr: right_key})
            fact_ids[fact._meta.db_table] = ids
        for _, child, attr in child_relations(model):
            child.objects.filter(**{attr: wrong_key}).update(**{attr: right_key})
        moving = KeyAlias.objects.filter(table=table, canonical=wrong_key)
        moved_aliases = list(moving.values_list("alias", flat=True))
        moving.update(canonical=right_key)
        previous = KeyAlias.objects.filter(table=table, alias=wrong_key).values_list("canonical", flat=True).first()
        KeyAlias.objects.update_or_create(
            table=table, alias=wrong_key, defaults={"canonical": right_key, "created_by": getattr(user, "username", "")}
        )
        rows[wrong_key].delete()
        MergeRecord.objects.create(
            context_id=context_id,
            table=table,
            wrong_key=wrong_key,
            right_key=right_key,
            fact_ids=fact_ids,
            moved_aliases=moved_aliases,
            previous_alias=previous,
        )
    refresh_usage(table=table, keys=[wrong_key, right_key])
    return MergeResult(impact=impact, right_key=right_key, aliases_moved=len(moved_aliases), context_id=context_id)


def undo_merges(*, context_id: uuid.UUID) -> int:
    """Inside an undo of ``context_id`` (after its reference rows are back): re-point the facts to the wrong key and
    put the aliases back as they were. Returns the fact rows re-pointed."""
    repointed = 0
    for record in MergeRecord.objects.select_for_update().filter(context_id=context_id, undone=False):
        model = get_table(record.table).model
        for fact, attr in fact_relations(model):
            ids = record.fact_ids.get(fact._meta.db_table, [])
            repointed += fact._default_manager.filter(pk__in=ids, **{attr: record.right_key}).update(
                **{attr: record.wrong_key}
            )
        KeyAlias.objects.filter(table=record.table, alias__in=record.moved_aliases).update(canonical=record.wrong_key)
        if record.previous_alias is None:
            KeyAlias.objects.filter(table=record.table, alias=record.wrong_key).delete()
        else:
            KeyAlias.objects.filter(table=record.table, alias=record.wrong_key).update(canonical=record.previous_alias)
        record.undone = True
        record.save(update_fields=["undone"])
        refresh_usage(table=record.table, keys=[record.wrong_key, record.right_key])
    return repointed
