"""Key rules and the quarantine: junk keys and keys that break their table's pattern are never auto-derived; the file
is refused (reject) or their rows kept in the quarantine (quarantine), where a steward corrects and resubmits them."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import Group, User
from django.test import TestCase
from django.urls import reverse
from django.utils.html import escape

from pipeline.config import load_config
from pipeline.config.loader import ConfigError
from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts.quarantine import QuarantineError, correct_quarantined, resubmit_quarantined
from pipeline.facts.service import FactLoadError, process_fact_file
from pipeline.models import DerivedReference, FactBatch, FactKind, FactStatus, QuarantinedRow, ScaleFact
from reference.models import AnnuityPlan, KeyAlias, PortfolioPlan
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP, ensure_groups
from tests.facts_support import PLANS, PORTFOLIOS, create_references, scale_row, write_csv, write_xlsx
from tests.legacy import edit_config

pytestmark = pytest.mark.django_db

PLAN_PATTERN = r"^[PZN][0-9]{4,6}$"
JUNK = ["P0001 ", "P 0002", "'P0003'", "P0004\t5", "计划号 待确认", 'P"0006']  # after trimming: still junk
BROKEN = ["1P0290", "X12"]  # no junk, but not the 年金计划 pattern


@pytest.fixture
def references(config_copy):
    create_references()
    edit_config(config_copy, lambda c: c.update({"key_patterns": {"年金计划": PLAN_PATTERN}}))
    return config_copy


def set_invalid_keys(config_dir: Path, mode: str) -> None:
    path = config_dir / "domains" / "annuity_performance.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["invalid_keys"] = mode
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def rows_with_bad_keys(n: int, *, seed: int = 3) -> tuple[list[dict], dict[str, list[int]]]:
    """``n`` good rows (existing and new valid keys) with bad keys spread among them; bad key → its file rows."""
    rnd = random.Random(seed)
    rows: list[dict] = []
    bad: dict[str, list[int]] = {}
    keys = JUNK[1:] + BROKEN  # "P0001 " is trimmed to a good key
    for i in range(n):
        p = rnd.randrange(1, PORTFOLIOS + 1)
        row = scale_row(
            计划号=plan_code(1 + (p - 1) % PLANS) if i % 50 else f"N{9000 + i % 7}",
            组合代码=portfolio_code(p),
            期末资产规模=1000 + i,
        )
        if i % 997 == 5:
            key = keys[(i // 997) % len(keys)]
            row["计划号"] = key
            bad.setdefault(key, []).append(i + 2)  # header is row 1
        rows.append(row)
    rows.append(scale_row(计划号="P0001 ", 组合代码=portfolio_code(1)))
    return rows, bad


def test_quarantine_keeps_the_bad_rows_of_a_12k_row_file_and_loads_the_rest(references, tmp_path):
    rows, bad = rows_with_bad_keys(12_000)
    bad_rows = sum(len(v) for v in bad.values())
    path = write_csv(tmp_path / "202411_规模明细.csv", rows)
    result = process_fact_file(domain="annuity_performance", path=path, config=load_config())
    batch = result.batch
    assert batch.status == FactStatus.LOADED
    assert batch.rows_read == 12_001
    assert batch.rows_loaded == 12_001 - bad_rows
    assert ScaleFact.objects.filter(batch=batch).count() == 12_001 - bad_rows
    assert f"quarantined {bad_rows} rows with invalid keys" in batch.message
    # new valid keys are derived, bad ones never
    assert AnnuityPlan.objects.filter(plan_code__startswith="N90").count() == 7
    assert not AnnuityPlan.objects.filter(plan_code__in=[k.strip().upper() for k in bad]).exists()
    assert not AnnuityPlan.objects.filter(plan_code__contains=" ").exists()
    quarantined = QuarantinedRow.objects.filter(batch=batch)
    assert quarantined.count() == bad_rows
    by_key = {}
    for q in quarantined:
        (problem,) = q.problems
        by_key.setdefault(problem["key"], []).append(q.row_number)
        assert q.file_name == path.name and q.month.isoformat() == "2024-11-01"
        assert q.data["计划代码"] == problem["key"] and q.data["组合代码"] and q.data["期末资产规模"] is not None
        assert problem["reason"] == ("pattern" if problem["key"] in BROKEN else "junk")
    assert by_key == {k.strip().upper(): v for k, v in bad.items()}


def test_reject_lists_every_bad_key_with_its_rows_and_loads_nothing(references, tmp_path):
    set_invalid_keys(references, "reject")
    rows, bad = rows_with_bad_keys(10_000)
    path = write_xlsx(tmp_path / "202411_规模明细.xlsx", {"规模明细": rows})
    with pytest.raises(FactLoadError) as info:
        process_fact_file(domain="annuity_performance", path=path, config=load_config())
    message = str(info.value)
    assert "invalid_keys: reject" in message and "nothing loaded" in message and "sheet 规模明细" in message
    for key, file_rows in bad.items():
        assert f"{key.strip().upper()!r}" in message
        assert ", ".join(map(str, file_rows)) in message
    assert ScaleFact.objects.count() == 0
    assert not AnnuityPlan.objects.filter(plan_code__startswith="N90").exists()
    assert QuarantinedRow.objects.count() == 0
    assert FactBatch.objects.get().status == FactStatus.REJECTED


def test_a_key_that_exists_is_never_quarantined_whatever_its_shape(references, tmp_path):
    AnnuityPlan.objects.create(plan_code="LEGACY-1")  # preloaded with its own shape
    PortfolioPlan.objects.create(portfolio_code="QTAN9999", plan_id="LEGACY-1")
    path = write_csv(tmp_path / "202411_规模明细.csv", [scale_row(计划号="legacy-1", 组合代码="QTAN9999")])
    result = process_fact_file(domain="annuity_performance", path=path, config=load_config())
    assert result.batch.rows_loaded == 1 and QuarantinedRow.objects.count() == 0


def test_key_patterns_are_checked_by_python_and_postgresql(config_copy):
    edit_config(config_copy, lambda c: c.update({"key_patterns": {"年金计划": "^[P"}}))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "key_patterns.年金计划" in str(info.value)
    edit_config(config_copy, lambda c: c.update({"key_patterns": {"年金计划": "^(?P<prefix>P)[0-9]+$"}}))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "key_patterns.年金计划" in str(info.value) and "PostgreSQL" in str(info.value)
    edit_config(config_copy, lambda c: c.update({"key_patterns": {"没有这张表": "^P$"}}))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert "key_patterns.没有这张表" in str(info.value)


@pytest.fixture
def users(db):
    ensure_groups()
    steward = User.objects.create_user("steward", password="pw", is_staff=True)
    steward.groups.add(Group.objects.get(name=STEWARD_GROUP))
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER_GROUP))
    return steward, viewer


def load_with_typos(tmp_path: Path) -> FactBatch:
    rows, _ = rows_with_bad_keys(10_000)
    path = write_csv(tmp_path / "202411_规模明细.csv", rows)
    return process_fact_file(domain="annuity_performance", path=path, config=load_config()).batch


def test_a_steward_corrects_a_junk_key_and_resubmits_into_its_month(references, tmp_path, users):
    steward, _ = users
    batch = load_with_typos(tmp_path)
    junk = QuarantinedRow.objects.filter(batch=batch, bad_keys__startswith="计划代码=P 0002")
    ids = list(junk.values_list("pk", flat=True))
    file_rows = sorted(junk.values_list("row_number", flat=True))
    assert ids
    corrected = correct_quarantined(
        ids=ids, table="年金计划", wrong_key="P 0002", right_key="p0002", remember_alias=True, user=steward
    )
    assert corrected == len(ids)
    result = resubmit_quarantined(ids=ids, user=steward)
    (again,) = result.batches
    assert again.kind == FactKind.RESUBMIT and again.rows_loaded == len(ids) and again.periods == ["2024-11-01"]
    loaded = ScaleFact.objects.filter(batch=again)
    assert sorted(loaded.values_list("source_row", flat=True)) == file_rows
    assert set(loaded.values_list("plan_id", flat=True)) == {"P0002"}
    assert all(r.closing_assets >= Decimal(1000) for r in loaded)
    assert set(QuarantinedRow.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"resubmitted"}
    assert KeyAlias.objects.get(table="年金计划", alias="P 0002").canonical == "P0002"
    # the next load of the same kind of file resolves the alias: nothing of P 0002 is quarantined again
    path = write_csv(tmp_path / "202412_规模明细.csv", [scale_row(月度="202412", 计划号="p 0002")])
    result = process_fact_file(domain="annuity_performance", path=path, config=load_config())
    assert result.batch.rows_loaded == 1 and ScaleFact.objects.get(batch=result.batch).plan_id == "P0002"


def test_resubmission_is_refused_while_a_key_breaks_the_rules_and_a_later_file_of_the_scope_retires_the_rows(
    references, tmp_path, users
):
    steward, _ = users
    batch = load_with_typos(tmp_path)
    broken = list(QuarantinedRow.objects.filter(batch=batch, bad_keys="计划代码=1P0290").values_list("pk", flat=True))
    with pytest.raises(QuarantineError, match="break the key rules"):
        resubmit_quarantined(ids=broken, user=steward)
    with pytest.raises(QuarantineError, match="cannot be a key of 年金计划: does not match the key pattern"):
        correct_quarantined(
            ids=broken, table="年金计划", wrong_key="1P0290", right_key="X0290", remember_alias=False, user=steward
        )
    with pytest.raises(QuarantineError, match="white space"):
        correct_quarantined(
            ids=broken, table="年金计划", wrong_key="1P0290", right_key="P 0290", remember_alias=False, user=steward
        )
    correct_quarantined(
        ids=broken, table="年金计划", wrong_key="1P0290", right_key=plan_code(29), remember_alias=False, user=steward
    )
    process_fact_file(
        domain="annuity_performance",
        path=write_csv(tmp_path / "202411_规模明细_v2.csv", [scale_row()]),
        config=load_config(),
    )
    # the later file of the same scope (2024-11, 企年投资, 单一计划) replaced the month: the rows are retired
    assert set(QuarantinedRow.objects.filter(pk__in=broken).values_list("state", flat=True)) == {"superseded"}
    assert resubmit_quarantined(ids=broken, user=steward).rows == 0
    assert QuarantinedRow.objects.filter(batch=batch, state="pending").count() == 0


def test_admin_stewards_correct_and_resubmit_viewers_only_see(references, tmp_path, users, client):
    steward, viewer = users
    batch = load_with_typos(tmp_path)
    url = reverse("admin:pipeline_quarantinedrow_changelist")
    rows = QuarantinedRow.objects.filter(batch=batch, bad_keys="计划代码='P0003'")
    ids = [str(pk) for pk in rows.values_list("pk", flat=True)]
    assert ids
    client.force_login(viewer)
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "隔离行" in text and escape("'P0003'") in text and "空白、引号或控制字符" in text
    assert "correct_and_resubmit" not in text
    posted = client.post(url, {"action": "correct_and_resubmit", "_selected_action": ids})
    assert posted.status_code == 200  # the changelist again: an action the user may not run is not offered
    assert QuarantinedRow.objects.filter(pk__in=ids, state="pending").count() == len(ids)

    client.force_login(steward)
    text = client.get(url).content.decode()
    assert "correct_and_resubmit" in text and "更正键并重新提交" in text
    form = client.post(url, {"action": "correct_and_resubmit", "_selected_action": ids})
    assert form.status_code == 200 and escape("'P0003'") in form.content.decode()
    done = client.post(
        url,
        {
            "action": "correct_and_resubmit",
            "_selected_action": ids,
            "_apply": "1",
            "wrong": "年金计划\t'P0003'",
            "right_key": "P0003",
            "remember_alias": "on",
        },
        follow=True,
    )
    assert done.status_code == 200
    assert "重新提交" in done.content.decode()
    assert QuarantinedRow.objects.filter(pk__in=ids, state="resubmitted").count() == len(ids)
    assert ScaleFact.objects.filter(
        plan_id="P0003", source_row__in=QuarantinedRow.objects.filter(pk__in=ids).values("row_number")
    ).count() == len(ids)
    refused = client.post(
        url,
        {
            "action": "correct_and_resubmit",
            "_selected_action": [str(QuarantinedRow.objects.filter(bad_keys="计划代码=X12").first().pk)],
            "_apply": "1",
            "wrong": "年金计划\tX12",
            "right_key": "NOSUCHKEY",
        },
    )
    assert "没有" in refused.content.decode() or "no row with key" in refused.content.decode()


def test_the_batch_page_notification_and_weekly_report_count_the_quarantined_rows(
    references, tmp_path, users, client, settings
):
    from django.core import mail

    from pipeline.reports import send_review_report

    settings.REFGOV_NOTIFIERS = ["email"]
    settings.REFGOV_NOTIFY_EMAILS = ["stewards@example.com"]
    steward, viewer = users
    rows, bad = rows_with_bad_keys(10_000)
    path = write_csv(tmp_path / "202411_规模明细.csv", rows)
    with TestCase.captureOnCommitCallbacks(execute=True):
        result = process_fact_file(domain="annuity_performance", path=path, config=load_config())
    count = sum(len(v) for v in bad.values())
    assert result.quarantined == count and result.summary()["rows_quarantined"] == count
    assert any(f"隔离行（键违反键规则）：{count}" in m.body for m in mail.outbox)
    client.force_login(viewer)
    page = client.get(reverse("admin:pipeline_factbatch_change", args=[result.batch.pk])).content.decode()
    assert f"?batch__exact={result.batch.pk}" in page
    listed = client.get(reverse("admin:pipeline_quarantinedrow_changelist") + f"?batch__exact={result.batch.pk}")
    assert listed.status_code == 200 and escape("'P0003'") in listed.content.decode()
    index = client.get(reverse("admin:index")).content.decode()
    assert (
        "待更正的隔离行" in index
        and f'<span class="refgov-quarantined" style="color:#c62828;font-weight:bold">{count}<' in index
    )
    send_review_report(channel="data-quality-alerts")
    assert f"等待更正的隔离行：{count}" in mail.outbox[-1].body


def test_a_references_only_run_derives_no_junk_key(references, tmp_path):
    rows, _ = rows_with_bad_keys(10_000)
    path = write_csv(tmp_path / "202411_规模明细.csv", rows)
    result = process_fact_file(domain="annuity_performance", path=path, config=load_config(), load_facts=False)
    assert "rows with invalid keys not derived" in result.batch.message
    assert AnnuityPlan.objects.filter(plan_code__startswith="N90").count() == 7
    assert not AnnuityPlan.objects.filter(plan_code__in=["1P0290", "X12", "P 0002"]).exists()
    assert QuarantinedRow.objects.count() == 0 and ScaleFact.objects.count() == 0


def test_a_junk_key_corrected_to_a_new_valid_key_is_derived_at_resubmission(references, tmp_path, users):
    steward, _ = users
    rows, _ = rows_with_bad_keys(10_000)
    rows += [scale_row(计划号="P 9001", 计划名称="新计划甲", 客户名称="新客户", 组合代码=portfolio_code(3))] * 3
    batch = process_fact_file(
        domain="annuity_performance", path=write_csv(tmp_path / "202411_规模明细.csv", rows), config=load_config()
    ).batch
    ids = list(QuarantinedRow.objects.filter(batch=batch, bad_keys="计划代码=P 9001").values_list("pk", flat=True))
    assert len(ids) == 3 and not AnnuityPlan.objects.filter(plan_code="P9001").exists()
    correct_quarantined(
        ids=ids, table="年金计划", wrong_key="P 9001", right_key="p9001", remember_alias=True, user=steward
    )
    (again,) = resubmit_quarantined(ids=ids, user=steward).batches
    plan = AnnuityPlan.objects.get(plan_code="P9001")
    assert plan.source == "auto_derived" and plan.needs_review and plan.short_name == "新计划甲"
    assert plan.customer_name == "新客户" and plan.remark == "2411_新建"
    assert again.new_references == {"年金计划": 1}
    assert DerivedReference.objects.get(table="年金计划", key="P9001").batch == again
    assert ScaleFact.objects.filter(batch=again, plan_id="P9001").count() == 3
