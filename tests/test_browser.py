"""A real browser (Debian's chromium via Playwright): a steward works with preloaded data in the Chinese admin."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from operations.alert_checks import check_alerts
from pipeline.config import load_config
from pipeline.demo.legacy import LegacyDataset, plan_code
from pipeline.models import ShareSnapshot
from pipeline.preload import run_preload
from reference.models import AnnuityPlan, Source
from reference.permissions import STEWARD_GROUP, ensure_groups

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parent.parent / "test-results" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def steward(django_user_model):
    ensure_groups()  # a transactional test before this one flushed the groups the migration made
    user = django_user_model.objects.create_user("steward", password="pw-steward-1", is_staff=True)
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    return user


def steward_page(browser, url: str):
    """A Chinese-locale page logged in as the steward, on the admin index."""
    page = browser.new_page(locale="zh-CN")
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", "steward")
    page.fill("#id_password", "pw-steward-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")
    return page


def test_steward_sees_preloaded_data_and_completes_an_auto_derived_plan(live_server, legacy, config_dir, steward):
    from playwright.sync_api import sync_playwright

    legacy.load(LegacyDataset(plans=30, portfolios=40))
    assert run_preload().ok
    AnnuityPlan.objects.create(
        plan_code="N9001",
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=timezone.now(),
    )
    OUTPUT.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = steward_page(browser, live_server.url)
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


def test_steward_clears_the_review_queue_in_the_browser(live_server, steward, tmp_path, settings):
    from playwright.sync_api import sync_playwright

    shutil.copytree(settings.BASE_DIR / "config", tmp_path / "config")
    settings.REFGOV_CONFIG_DIR = tmp_path / "config"
    AnnuityPlan.objects.create(plan_code="P0001", short_name="权威计划")
    for i, name in enumerate(["甲计划", "乙计划", "丙计划"], start=1):
        AnnuityPlan.objects.create(
            plan_code=f"N900{i}",
            short_name=name,
            source=Source.AUTO_DERIVED,
            needs_review=True,
            derived_from_domain="annuity_performance",
            derived_at=timezone.now(),
        )
    today = timezone.localdate()
    for days_ago, auto, pending in [(20, 30, 30), (12, 12, 8), (5, 4, 3)]:
        ShareSnapshot.objects.create(
            day=today - timedelta(days=days_ago), table="年金计划", total=100, auto_derived=auto, pending=pending
        )
    OUTPUT.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = steward_page(browser, live_server.url)

        page.goto(f"{live_server.url}/admin/reference/annuityplan/?needs_review__exact=1")
        assert page.locator("#result_list tbody tr").count() == 3
        assert page.locator(".refgov-missing").count() == 3  # 计划类型 and 客户名称 missing

        page.check("#action-toggle")
        page.select_option("select[name=action]", "complete_selected")
        page.click("button[name=index]")
        page.fill("input[name=plan_type]", "单一计划")
        page.fill("input[name=customer_name]", "已核实客户")
        page.click("input[name=_preview]")
        assert "3 行将被修改" in page.locator(".refgov-preview").inner_text()
        page.screenshot(path=str(OUTPUT / "complete_preview.png"), full_page=True)
        page.click("input[name=_apply]")
        page.wait_for_selector(".messagelist")
        assert "3 行已补全" in page.locator(".messagelist").inner_text()

        page.check("#action-toggle")
        page.select_option("select[name=action]", "promote_selected")
        page.click("button[name=index]")
        page.wait_for_selector(".messagelist")
        assert "3 行已提升为权威记录" in page.locator(".messagelist").inner_text()
        assert page.locator("#result_list tbody tr").count() == 0
        page.screenshot(path=str(OUTPUT / "queue_cleared.png"), full_page=True)
        cookies = page.context.cookies()
        browser.close()

    check_alerts(config=load_config())  # today's point of the chart: nothing auto-derived any more (no event loop here)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(locale="zh-CN")
        context.add_cookies(cookies)
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/")
        assert page.locator("#refgov-share-chart polyline").count() == 2
        assert "年金计划 0.0% · 0" in page.locator("#refgov-share-chart").inner_html()
        page.locator("#refgov-share-history").screenshot(path=str(OUTPUT / "share_chart.png"))
        browser.close()

    assert not AnnuityPlan.objects.filter(needs_review=True).exists()
    assert set(AnnuityPlan.objects.values_list("customer_name", flat=True)) == {None, "已核实客户"}
