"""A real browser (Debian's chromium via Playwright): a steward sees a typo suggestion in the review queue, opens it,
merges from the suggestion, and the next load of a file with that typo resolves it to the right key."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from pipeline.demo.legacy import portfolio_code
from pipeline.facts.service import process_fact_file
from reference.models import AnnuityPlan, KeyAlias
from reference.permissions import STEWARD_GROUP, ensure_groups
from tests.facts_support import write_csv
from tests.test_browser import CHROMIUM, OUTPUT, steward_page
from tests.test_suggestions import create_named_references, fact_rows, plan_name, typo_row

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def month_file(path: Path, month: str, rows: int, typos: int) -> Path:
    lines = fact_rows(rows, seed=int(month)) + [typo_row("1P0029", 29, portfolio_code(29), 29)] * typos
    for line in lines:
        line["月度"] = month
    return write_csv(path, lines)


def test_steward_merges_a_typo_from_its_suggestion_and_the_next_load_resolves_it(
    live_server, config_copy, django_user_model, tmp_path
):
    from playwright.sync_api import sync_playwright

    ensure_groups()
    user = django_user_model.objects.create_user("steward", password="pw-steward-1", is_staff=True)
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    create_named_references()
    first = process_fact_file(
        domain="annuity_performance", path=month_file(tmp_path / "202411.csv", "202411", 10_000, 3)
    )
    assert first.batch.new_references["年金计划"] == 1
    OUTPUT.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = steward_page(browser, live_server.url)
        page.goto(f"{live_server.url}/admin/reference/annuityplan/?needs_review__exact=1")
        row = page.locator("#result_list tbody tr", has_text="1P0029")
        assert "疑似 P0029 的笔误（0.93）" in row.inner_text()
        page.screenshot(path=str(OUTPUT / "suggestion_queue.png"), full_page=True)

        row.locator("th a").click()
        panel = page.locator("#refgov-suggestions")
        panel.wait_for()
        assert "笔误建议" in panel.inner_text() and plan_name(29) in panel.inner_text()
        assert "多了一个字符" in panel.inner_text()
        page.screenshot(path=str(OUTPUT / "suggestion_change_form.png"), full_page=True)

        panel.locator("a.refgov-merge-suggested", has_text="P0029").click()
        page.wait_for_selector("#refgov-merge-impact")
        assert page.input_value("input[name=right_key]") == "P0029"
        assert "3 条事实数据" in page.locator("#refgov-merge-impact").inner_text()
        page.screenshot(path=str(OUTPUT / "suggestion_merge_preview.png"), full_page=True)
        page.click("input[name=_confirm]")
        page.wait_for_selector(".messagelist")
        assert "1P0029 已合并到 P0029" in page.locator(".messagelist").inner_text()
        page.screenshot(path=str(OUTPUT / "suggestion_merged.png"), full_page=True)
        browser.close()

    assert KeyAlias.objects.get(table="年金计划", alias="1P0029").canonical == "P0029"
    second = process_fact_file(domain="annuity_performance", path=month_file(tmp_path / "202412.csv", "202412", 500, 2))
    assert second.batch.new_references["年金计划"] == 0
    assert "merged keys resolved: 年金计划 2 rows" in second.batch.message
    assert not AnnuityPlan.objects.filter(pk="1P0029").exists()
