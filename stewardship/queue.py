"""The review queue's pages: pending rows by business weight, read in the order of the usage table's weight index.

Sorting every pending row (100k of them, each joined to its plan and usage row) to show the first hundred costs a
third of a second; walking the weight index and stopping after one page costs a few milliseconds. Usage columns are
never NULL, so the rows that have a usage row come first in the queue's ordering and the rows without one (not yet
weighed) follow them by age: the pages are the same as those of the ordered queryset."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import F, QuerySet

WEIGHT_ORDERING = (
    F("usage__closing_assets").desc(nulls_last=True),
    F("usage__fact_rows").desc(nulls_last=True),
    "derived_at",
)
# ChangeList appends the primary key for a total order; the paginator repeats it.
TIEBREAK = "-pk"


class WeightOrderedPaginator(Paginator):
    """Pages of a reference queryset in ``WEIGHT_ORDERING`` (the queryset's own ordering is replaced by it)."""

    object_list: QuerySet[Any]

    def page(self, number: int | str) -> Page:
        number = self.validate_number(number)
        offset = (number - 1) * self.per_page
        keys = self._page_keys(offset, self.per_page)
        rows = {row.pk: row for row in self.object_list.order_by().filter(pk__in=keys)}
        return Page([rows[k] for k in keys if k in rows], number, self)

    def _page_keys(self, offset: int, limit: int) -> list[Any]:
        base = self.object_list.order_by()
        weighed = base.filter(usage__isnull=False).order_by(*WEIGHT_ORDERING, TIEBREAK).values_list("pk", flat=True)
        keys = list(weighed[offset : offset + limit])
        if len(keys) == limit:
            return keys
        # Past the weighed rows: how many there are, then the unweighed ones by age.
        weighed_rows = offset + len(keys) if keys or not offset else weighed.count()
        unweighed = base.filter(usage__isnull=True).order_by("derived_at", TIEBREAK).values_list("pk", flat=True)
        start = max(offset - weighed_rows, 0)
        return keys + list(unweighed[start : start + limit - len(keys)])
