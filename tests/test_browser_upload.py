"""A real browser (Debian's chromium via Playwright): a steward uploads the monthly workbook in the admin, sees the
preview, confirms, watches the progress and reaches the review queue of what the load derived."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset
from pipeline.models import FactBatch, FactStatus, FactUpload, IncomeFact, ScaleFact, UploadState
from reference.models import AnnuityPlan, Source
from reference.permissions import STEWARD_GROUP, ensure_groups
from tests.facts_support import create_references

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT = Path(__file__).resolve().parent.parent / "test-results" / "browser"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def outside_the_event_loop(query):
    """Playwright runs an event loop in this thread, where Django refuses database queries: ask from another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(query).result()


def written() -> tuple[int, int, int]:
    try:
        return ScaleFact.objects.count(), IncomeFact.objects.count(), FactBatch.objects.count()
    finally:
        connection.close()


@pytest.fixture
def steward(django_user_model):
    ensure_groups()  # a transactional test before this one flushed the groups the migration made
    user = django_user_model.objects.create_user("steward", password="pw-steward-1", is_staff=True)
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    return user


def test_steward_uploads_the_monthly_workbook_previews_confirms_and_sees_the_result(
    live_server, steward, config_copy, tmp_path
):
    from playwright.sync_api import sync_playwright

    create_references()
    book = FactWorkbook(month="202411", scale_rows=20_000, income_rows=6_000, legacy=LegacyDataset(30, 40))
    workbook = book.write(tmp_path / "2024年11月规模收入数据.xlsx")
    new_plans = sorted(
        {r[3].strip() for kind in ("规模明细", "收入明细") for r in book.rows(kind) if r[3].startswith("N")}
    )
    OUTPUT.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "steward")
        page.fill("#id_password", "pw-steward-1")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")

        page.goto(f"{live_server.url}/admin/pipeline/factbatch/")
        page.click("#refgov-upload-link")
        page.set_input_files("input[name=file]", str(workbook))
        page.screenshot(path=str(OUTPUT / "upload_form.png"), full_page=True)
        page.click("input[name=_preview]")

        page.wait_for_selector("#refgov-upload-preview")
        preview = page.locator("#refgov-upload-preview").inner_text()
        assert "预览（尚未写入任何数据）" in preview
        assert "annuity_income → 收入明细" in preview and "annuity_performance → 规模明细" in preview
        assert "20000" in preview and "6000" in preview and "2024-11-01" in preview
        assert all(code in preview for code in new_plans)  # the new keys of either sheet
        page.screenshot(path=str(OUTPUT / "upload_preview.png"), full_page=True)
        assert outside_the_event_loop(written) == (0, 0, 0)  # the preview wrote nothing
        status_url = page.url

        # confirm; a second tab polls the upload's page while the load runs (django-q2 runs it inline here)
        watcher = context.new_page()
        page.click("#refgov-upload-confirm input[type=submit]", no_wait_after=True)
        seen_running = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            watcher.goto(status_url)
            state = watcher.locator("#refgov-upload-state").inner_text()
            if state == "加载中" and not seen_running:
                seen_running = True
                assert watcher.locator("#refgov-upload-progress").count() == 1
                watcher.screenshot(path=str(OUTPUT / "upload_progress.png"), full_page=True)
            if state in ("已加载", "未加载"):
                break
            time.sleep(0.2)

        page.wait_for_selector("#refgov-upload-result")
        assert "已确认，加载任务已排队" in page.locator(".messagelist").inner_text()
        assert page.locator("#refgov-upload-state").inner_text() == "已加载"
        assert page.locator("#refgov-upload-progress").get_attribute("value") == "100"
        assert page.locator(".refgov-upload-batch").count() == 2
        assert page.locator('meta[http-equiv="refresh"]').count() == 0
        page.screenshot(path=str(OUTPUT / "upload_result.png"), full_page=True)

        page.locator("#refgov-upload-reviews .refgov-review-link", has_text="年金计划").click()
        rows = page.locator("#result_list tbody tr")
        rows.first.wait_for()
        assert sorted(rows.nth(i).locator("th").inner_text().strip() for i in range(rows.count())) == new_plans
        page.screenshot(path=str(OUTPUT / "upload_review_queue.png"), full_page=True)
        browser.close()

    assert seen_running  # the watcher saw the progress bar of a load in flight
    upload = FactUpload.objects.get()
    assert upload.state == UploadState.LOADED
    assert sorted(FactBatch.objects.values_list("domain", "status", "rows_loaded")) == [
        ("annuity_income", FactStatus.LOADED, 6_000),
        ("annuity_performance", FactStatus.LOADED, 20_000),
    ]
    assert set(FactBatch.objects.values_list("file_path", flat=True)) == {upload.stored_path}
    assert Path(upload.stored_path).read_bytes() == workbook.read_bytes()
    derived = AnnuityPlan.objects.filter(source=Source.AUTO_DERIVED)
    assert sorted(derived.values_list("plan_code", flat=True)) == new_plans
