"""The weekly review report reaches people: e-mail with the xlsx attached (Django's locmem backend), webhook with the
link (a real local HTTP server), both through ``review_report_task``."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import openpyxl
import pytest
from django.core import mail
from django.utils import timezone

from operations.tasks import review_report_task
from pipeline.models import KeySuggestion
from reference.models import AnnuityPlan, PortfolioPlan, Source

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("config_copy")]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def pending_rows():
    AnnuityPlan.objects.create(plan_code="P0029", short_name="北京电力企业年金计划")
    for i in range(12):
        AnnuityPlan.objects.create(
            plan_code=f"N{i:04d}",
            short_name=f"待审计划{i}",
            source=Source.AUTO_DERIVED,
            needs_review=True,
            derived_from_domain="annuity_performance",
            derived_at=timezone.now() - timedelta(days=i),
        )
    PortfolioPlan.objects.create(
        portfolio_code="QX1", source=Source.AUTO_DERIVED, needs_review=True, derived_at=timezone.now()
    )
    KeySuggestion.objects.create(table="年金计划", key="N0001", candidate="P0029", rank=1, score=0.9)


class Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body.decode("utf-8")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/robot/send", Hook.received
    server.shutdown()
    server.server_close()


def test_the_weekly_report_is_mailed_with_the_xlsx_attached(settings, pending_rows):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REFGOV_NOTIFIERS = ["email"]
    settings.REFGOV_NOTIFY_EMAILS = ["stewards@example.com", "lead@example.com"]

    html = review_report_task()

    assert html.endswith(".html") and (settings.REFGOV_REPORTS_DIR / html.split("/")[-1]).exists()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["stewards@example.com", "lead@example.com"]
    assert message.subject == "[refgov] 每周审核报告：13 行参考数据待审核"
    assert "年金计划：12 行待审核，其中 1 行有笔误建议" in message.body
    assert "组合计划：1 行待审核，其中 0 行有笔误建议" in message.body
    [(name, content, mimetype)] = message.attachments
    assert name.startswith("review_") and name.endswith(".xlsx") and mimetype == XLSX_TYPE
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    keys = {row[1] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert keys == {f"N{i:04d}" for i in range(12)} | {"QX1"}
    assert (settings.REFGOV_REPORTS_DIR / name).read_bytes() == content  # the same file stays on disk


def test_the_weekly_report_is_posted_to_the_webhook_with_its_link(settings, pending_rows, webhook):
    url, received = webhook
    settings.REFGOV_NOTIFIERS = ["webhook", "email"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REFGOV_NOTIFY_EMAILS = ["stewards@example.com"]
    settings.REFGOV_NOTIFY_WEBHOOK_URL = url
    settings.REFGOV_REPORTS_URL = "https://files.example.com/refgov/reports/"

    review_report_task()

    [payload] = received
    assert payload["channel"] == "data-quality-alerts"
    assert payload["subject"] == "每周审核报告：13 行参考数据待审核"
    [attachment] = payload["attachments"]
    assert attachment["url"] == f"https://files.example.com/refgov/reports/{attachment['name']}"
    assert payload["data"]["report_url"] == attachment["url"] and payload["data"]["pending"]["年金计划"] == 12
    assert f"报告：{attachment['url']}" in payload["text"]
    assert len(mail.outbox) == 1  # the other notifier sent it too


def test_a_failing_webhook_does_not_stop_the_mail(settings, pending_rows, caplog):
    settings.REFGOV_NOTIFIERS = ["webhook", "email"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REFGOV_NOTIFY_EMAILS = ["stewards@example.com"]
    settings.REFGOV_NOTIFY_WEBHOOK_URL = "http://127.0.0.1:9/closed"  # nothing listens on the discard port

    review_report_task()

    assert len(mail.outbox) == 1 and mail.outbox[0].attachments
    assert "notifier webhook failed" in caplog.text
