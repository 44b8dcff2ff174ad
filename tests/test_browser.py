"""A real browser (Debian's chromium via Playwright): a steward works with preloaded data in the Chinese admin."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from pipeline.demo.legacy import LegacyDataset, plan_code
from pipeline.preload import run_preload
from reference.models import AnnuityPlan, Source
from reference.permissions import STEWARD_GROUP

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parent.parent / "test-results" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def steward(django_user_model):
    user = django_user_model.objects.create_user("steward", password="pw-steward-1", is_staff=True)
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    return user


def test_steward_sees_preloaded_data_and_completes_an_auto_derived_plan(live_server, legacy, config_dir, steward):
    from playwright.sync_api import sync_playwright

    legacy.load(LegacyDataset(plans=30, portfolios=40))
    assert run_preload().ok
    AnnuityPlan.objects.create(
        plan_code="N9001", source=Source.AUTO_DERIVED, needs_review=True,
        derived_from_domain="annuity_performance", derived_at=timezone.now(),
    )  # fmt: skip
    OUTPUT.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(locale="zh-CN")
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "steward")
        page.fill("#id_password", "pw-steward-1")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        assert "年金计划" in page.content()
        dashboard = page.locator("#refgov-dashboard")
        assert "参考数据健康度" in dashboard.inner_text() and "3.2%" in dashboard.inner_text()  # 1 of 31 plans
        page.screenshot(path=str(OUTPUT / "dashboard.png"), full_page=True)

        page.goto(f"{live_server.url}/admin/reference/annuityplan/")
        assert page.locator("#result_list tbody tr").count() == 31
        assert page.get_by_text(plan_code(1), exact=True).count() == 1

        page.goto(f"{live_server.url}/admin/reference/annuityplan/?needs_review__exact=1")
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 1
        assert "自动派生" in rows.first.inner_text()
        page.screenshot(path=str(OUTPUT / "review_queue.png"), full_page=True)

        rows.first.locator("th a").click()
        page.fill("input[name=short_name]", "管理员补全的简称")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist")
        assert "成功" in page.locator(".messagelist").inner_text()
        page.screenshot(path=str(OUTPUT / "after_save.png"), full_page=True)
        browser.close()

    assert AnnuityPlan.objects.get(plan_code="N9001").short_name == "管理员补全的简称"
