"""上传事实文件: a steward uploads a fact file in the admin, sees a dry-run preview, confirms, and the q task loads it.

Real files (csv, xlsx), real PostgreSQL, the Django test client, django-q2 in sync mode (the task runs inline)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.urls import reverse

from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset, plan_code
from pipeline.facts import uploads
from pipeline.facts.service import process_fact_file
from pipeline.facts.uploads import UploadProgress, UploadRefused, load_upload, safe_name
from pipeline.models import (
    Alert,
    DerivedReference,
    FactBatch,
    FactStatus,
    FactUpload,
    IncomeFact,
    ScaleFact,
    UploadState,
)
from reference.models import AnnuityPlan, Organization, PortfolioPlan, ProductLine, Source
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP
from tests.facts_support import create_references, scale_row, write_csv

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("config_copy")]

CHANGELIST = reverse("admin:pipeline_factbatch_changelist")
UPLOAD = reverse("admin:pipeline_factbatch_upload")


def client_for(django_user_model, group: str) -> Client:
    user = django_user_model.objects.create_user(username=group, password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def steward(django_user_model) -> Client:
    return client_for(django_user_model, STEWARD_GROUP)


@pytest.fixture
def viewer(django_user_model) -> Client:
    return client_for(django_user_model, VIEWER_GROUP)


@pytest.fixture
def refs() -> None:
    create_references()


def post_file(client: Client, path: Path, domain: str = "", **extra):
    with path.open("rb") as fh:
        return client.post(UPLOAD, {"domain": domain, "file": fh, **extra})


def the_upload() -> FactUpload:
    [upload] = FactUpload.objects.all()
    return upload


def page_of(client: Client, upload: FactUpload) -> str:
    return client.get(reverse("admin:pipeline_factbatch_upload_status", args=[upload.pk])).content.decode()


def snapshot() -> dict:
    """Everything a load writes: facts, batches, provenance, reference rows, alerts."""
    return {
        "scale": sorted(ScaleFact.objects.values_list("pk", "batch_id", "closing_assets")),
        "income": IncomeFact.objects.count(),
        "batches": list(FactBatch.objects.values_list("pk", "status")),
        "derived": DerivedReference.objects.count(),
        "plans": sorted(AnnuityPlan.objects.values_list("plan_code", "source", "needs_review")),
        "portfolios": PortfolioPlan.objects.count(),
        "lines": ProductLine.objects.count(),
        "branches": Organization.objects.count(),
        "alerts": Alert.objects.count(),
    }


def november(tmp_path: Path, name: str = "202411_规模明细.csv", **changes) -> Path:
    """Three rows of 2024-11: one on the new plan N9001 (row 4 of the file), one of another plan type."""
    rows = [
        scale_row(),
        scale_row(计划号=plan_code(2), 期末资产规模=2000.0),
        scale_row(计划号="N9001", 计划名称="新计划", **changes),
        scale_row(计划类型="集合计划", 计划号=plan_code(3)),
    ]
    return write_csv(tmp_path / name, rows)


# who may upload


def test_viewers_see_no_button_and_are_refused_with_403(viewer, tmp_path, settings):
    path = november(tmp_path)

    assert "上传事实文件" not in viewer.get(CHANGELIST).content.decode()
    assert viewer.get(UPLOAD).status_code == 403
    assert post_file(viewer, path).status_code == 403
    assert FactUpload.objects.count() == 0
    assert not Path(settings.REFGOV_UPLOADS_DIR).exists()


def test_anonymous_users_are_sent_to_the_login_and_nothing_is_kept(tmp_path, settings):
    response = post_file(Client(), november(tmp_path))

    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert FactUpload.objects.count() == 0
    assert not Path(settings.REFGOV_UPLOADS_DIR).exists()


def test_stewards_see_the_button_and_the_form(steward):
    page = steward.get(CHANGELIST).content.decode()
    assert "上传事实文件" in page and UPLOAD in page

    form = steward.get(UPLOAD).content.decode()
    assert "按文件名识别" in form and "annuity_performance（规模明细）" in form
    assert "*规模收入数据*.xlsx" in form  # the patterns that decide the domain


# preview, then confirm


def test_the_preview_writes_nothing_and_shows_rows_months_scope_and_new_keys(steward, refs, tmp_path):
    first = write_csv(tmp_path / "202411_规模明细_v1.csv", [scale_row(), scale_row(计划号=plan_code(4))])
    process_fact_file(domain="annuity_performance", path=first)
    before = snapshot()

    response = post_file(steward, november(tmp_path))

    upload = the_upload()
    assert response.status_code == 302 and response["Location"].endswith(f"/upload/{upload.pk}/")
    assert snapshot() == before  # a dry run: no fact, batch, reference row or alert written
    assert upload.state == UploadState.PREVIEWED and upload.domains == ["annuity_performance"]
    [preview] = upload.preview["domains"]
    assert (preview["rows"], preview["months"], preview["replaced"]) == (4, ["2024-11-01"], 2)
    assert preview["scope"] == [
        {"values": {"月度": "2024-11-01", "业务类型": "企年投资", "计划类型": "单一计划"}, "rows": 3, "replaced": 2},
        {"values": {"月度": "2024-11-01", "业务类型": "企年投资", "计划类型": "集合计划"}, "rows": 1, "replaced": 0},
    ]
    assert preview["new_keys"]["年金计划"] == {"count": 1, "keys": [{"key": "N9001", "rows": [4], "fact_rows": 1}]}
    page = page_of(steward, upload)
    assert "预览（尚未写入任何数据）" in page
    assert "N9001" in page and "集合计划" in page and "确认加载" in page
    assert Path(upload.stored_path).read_bytes() == (tmp_path / "202411_规模明细.csv").read_bytes()


def test_confirm_loads_the_file_as_a_batch_that_keeps_the_upload(steward, refs, tmp_path):
    path = november(tmp_path)
    post_file(steward, path)
    upload = the_upload()

    response = steward.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[upload.pk]), follow=True)

    upload.refresh_from_db()
    assert upload.state == UploadState.LOADED and upload.progress == 100 and upload.task_id
    [batch] = FactBatch.objects.all()
    assert (batch.status, batch.rows_loaded, batch.file_name) == (FactStatus.LOADED, 4, "202411_规模明细.csv")
    assert batch.file_path == upload.stored_path  # the kept file is the batch's file
    assert ScaleFact.objects.filter(batch=batch).count() == 4
    assert AnnuityPlan.objects.get(plan_code="N9001").source == Source.AUTO_DERIVED
    assert Path(upload.stored_path).read_bytes() == path.read_bytes()
    page = response.content.decode()
    assert "已确认，加载任务已排队" in page and f"#{batch.pk}" in page and "年金计划: 1 个新键" in page
    assert 'http-equiv="refresh"' not in page  # done: the page stops refreshing itself

    review = steward.get(next(r.url for r in _review_links([batch]))).content.decode()
    assert "N9001" in review and plan_code(1) not in review  # the queue filtered to what this batch derived
    assert (
        f"#{upload.pk} 202411_规模明细.csv"
        in steward.get(reverse("admin:pipeline_factbatch_change", args=[batch.pk])).content.decode()
    )


def _review_links(batch):
    from operations.upload_admin import review_links

    return review_links(batch)


def test_a_monthly_workbook_matching_both_domains_loads_both(steward, tmp_path):
    dataset = LegacyDataset(plans=30, portfolios=40)
    create_references()
    book = FactWorkbook(month="202411", scale_rows=300, income_rows=120, legacy=dataset)
    path = book.write(tmp_path / "2024年11月规模收入数据.xlsx")

    post_file(steward, path)
    upload = the_upload()
    assert upload.domains == ["annuity_income", "annuity_performance"] and upload.domains_detected
    assert [p["rows"] for p in upload.preview["domains"]] == [120, 300]
    steward.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[upload.pk]))

    upload.refresh_from_db()
    assert upload.state == UploadState.LOADED
    assert sorted(FactBatch.objects.values_list("domain", "sheet", "rows_loaded")) == [
        ("annuity_income", "收入明细", 120),
        ("annuity_performance", "规模明细", 300),
    ]
    assert (ScaleFact.objects.count(), IncomeFact.objects.count()) == (300, 120)


def test_a_chosen_domain_loads_a_file_whose_name_matches_none(steward, refs, tmp_path):
    path = write_csv(tmp_path / "november.csv", [scale_row()])

    refused = post_file(steward, path).content.decode()
    assert "没有数据域的文件名模式匹配" in refused and FactUpload.objects.count() == 0

    post_file(steward, path, domain="annuity_performance")
    upload = the_upload()
    assert (upload.domains, upload.domains_detected, upload.state) == (
        ["annuity_performance"],
        False,
        UploadState.PREVIEWED,
    )


def test_confirming_twice_loads_once(steward, refs, tmp_path):
    post_file(steward, november(tmp_path))
    upload = the_upload()
    confirm = reverse("admin:pipeline_factbatch_upload_confirm", args=[upload.pk])
    steward.post(confirm)

    again = steward.post(confirm, follow=True).content.decode()

    assert "不在待确认状态" in again
    assert FactBatch.objects.count() == 1 and ScaleFact.objects.count() == 4


def test_viewers_cannot_confirm_or_download_but_see_the_page(steward, viewer, refs, tmp_path):
    post_file(steward, november(tmp_path))
    upload = the_upload()

    assert viewer.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[upload.pk])).status_code == 403
    assert viewer.get(reverse("admin:pipeline_factbatch_upload_file", args=[upload.pk])).status_code == 403
    page = page_of(viewer, upload)
    assert "N9001" in page and "确认加载" not in page and "下载上传的文件" not in page
    upload.refresh_from_db()
    assert upload.state == UploadState.PREVIEWED and FactBatch.objects.count() == 0


def test_stewards_download_the_kept_file(steward, refs, tmp_path):
    path = november(tmp_path)
    post_file(steward, path)
    upload = the_upload()

    response = steward.get(reverse("admin:pipeline_factbatch_upload_file", args=[upload.pk]))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == path.read_bytes()
    assert "attachment" in response["Content-Disposition"] and "csv" in response["Content-Disposition"]


# bad input


def test_a_file_above_the_limit_is_refused_and_not_kept(steward, refs, tmp_path, settings):
    settings.REFGOV_UPLOAD_MAX_BYTES = 300
    path = november(tmp_path)
    assert path.stat().st_size > 300

    page = post_file(steward, path).content.decode()

    assert "202411_规模明细.csv 超过上传上限 300 B（REFGOV_UPLOAD_MAX_BYTES）" in page
    assert FactUpload.objects.count() == 0
    assert not any(Path(settings.REFGOV_UPLOADS_DIR).rglob("*.csv"))


def test_a_bad_row_refuses_the_preview_naming_row_and_column(steward, refs, tmp_path):
    before = snapshot()
    post_file(steward, november(tmp_path, 月度="2024年13月"))
    upload = the_upload()

    assert upload.state == UploadState.REFUSED
    page = page_of(steward, upload)
    assert "202411_规模明细.csv, row 4, column 月度: &#x27;2024年13月&#x27; is not a month" in page
    assert "确认加载" not in page and "无法按原样加载" in page
    confirmed = steward.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[upload.pk]), follow=True)
    assert "不在待确认状态" in confirmed.content.decode()
    assert snapshot() == before


def test_not_a_workbook_and_a_zip_bomb_are_refused_like_in_the_inbox(steward, refs, tmp_path, settings):
    broken = tmp_path / "202411_规模明细.xlsx"
    broken.write_bytes(b"this is not a zip archive")
    post_file(steward, broken)
    assert "not a readable Excel workbook" in page_of(steward, the_upload())

    FactUpload.objects.all().delete()
    settings.REFGOV_XLSX_MAX_MEMBER_BYTES = 1000
    bomb = tmp_path / "bomb_规模明细.xlsx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", "<x/>" * 1000)
    post_file(steward, bomb)
    page = page_of(steward, the_upload())
    assert "REFGOV_XLSX_MAX_MEMBER_BYTES" in page and "not parsed" in page
    assert FactBatch.objects.count() == 0


def test_unsupported_types_are_refused(steward, tmp_path):
    path = tmp_path / "202411_规模明细.pdf"
    path.write_bytes(b"%PDF-1.4")

    page = post_file(steward, path).content.decode()

    assert "不支持的文件类型 .pdf" in page and FactUpload.objects.count() == 0


def test_names_are_kept_without_folders_or_control_characters(steward, refs, tmp_path, settings):
    content = november(tmp_path).read_bytes()
    name = "../../etc/2024\x1b11_规模明细\u202e.csv"  # what a hostile client may send (no browser does)
    body = (
        b'--B\r\nContent-Disposition: form-data; name="domain"\r\n\r\n\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="' + name.encode() + b'"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n--B--\r\n"
    )
    steward.post(UPLOAD, body, content_type="multipart/form-data; boundary=B")

    upload = the_upload()
    stored = Path(upload.stored_path)
    assert upload.file_name == "202411_规模明细.csv" and stored.name == upload.file_name
    assert stored.parent.parent == Path(settings.REFGOV_UPLOADS_DIR).resolve()


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("C:\\Users\\甲\\202411_规模明细.csv", "202411_规模明细.csv"),
        ("..202411_规模明细.csv", "202411_规模明细.csv"),
        ('a<b>:"c|?*.xlsx', "a_b___c___.xlsx"),
        ("规" * 100 + ".xlsx", "规" * 65 + ".xlsx"),
    ],
)
def test_safe_names(name, kept):
    assert safe_name(name) == kept


@pytest.mark.parametrize("name", ["2024\n11.csv", "x\u202ecsv.xlsx", "report.pdf", ".csv", "noext"])
def test_names_refused(name):
    with pytest.raises(UploadRefused):
        safe_name(name)


# the task


@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_while_the_load_is_still_in_its_transaction(refs, tmp_path, monkeypatch, settings):
    """The upload page polls the progress: it is committed on its own connection while the load's transaction runs."""
    FactUpload.objects.all().delete()
    upload = uploads.store_upload(
        name="202411_规模明细.csv",
        chunks=[november(tmp_path).read_bytes()],
        size=1,
        domain=None,
        user=None,
    )
    uploads.preview_upload(upload=upload)
    assert uploads.confirm_upload(upload_id=upload.pk, user=None)
    seen = []
    params = {k: v for k, v in connection.get_connection_params().items() if k not in {"cursor_factory", "context"}}
    original = UploadProgress.write

    def write_and_look(self, message):
        original(self, message)
        with psycopg.connect(**params) as other:
            seen.append(other.execute("SELECT progress, progress_message FROM pipeline_factupload").fetchone())

    monkeypatch.setattr(UploadProgress, "write", write_and_look)

    load_upload(upload_id=upload.pk)

    # e.g. (2, "reading"), (65, "4 rows read; loading facts"), (85, "checking keys"): seen from another session
    during = [(p, m) for p, m in seen if m]
    assert len(during) >= 2 and all(0 < p < 100 for p, _ in during)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen) and seen[-1] == (100, "")
    upload.refresh_from_db()
    assert upload.state == UploadState.LOADED and ScaleFact.objects.count() == 4


def test_a_retried_task_does_not_load_an_upload_whose_attempt_died(steward, refs, tmp_path):
    post_file(steward, november(tmp_path))
    upload = the_upload()
    FactUpload.objects.filter(pk=upload.pk).update(state=UploadState.RUNNING)  # as a killed worker leaves it

    with pytest.raises(UploadRefused, match="did not finish"):
        load_upload(upload_id=upload.pk)

    upload.refresh_from_db()
    assert upload.state == UploadState.FAILED and "did not finish" in upload.message
    assert ScaleFact.objects.count() == 0


def test_a_changed_kept_file_is_not_loaded(steward, refs, tmp_path):
    post_file(steward, november(tmp_path))
    upload = the_upload()
    Path(upload.stored_path).write_bytes(b"changed")
    assert uploads.confirm_upload(upload_id=upload.pk, user=None)

    with pytest.raises(UploadRefused, match="changed since the preview"):
        load_upload(upload_id=upload.pk)

    upload.refresh_from_db()
    assert upload.state == UploadState.FAILED and FactBatch.objects.count() == 0


def test_a_domain_rejected_at_load_fails_the_upload_and_records_the_batch(steward, refs, tmp_path, config_copy):
    post_file(steward, november(tmp_path))
    upload = the_upload()
    path = config_copy / "reference_management.yml"  # preload_only since the preview: unknown keys refuse the load
    path.write_text(path.read_text(encoding="utf-8").replace("strategy: hybrid", "strategy: preload_only"), "utf-8")

    steward.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[upload.pk]))

    upload.refresh_from_db()
    [batch] = FactBatch.objects.all()
    assert upload.state == UploadState.FAILED and batch.status == FactStatus.REJECTED
    assert upload.results == [
        {"domain": "annuity_performance", "status": "rejected", "batch_id": batch.pk, "message": batch.message}
    ]
    assert "N9001 (rows 4)" in upload.message and ScaleFact.objects.count() == 0
    page = page_of(steward, upload)
    assert "N9001 (rows 4)" in page and "未加载" in page


def test_a_queued_upload_page_refreshes_itself_until_the_load_ends(steward, refs, tmp_path):
    post_file(steward, november(tmp_path))
    upload = the_upload()
    assert uploads.confirm_upload(upload_id=upload.pk, user=None)  # queued, no worker has taken it yet

    page = page_of(steward, upload)
    assert 'http-equiv="refresh"' in page and "等待任务进程" in page and 'id="refgov-upload-progress" value="0"' in page

    FactUpload.objects.filter(pk=upload.pk).update(
        state=UploadState.RUNNING,
        progress=40,
        progress_domain="annuity_performance",
        progress_message="50,000 rows read",
    )
    page = page_of(steward, upload)
    assert 'value="40"' in page and "annuity_performance: 已读取 50,000 行" in page and 'http-equiv="refresh"' in page


def test_the_same_content_uploaded_again_is_skipped_with_a_link_to_its_batch(steward, refs, tmp_path):
    path = november(tmp_path)
    post_file(steward, path)
    first = the_upload()
    steward.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[first.pk]))
    [batch] = FactBatch.objects.all()

    post_file(steward, path)
    second = FactUpload.objects.exclude(pk=first.pk).get()
    assert f"相同内容已作为批次 #{batch.pk} 加载" in page_of(steward, second)
    steward.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[second.pk]))

    second.refresh_from_db()
    assert second.state == UploadState.LOADED
    assert second.results[0]["status"] == "skipped" and second.results[0]["batch_id"] == batch.pk
    assert FactBatch.objects.count() == 1 and ScaleFact.objects.count() == 4
    assert "已跳过" in page_of(steward, second)


def test_the_upload_task_and_its_batch_are_on_the_run_history(steward, refs, tmp_path):
    post_file(steward, november(tmp_path))
    upload = the_upload()
    steward.post(reverse("admin:pipeline_factbatch_upload_confirm", args=[upload.pk]))

    page = steward.get(reverse("refgov_history")).content.decode()

    assert f"refgov.upload #{upload.pk} (load_upload_task)" in page
    assert "annuity_performance · 202411_规模明细.csv" in page


def test_an_upload_without_the_csrf_token_is_refused(django_user_model, tmp_path):
    """The upload view reads the body through its own handler, so it checks CSRF itself: a forged post is refused."""
    user = django_user_model.objects.create_user(username="s", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=STEWARD_GROUP))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert post_file(client, november(tmp_path)).status_code == 403
    assert FactUpload.objects.count() == 0


def test_the_preview_shows_quarantined_rows_and_unmapped_values(steward, refs, tmp_path):
    rows = [scale_row(), scale_row(计划号="P 0002"), scale_row(机构="火星分公司"), scale_row(计划号="'P0003'")]
    before = snapshot()
    post_file(steward, write_csv(tmp_path / "202411_规模明细.csv", rows))
    assert snapshot() == before
    [preview] = the_upload().preview["domains"]
    assert preview["quarantined"] == 2
    assert [(u["value"], u["rows"], u["fallback"]) for u in preview["unmapped"]] == [("火星分公司", 1, "G00")]
    page = page_of(steward, the_upload())
    assert "将隔离的行（无效键）" in page and "火星分公司 → 机构代码 G00 (1)" in page
