"""The review queue at size (issue 12): its pages are read through the usage weight index, yet show exactly the rows
and order of the weight-ordered queryset — across the boundary between weighed and unweighed rows, with filters and
search, and with a column the steward sorts by — and the number of queries does not grow with the rows."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipeline.models import KeySuggestion
from reference.models import PortfolioPlan, Source
from reference.permissions import STEWARD_GROUP
from stewardship.queue import TIEBREAK, WEIGHT_ORDERING

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("config_copy")]
QUEUE = reverse("admin:reference_portfolioplan_changelist") + "?needs_review__exact=1"


@pytest.fixture
def steward(django_user_model) -> Client:
    user = django_user_model.objects.create_user(username="steward", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    client = Client()
    client.force_login(user)
    return client


def build(*, portfolios: int, every: int, start: int = 1) -> None:
    """``portfolios`` portfolios, every ``every``-th pending; most pending rows weighed (with ties), some not, and the
    heaviest usage rows on rows that are not pending (they must never show). Two domains, some typo suggestions."""
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO "年金计划" ("年金计划号", _source, _needs_review) VALUES ('P0000001', 'authoritative', false)
            ON CONFLICT DO NOTHING;
            INSERT INTO "组合计划" ("组合代码", "年金计划号", "组合名称", _source, _needs_review, _derived_from_domain,
                                   _derived_at)
            SELECT 'Q' || lpad(i::text, 8, '0'), 'P0000001', '组合' || i,
                   CASE WHEN i %% %(every)s = 0 THEN 'auto_derived' ELSE 'authoritative' END, i %% %(every)s = 0,
                   CASE WHEN i %% %(every)s <> 0 THEN NULL
                        WHEN i %% 3 = 0 THEN 'annuity_income' ELSE 'annuity_performance' END,
                   CASE WHEN i %% %(every)s = 0 THEN timestamp '2026-01-01' + (i %% 40) * interval '1 day' END
            FROM generate_series(%(start)s, %(start)s + %(n)s - 1) i;
            -- weighed: pending rows whose number is not a multiple of 7 (ties on both weight columns), and
            -- non-pending rows with the largest weights of all
            INSERT INTO reference_portfolioplanusage (row_id, fact_rows, closing_assets, months, refreshed_at)
            SELECT "组合代码", n %% 5, (n %% 23) * 1000.0, 1, now()
            FROM (SELECT "组合代码", substr("组合代码", 2)::int AS n FROM "组合计划"
                  WHERE substr("组合代码", 2)::int BETWEEN %(start)s AND %(start)s + %(n)s - 1) r
            WHERE n %% %(every)s = 0 AND n %% 7 <> 0 OR n %% %(every)s = 1 AND n %% 11 = 0
            ON CONFLICT DO NOTHING;
            UPDATE reference_portfolioplanusage SET closing_assets = closing_assets + 1e9
            WHERE substr(row_id, 2)::int %% %(every)s = 1;
            """,
            {"every": every, "start": start, "n": portfolios},
        )
    KeySuggestion.objects.bulk_create(
        KeySuggestion(table="组合计划", key=f"Q{i:08d}", candidate="Q00000001", rank=1, score=0.5 + (i % 5) / 10)
        for i in range(start, start + portfolios)
        if i % every == 0 and i % 13 == 0
    )


def expected(queryset=None) -> list[str]:
    queryset = queryset if queryset is not None else PortfolioPlan.objects.filter(needs_review=True)
    return list(queryset.order_by(*WEIGHT_ORDERING, TIEBREAK).values_list("pk", flat=True))


def page_keys(client: Client, query: str = "") -> list[str]:
    response = client.get(QUEUE + query)
    assert response.status_code == 200
    return [row.pk for row in response.context["cl"].result_list]


def test_queue_pages_are_those_of_the_weight_ordered_queryset(steward):
    build(portfolios=12_000, every=4)
    everything = expected()
    assert len(everything) == 3_000
    weighed = PortfolioPlan.objects.filter(needs_review=True, usage__isnull=False).count()
    assert 2_000 < weighed < 3_000 and weighed % 100  # one page holds both weighed and unweighed rows
    boundary = weighed // 100 + 1

    for page in (1, 2, boundary - 1, boundary, boundary + 1, 30):
        assert page_keys(steward, f"&p={page}") == everything[(page - 1) * 100 : page * 100], page
    first = PortfolioPlan.objects.get(pk=everything[0])
    assert first.usage.closing_assets < 1e9  # the heavy non-pending rows never show
    assert PortfolioPlan.objects.get(pk=everything[-1]).needs_review


def test_filters_search_and_a_chosen_column_give_the_same_rows(steward):
    build(portfolios=12_000, every=4)
    pending = PortfolioPlan.objects.filter(needs_review=True)

    income = pending.filter(derived_from_domain="annuity_income")
    assert page_keys(steward, "&derived_from_domain=annuity_income") == expected(income)[:100]
    assert page_keys(steward, "&derived_from_domain=annuity_income&p=10") == expected(income)[900:1000]

    suggested = pending.filter(source=Source.AUTO_DERIVED, pk__in=KeySuggestion.objects.values("key"))
    assert page_keys(steward, "&suggestion=any") == expected(suggested)[:100]

    searched = pending.filter(portfolio_code__icontains="Q0000011")
    assert page_keys(steward, "&q=Q0000011") == expected(searched)[:100]

    # a column the steward sorts by (the key, descending) replaces the weight order
    by_key = list(pending.order_by("-portfolio_code").values_list("pk", flat=True))
    assert page_keys(steward, "&o=-1") == by_key[:100]
    assert page_keys(steward, "&o=-1&p=3") == by_key[200:300]


def test_queue_queries_do_not_grow_with_the_rows(steward):
    build(portfolios=2_000, every=4)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert len(page_keys(steward)) == 100
        return len(captured.captured_queries)

    small = queries()
    build(portfolios=40_000, every=4, start=2_001)
    assert PortfolioPlan.objects.filter(needs_review=True).count() == 10_500
    assert queries() == small
    assert page_keys(steward) == expected()[:100]
