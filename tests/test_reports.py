"""Review reports, notifiers and the batch report of auto-derived reference rows (real PostgreSQL)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import openpyxl
import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone

from pipeline.facts.service import process_fact_file
from pipeline.models import Alert, DerivedReference, FactBatch, FactStatus
from pipeline.notify import notify
from pipeline.reports import (
    pending_review,
    render_html,
    report_batch,
    write_csv,
    write_xlsx,
)
from reference.models import AnnuityPlan, Organization, PortfolioPlan, Source
from reference.selectors import auto_derived_shares
from tests.facts_support import create_references, scale_row
from tests.facts_support import write_xlsx as write_fact_xlsx

pytestmark = pytest.mark.django_db

HEADINGS = ["待审核参考数据", "表", "键", "名称", "来源", "派生业务域", "派生时间", "来源文件", "行号", "引用事实行数"]


@pytest.fixture
def logs(caplog):
    """The ``refgov`` logger does not propagate; attach caplog's handler to it directly."""
    parent = logging.getLogger("refgov")
    parent.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="refgov")
    yield caplog
    parent.removeHandler(caplog.handler)


@pytest.fixture
def reports(tmp_path, settings):
    settings.REFGOV_REPORTS_DIR = tmp_path / "reports"
    settings.REFGOV_NOTIFIERS = ["log"]
    return settings.REFGOV_REPORTS_DIR


def _auto(model, **values):
    return model.objects.create(
        source=Source.AUTO_DERIVED,
        needs_review=True,
        derived_from_domain="annuity_performance",
        derived_at=timezone.now(),
        **values,
    )


@pytest.fixture
def data():
    """3 authoritative plans, 3 auto-derived pending plans (two with provenance), 1 pending portfolio, 1 org."""
    for i in range(1, 4):
        AnnuityPlan.objects.create(plan_code=f"P{i:03}", short_name=f"计划{i}")
    _auto(AnnuityPlan, plan_code="N002", short_name="新计划二")
    _auto(AnnuityPlan, plan_code="N001", short_name="<script>alert(1)</script>")
    _auto(AnnuityPlan, plan_code="N003", short_name="无来源")
    _auto(PortfolioPlan, portfolio_code="XN001", plan_id="N001", name="新组合")
    Organization.objects.create(code="G01", name="北京分公司")
    old = FactBatch.objects.create(
        domain="annuity_performance",
        file_name="old.xlsx",
        file_path="/x/old.xlsx",
        checksum="a" * 64,
        status=FactStatus.LOADED,
    )
    new = FactBatch.objects.create(
        domain="annuity_performance",
        file_name="202411.xlsx",
        file_path="/x/202411.xlsx",
        sheet="规模明细",
        checksum="b" * 64,
        status=FactStatus.LOADED,
    )
    earlier = timezone.now() - timedelta(days=3)
    DerivedReference.objects.create(
        table="年金计划", key="N001", batch=old, file_name="old.xlsx", row_numbers=[9], fact_rows=1, created_at=earlier
    )
    DerivedReference.objects.create(
        table="年金计划",
        key="N001",
        batch=new,
        file_name="202411.xlsx",
        sheet="规模明细",
        row_numbers=[2, 5],
        fact_rows=2,
    )
    DerivedReference.objects.create(
        table="年金计划",
        key="N002",
        batch=new,
        file_name="202411.xlsx",
        sheet="规模明细",
        row_numbers=[3, 4, 6],
        fact_rows=7,
    )
    DerivedReference.objects.create(
        table="组合计划",
        key="XN001",
        batch=new,
        file_name="202411.xlsx",
        sheet="规模明细",
        row_numbers=[2],
        fact_rows=1,
    )
    return {"old": old, "new": new}


def test_pending_review_content_order_and_bounded_queries(data, django_assert_max_num_queries):
    with django_assert_max_num_queries(5):  # 4 tables + 1 provenance query
        rows = pending_review()
    assert [(r["table"], r["key"]) for r in rows] == [
        ("年金计划", "N002"),
        ("年金计划", "N001"),
        ("年金计划", "N003"),
        ("组合计划", "XN001"),
    ]
    first = rows[0]
    assert first["name"] == "N002 新计划二" and first["source"] == Source.AUTO_DERIVED
    assert first["derived_from_domain"] == "annuity_performance" and first["derived_at"] is not None
    assert first["provenance"] == {
        "batch_id": data["new"].pk,
        "file_name": "202411.xlsx",
        "sheet": "规模明细",
        "row_numbers": [3, 4, 6],
        "fact_rows": 7,
    }
    assert rows[1]["provenance"]["batch_id"] == data["new"].pk  # the most recent of N001's two derivations
    assert rows[2]["provenance"] is None

    assert [r["key"] for r in pending_review(table="组合计划")] == ["XN001"]
    assert [r["key"] for r in pending_review(batch_id=data["old"].pk)] == ["N001"]
    assert [r["key"] for r in pending_review(batch_id=data["new"].pk)] == ["N002", "N001", "XN001"]


def test_html_has_keys_headings_and_escapes(data):
    html = render_html(pending_review(), title="测试报告")
    for text in HEADINGS + ["N001", "N002", "N003", "XN001", "202411.xlsx", "测试报告"]:
        assert text in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html


def test_xlsx_and_csv(data, tmp_path):
    rows = pending_review()
    book = openpyxl.load_workbook(write_xlsx(rows, tmp_path / "r.xlsx"))
    sheet = book["待审核"]
    values = list(sheet.iter_rows(values_only=True))
    assert list(values[0]) == HEADINGS[1:]
    assert [v[1] for v in values[1:]] == ["N002", "N001", "N003", "XN001"]
    assert values[1][8] == 7 and values[1][7] == "3, 4, 6"
    assert sheet.freeze_panes == "A2"

    path = write_csv(rows, tmp_path / "r.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(path.open(encoding="utf-8-sig")))
    assert lines[0] == HEADINGS[1:]
    assert [line[1] for line in lines[1:]] == ["N002", "N001", "N003", "XN001"]


def test_auto_derived_shares(data, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        shares = auto_derived_shares()
    assert shares["年金计划"] == {"total": 6, "auto_derived": 3, "pending": 3, "share": 0.5}
    assert shares["组合计划"] == {"total": 1, "auto_derived": 1, "pending": 1, "share": 1.0}
    assert shares["组织架构"] == {"total": 1, "auto_derived": 0, "pending": 0, "share": 0.0}
    assert shares["产品线"] == {"total": 0, "auto_derived": 0, "pending": 0, "share": 0}


@pytest.mark.parametrize("fmt", ["html", "xlsx", "csv"])
def test_review_report_command_writes_output(data, tmp_path, capsys, fmt):
    output = tmp_path / "out" / f"report.{fmt}"
    call_command("review_report", "--format", fmt, "--output", str(output), "--json")
    payload = json.loads(capsys.readouterr().out)
    assert output.is_file() and output.stat().st_size > 0
    assert payload["output"] == str(output) and payload["format"] == fmt and payload["rows"] == 4
    assert payload["per_table"]["年金计划"] == 3 and payload["per_table"]["组合计划"] == 1


def test_review_report_command_default_path_and_table(data, reports, capsys):
    call_command("review_report", "--table", "年金计划")
    out = capsys.readouterr().out.splitlines()
    written = list(reports.glob("review_*.html"))
    assert len(written) == 1 and out[0] == str(written[0])
    assert "年金计划: 3" in out
    assert "XN001" not in written[0].read_text(encoding="utf-8")


def test_review_report_command_unknown_table(capsys):
    with pytest.raises(SystemExit) as exc:
        call_command("review_report", "--table", "nope")
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "nope" in err and "年金计划" in err and "组合计划" in err


def test_notify_log(logs, settings):
    settings.REFGOV_NOTIFIERS = ["log"]
    notify(channel="dq", subject="hello", text="line one\nline two", data={})
    record = next(r for r in logs.records if r.name == "refgov.notify")
    assert record.levelno == logging.WARNING
    assert "dq" in record.getMessage() and "hello" in record.getMessage() and "line two" in record.getMessage()


def test_notify_webhook(settings):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        settings.REFGOV_NOTIFIERS = ["webhook"]
        settings.REFGOV_NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
        notify(channel="dq", subject="新数据", text="t", data={"n": 1})
        thread.join(5)
    finally:
        server.server_close()
    assert received == [{"channel": "dq", "subject": "新数据", "text": "t", "data": {"n": 1}}]


def test_failing_notifier_is_logged_not_raised(logs, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    settings.REFGOV_NOTIFIERS = ["webhook", "log"]
    settings.REFGOV_NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{port}/hook"
    notify(channel="dq", subject="s", text="t", data={})
    messages = [r.getMessage() for r in logs.records if r.name == "refgov.notify"]
    assert any("notifier webhook failed" in m for m in messages)
    assert any("[dq] s" in m for m in messages)  # the next notifier still ran


def test_notify_email(settings, mailoutbox):
    settings.REFGOV_NOTIFIERS = ["email"]
    settings.REFGOV_NOTIFY_EMAILS = ["a@example.com", "b@example.com"]
    notify(channel="dq", subject="主题", text="正文", data={})
    assert len(mailoutbox) == 1
    assert mailoutbox[0].subject == "[refgov] 主题" and mailoutbox[0].to == ["a@example.com", "b@example.com"]


def test_report_batch_writes_file_and_notifies_with_share_alert(
    data, reports, logs, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        path = report_batch(data["new"].pk, channel="dq", alert_share=0.6)
    assert path == reports / f"batch_{data['new'].pk}.html"
    html = path.read_text(encoding="utf-8")
    assert "N001" in html and "N002" in html and "XN001" in html and "N003" not in html
    messages = [r.getMessage() for r in logs.records if r.name == "refgov.notify"]
    batch_msg = next(m for m in messages if "行自动派生参考数据" in m)
    assert "202411.xlsx 新增 3 行自动派生参考数据" in batch_msg
    assert "年金计划: 2 (N002, N001)" in batch_msg and str(path) in batch_msg
    alerts = [m for m in messages if "自动派生占比" in m]
    assert len(alerts) == 1 and "组合计划：自动派生占比 100.0%，超过阈值 60%" in alerts[0]  # 年金计划 is 50%

    with django_capture_on_commit_callbacks(execute=True):
        report_batch(data["new"].pk, channel="dq", alert_share=0.6)
    again = [r.getMessage() for r in logs.records if r.name == "refgov.notify" and "自动派生占比" in r.getMessage()]
    assert len(again) == 1  # the share alert is still open: not sent a second time
    assert Alert.objects.get(resolved_at__isnull=True).times_seen == 2


class ConfigCopy:
    def __init__(self, directory):
        self.directory = directory
        shutil.copytree(django_settings.BASE_DIR / "config", directory)


@pytest.fixture
def config(tmp_path, settings) -> ConfigCopy:
    copy = ConfigCopy(tmp_path / "config")
    settings.REFGOV_CONFIG_DIR = copy.directory
    return copy


def test_fact_batch_with_new_plan_reports_and_notifies(
    config, reports, logs, tmp_path, django_capture_on_commit_callbacks
):
    backfill = yaml.safe_load((config.directory / "reference_management.yml").read_text(encoding="utf-8"))["backfill"]
    assert backfill["notify_on_new_records"] is True
    create_references()
    path = write_fact_xlsx(tmp_path / "202411_新.xlsx", {"规模明细": [scale_row(), scale_row(计划号="N0042")]})

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        result = process_fact_file(domain="annuity_performance", path=path)

    assert result.batch.status == FactStatus.LOADED and result.tables["年金计划"].inserted == ["N0042"]
    assert len(callbacks) == 1
    report = reports / f"batch_{result.batch.pk}.html"
    assert report.is_file() and "N0042" in report.read_text(encoding="utf-8")
    messages = [r.getMessage() for r in logs.records if r.name == "refgov.notify"]
    assert any(f"[{backfill['notification_channel']}] 202411_新.xlsx 新增" in m for m in messages)


def test_dry_run_does_not_report(config, reports, tmp_path, django_capture_on_commit_callbacks):
    create_references()
    path = write_fact_xlsx(tmp_path / "f.xlsx", {"规模明细": [scale_row(计划号="N0043")]})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        process_fact_file(domain="annuity_performance", path=path, dry_run=True)
    assert callbacks == [] and not reports.exists()
