"""Every review path closes, through the admin (test client) and the services: typo suggestions in the queue and
side by side in the change form, merge from a suggestion, confirm-keep with a reason, delete refused with the merge
offered; stale-review alerts count only rows still pending."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin import helpers
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from operations.alert_checks import check_alerts
from pipeline.config import load_config
from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts.service import process_fact_file
from pipeline.models import Alert, AlertKind, KeySuggestion, ScaleFact
from reference.history import Action, row_history
from reference.models import AnnuityPlan, KeyAlias, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP
from stewardship.confirm import ReasonRequired, confirm_keep
from tests.facts_support import write_csv
from tests.test_stewardship_admin import client_for
from tests.test_suggestions import create_named_references, fact_rows, plan_name, typo_row

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:reference_annuityplan_changelist")
QUEUE = f"{CHANGELIST}?needs_review__exact=1"


@pytest.fixture
def steward(django_user_model) -> Client:
    return client_for(django_user_model, STEWARD_GROUP)


@pytest.fixture
def loaded(config_copy, tmp_path):
    """A 10k-row month with three typos of existing plans and one genuinely new plan."""
    create_named_references()
    rows = fact_rows(10_000)
    rows += [typo_row("1P0029", 29, portfolio_code(29), 29, assets=9_000_000)] * 4
    rows += [typo_row("P01100", 110, portfolio_code(110), 110, assets=10)] * 2
    rows += [typo_row("P0385", 38, portfolio_code(38), 38)] * 1  # 385 is no plan: P0038 with a stray 5
    rows.append(scale_row_new())
    path = write_csv(tmp_path / "202411_规模明细.csv", rows)
    result = process_fact_file(domain="annuity_performance", path=path)
    assert result.batch.new_references["年金计划"] == 4
    return result


def scale_row_new() -> dict:
    from tests.facts_support import scale_row

    return scale_row(计划号="N7001", 计划名称="全新示范养老计划", 客户名称="新客户股份", 组合代码=portfolio_code(1))


def queue_rows(html: str) -> list[str]:
    return re.findall(r"<tr>.*?</tr>", html.split('id="result_list"')[1].split("</table>")[0], re.S)[1:]


def test_the_queue_shows_each_typo_suggestion_with_its_score_and_sorts_and_filters_by_it(steward, loaded):
    page = steward.get(QUEUE).content.decode()
    assert "笔误建议" in page
    assert "疑似 P0029 的笔误（0.93）" in page
    assert "疑似 Z0110 的笔误" in page and "疑似 P0038 的笔误" in page  # P01100: 110 is a Z plan, the 0 doubled

    # sorted by the score column (highest first), whatever the weights say
    column = re.findall(r'<th scope="col" class="sortable column-typo_suggestion.*?href="\?([^"]*)"', page, re.S)
    assert column, "the suggestion column is sortable"
    by_score = steward.get(f"{CHANGELIST}?needs_review__exact=1&o=-{_column_index(page)}").content.decode()
    keys = re.findall(r'<th class="field-plan_code"><a [^>]*>([^<]+)</a>', by_score)
    scores = {s.key: s.score for s in KeySuggestion.objects.filter(rank=1)}
    ranked = [k for k in keys if k in scores]
    assert ranked == sorted(ranked, key=lambda k: -scores[k])

    likely = steward.get(f"{QUEUE}&suggestion=likely").content.decode()
    found = set(re.findall(r'<th class="field-plan_code"><a [^>]*>([^<]+)</a>', likely))
    assert found == {k for k, s in scores.items() if s >= 0.8} and "N7001" not in found and found
    without = steward.get(f"{QUEUE}&suggestion=none").content.decode()
    assert set(re.findall(r'<th class="field-plan_code"><a [^>]*>([^<]+)</a>', without)) == {"N7001"}


def _column_index(page: str) -> int:
    headers = re.findall(r'<th scope="col" class="([^"]*)"', page.split('id="result_list"')[1])
    names = [re.search(r"column-(\w+)", h).group(1) for h in headers if "column-" in h]
    return names.index("typo_suggestion") + 1  # the action checkbox is column 0


def test_the_change_form_compares_the_candidates_and_merges_from_a_suggestion(steward, loaded, tmp_path):
    change = reverse("admin:reference_annuityplan_change", args=["1P0029"])
    page = steward.get(change).content.decode()
    panel = page.split('id="refgov-suggestions"')[1].split("</fieldset>")[0]
    assert "笔误建议：该键可能指的现有行" in panel
    assert "1P0029" in panel and "P0029" in panel and "本行" in panel
    assert plan_name(29) in panel and "客户名称" in panel and "主拓机构" in panel
    assert "多了一个字符" in panel and "编辑距离 1" in panel and "计划简称 相似度 1.00" in panel
    assert "4 / 36000000" in panel.replace(",", "").replace(".00", "")  # the typo's facts: 4 rows, 9M each
    merge_url = re.search(r'class="button refgov-merge-suggested" href="([^"]+)"', panel).group(1)
    assert "right_key=P0029" in merge_url

    # one click: the merge view with its impact preview, the suggested key filled in
    preview = steward.get(merge_url.replace("&amp;", "&")).content.decode()
    assert 'value="P0029"' in preview and "确认合并" in preview and "4 条事实数据" in preview
    response = steward.post(merge_url.split("?")[0], {"right_key": "P0029", "_confirm": "1"})
    assert response.status_code == 302
    assert not AnnuityPlan.objects.filter(pk="1P0029").exists()
    assert KeyAlias.objects.get(table="年金计划", alias="1P0029").canonical == "P0029"
    assert ScaleFact.objects.filter(plan_id="1P0029").count() == 0

    # the next load of a file with the typo resolves it to the right key
    rows = fact_rows(50, seed=3) + [typo_row("1P0029", 29, portfolio_code(29), 29)] * 2
    for row in rows:
        row["月度"] = "202412"
    again = process_fact_file(domain="annuity_performance", path=write_csv(tmp_path / "202412.csv", rows))
    assert (
        again.batch.new_references["年金计划"] == 0 and "merged keys resolved: 年金计划 2 rows" in again.batch.message
    )
    assert not AnnuityPlan.objects.filter(pk="1P0029").exists()


def test_a_viewer_sees_the_suggestions_but_no_merge_button(django_user_model, loaded):
    viewer = client_for(django_user_model, VIEWER_GROUP)
    page = viewer.get(reverse("admin:reference_annuityplan_change", args=["1P0029"])).content.decode()
    assert 'id="refgov-suggestions"' in page and "refgov-merge-suggested" not in page


def test_confirm_keep_marks_rows_reviewed_but_auto_derived_with_the_reason_in_the_history(steward, loaded):
    response = steward.post(
        CHANGELIST,
        {"action": "confirm_keep_selected", helpers.ACTION_CHECKBOX_NAME: ["N7001", plan_code(1)], "index": "0"},
    )
    page = response.content.decode()
    assert response.status_code == 200 and "确认保留" in page and "其中 1 行为自动派生且待审核" in page
    assert AnnuityPlan.objects.get(pk="N7001").needs_review

    refused = steward.post(
        CHANGELIST,
        {
            "action": "confirm_keep_selected",
            helpers.ACTION_CHECKBOX_NAME: ["N7001"],
            "index": "0",
            "_apply": "1",
            "reason": "   ",
        },
    )
    assert "这个字段是必填项" in refused.content.decode() or "必须填写原因" in refused.content.decode()
    assert AnnuityPlan.objects.get(pk="N7001").needs_review

    done = steward.post(
        CHANGELIST,
        {
            "action": "confirm_keep_selected",
            helpers.ACTION_CHECKBOX_NAME: ["N7001", plan_code(1)],
            "index": "0",
            "_apply": "1",
            "reason": "试点计划，旧系统不会收录",
        },
        follow=True,
    )
    assert "1 行已确认保留：不再待审核，仍为自动派生。" in done.content.decode()
    row = AnnuityPlan.objects.get(pk="N7001")
    assert row.source == Source.AUTO_DERIVED and not row.needs_review
    assert AnnuityPlan.objects.get(pk=plan_code(1)).source == Source.AUTHORITATIVE  # untouched

    event = row_history(table="年金计划", key="N7001")[0]
    assert event.action == Action.CONFIRM_KEEP and event.metadata["reason"] == "试点计划，旧系统不会收录"
    history = steward.get(reverse("admin:reference_annuityplan_history", args=["N7001"])).content.decode()
    assert "确认保留（仍为自动派生）" in history and "试点计划，旧系统不会收录" in history

    # the seed's monitoring query shows it: auto-derived, not pending
    with connection.cursor() as cur:
        cur.execute(
            'SELECT _source, COUNT(*), SUM(CASE WHEN _needs_review THEN 1 ELSE 0 END) FROM "business"."年金计划" '
            "GROUP BY _source"
        )
        counts = {source: (n, p) for source, n, p in cur.fetchall()}
    assert counts["auto_derived"] == (4, 3)
    # and it left the queue
    assert "N7001" not in steward.get(QUEUE).content.decode()


def test_confirm_keep_needs_a_reason_and_a_change_permission(django_user_model, loaded):
    user = django_user_model.objects.create_user("someone")
    with pytest.raises(ReasonRequired):
        confirm_keep(queryset=AnnuityPlan.objects.filter(pk="N7001"), reason=" \n ", user=user)
    assert AnnuityPlan.objects.get(pk="N7001").needs_review
    viewer = client_for(django_user_model, VIEWER_GROUP)
    viewer.post(
        CHANGELIST,
        {
            "action": "confirm_keep_selected",
            helpers.ACTION_CHECKBOX_NAME: ["N7001"],
            "index": "0",
            "_apply": "1",
            "reason": "x",
        },
    )
    assert AnnuityPlan.objects.get(pk="N7001").needs_review


def test_deleting_a_typo_facts_use_offers_the_merge_with_the_suggestion_filled_in(django_user_model, loaded):
    root = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(root)
    page = client.get(reverse("admin:reference_annuityplan_delete", args=["1P0029"])).content.decode()
    link = re.search(r'<a href="([^"]+)" class="refgov-merge-instead">([^<]+)</a>', page)
    assert link and link.group(1).endswith("/merge/?right_key=P0029") and "1P0029" in link.group(2)
    assert AnnuityPlan.objects.filter(pk="1P0029").exists()


def test_stale_review_alerts_count_only_rows_still_pending(config_copy, django_user_model):
    old = timezone.now() - timedelta(days=30)
    for code in ("S1", "S2"):
        AnnuityPlan.objects.create(
            plan_code=code, source=Source.AUTO_DERIVED, needs_review=True, derived_at=old, derived_from_domain="x"
        )
    check_alerts(config=load_config())
    alert = Alert.objects.get(kind=AlertKind.STALE_REVIEWS, key="stale_reviews:年金计划", resolved_at__isnull=True)
    assert "2 rows" in alert.subject or "2 行" in alert.subject

    user = django_user_model.objects.create_user("steward-x")
    confirm_keep(queryset=AnnuityPlan.objects.all(), reason="已核实", user=user)
    check_alerts(config=load_config())
    alert.refresh_from_db()
    assert alert.resolved_at is not None  # confirmed rows are reviewed: nothing is pending any more
