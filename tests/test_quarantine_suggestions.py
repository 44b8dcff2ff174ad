"""Typo suggestions for quarantined keys: a key that breaks its table's pattern (``1P0290`` for ``P0290``) is never
derived, but the steward sees which existing key it probably means, and corrects and resubmits its rows by it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from pipeline.config import load_config
from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts.quarantine import correct_by_suggestions
from pipeline.facts.service import process_fact_file
from pipeline.models import FactBatch, FactStatus, KeySuggestion, QuarantinedRow, ScaleFact
from reference.models import AnnuityPlan, KeyAlias, PortfolioPlan
from reference.permissions import STEWARD_GROUP, VIEWER_GROUP, ensure_groups
from tests.facts_support import PLANS, PORTFOLIOS, create_references, scale_row, write_csv
from tests.legacy import edit_config

pytestmark = pytest.mark.django_db

PATTERNS = {"年金计划": r"^[PZ][0-9]{4,6}$", "组合计划": r"^QTAN[0-9]{4,7}$"}
PLAN_NAME, CUSTOMER = "华东能源企业年金计划", "华东能源集团有限公司"
# bad key → (计划号, 计划名称, 组合代码, 组合名称) of its rows
TYPOS = {
    "1P0290": ("1P0290", PLAN_NAME, "QTAN0290", "华东能源稳健组合"),  # a character too many
    "P029": (
        "P029",
        PLAN_NAME,
        "QTAN0290",
        "华东能源稳健组合",
    ),  # a digit missing: P0029 and P0290 both fit, names decide
    "QTAN029": ("P0290", PLAN_NAME, "QTAN029", "华东能源稳健组合"),  # a digit missing, same plan
    "'P0003'": ("'P0003'", "计划3", portfolio_code(3), "组合3"),  # quoted: unquoted is P0003
    "见附件": ("见附件", "西北新材料年金计划", portfolio_code(5), "组合5"),  # genuinely new, nothing like it
}


@pytest.fixture
def references(config_copy):
    create_references()
    AnnuityPlan.objects.create(plan_code="P0290", short_name=PLAN_NAME, customer_name=CUSTOMER)
    PortfolioPlan.objects.create(portfolio_code="QTAN0290", plan_id="P0290", name="华东能源稳健组合")
    edit_config(config_copy, lambda c: c.update({"key_patterns": PATTERNS}))
    return config_copy


@pytest.fixture
def users(db):
    ensure_groups()
    steward = User.objects.create_user("steward", password="pw", is_staff=True)
    steward.groups.add(Group.objects.get(name=STEWARD_GROUP))
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.groups.add(Group.objects.get(name=VIEWER_GROUP))
    return steward, viewer


def typo_rows(n: int, *, seed: int = 11) -> tuple[list[dict], dict[str, list[int]]]:
    """``n`` good rows with the ``TYPOS`` spread among them; bad key → its file rows."""
    rnd = random.Random(seed)
    rows: list[dict] = []
    bad: dict[str, list[int]] = {}
    keys = list(TYPOS)
    for i in range(n):
        p = rnd.randrange(1, PORTFOLIOS + 1)
        plan = 1 + (p - 1) % PLANS
        row = scale_row(
            计划号=plan_code(plan),
            计划名称=f"计划{plan}",
            组合代码=portfolio_code(p),
            组合名称=f"组合{p}",
            期末资产规模=1000 + i,
        )
        if i % 499 == 7:
            key = keys[(i // 499) % len(keys)]
            plan_key, name, portfolio, portfolio_name = TYPOS[key]
            customer = CUSTOMER if name == PLAN_NAME else "西北新材料股份有限公司"
            row.update(计划号=plan_key, 计划名称=name, 组合代码=portfolio, 组合名称=portfolio_name, 客户名称=customer)
            bad.setdefault(key, []).append(i + 2)  # header is row 1
        rows.append(row)
    return rows, bad


def load(path: Path, rows: list[dict]) -> FactBatch:
    return process_fact_file(domain="annuity_performance", path=write_csv(path, rows), config=load_config()).batch


def best(table: str, key: str) -> KeySuggestion | None:
    return KeySuggestion.objects.filter(table=table, key=key, rank=1).first()


def test_quarantined_typos_get_the_key_they_mean_and_new_junk_gets_none(references, tmp_path):
    rows, bad = typo_rows(12_000)
    batch = load(tmp_path / "202411_规模明细.csv", rows)
    assert batch.status == FactStatus.LOADED
    bad_rows = sum(len(v) for v in bad.values())
    assert QuarantinedRow.objects.filter(batch=batch).count() == bad_rows
    assert not AnnuityPlan.objects.filter(plan_code__in=["1P0290", "'P0003'", "见附件"]).exists()

    plan = best("年金计划", "1P0290")
    assert plan is not None and plan.candidate == "P0290" and plan.batch_id == batch.pk
    assert plan.score >= 0.9 and plan.key_distance == 1
    assert "key" in plan.evidence["found_by"] and plan.evidence["key"]["edit"] == "extra"
    assert plan.evidence["names"]["计划简称"] == 1.0 and plan.evidence["names"]["客户名称"] == 1.0

    short = best("年金计划", "P029")
    assert short is not None and short.candidate == "P0290" and short.evidence["key"]["edit"] == "missing_digit"
    assert all(  # P0029 is one digit away too, but its names are unlike
        s.score < short.score for s in KeySuggestion.objects.filter(table="年金计划", key="P029", candidate="P0029")
    )

    portfolio = best("组合计划", "QTAN029")
    assert portfolio is not None and portfolio.candidate == "QTAN0290"
    assert portfolio.evidence["key"]["edit"] == "missing_digit" and portfolio.evidence["key"]["same_parent"] is True
    assert set(portfolio.evidence["found_by"]) == {"key", "sibling"}

    quoted = best("年金计划", "'P0003'")
    assert quoted is not None and quoted.candidate == "P0003" and quoted.evidence["key"]["edit"] == "unquoted"

    assert not KeySuggestion.objects.filter(key="见附件").exists()
    assert KeySuggestion.objects.filter(batch=batch).count() == KeySuggestion.objects.count()


def test_no_suggestion_query_when_nothing_is_quarantined(references, tmp_path):
    rows = [scale_row(期末资产规模=1000 + i) for i in range(50)]
    with CaptureQueriesContext(connection) as queries:
        batch = load(tmp_path / "202411_规模明细.csv", rows)
    assert batch.rows_loaded == 50
    assert not [q for q in queries.captured_queries if "_suggest_rows" in q["sql"]]
    assert KeySuggestion.objects.count() == 0


def test_admin_shows_the_suggestion_and_a_steward_corrects_and_resubmits_by_it(references, tmp_path, users, client):
    steward, viewer = users
    rows, bad = typo_rows(10_000)
    batch = load(tmp_path / "202411_规模明细.csv", rows)
    url = reverse("admin:pipeline_quarantinedrow_changelist")
    typo = QuarantinedRow.objects.filter(batch=batch, bad_keys="计划代码=1P0290")
    ids = [str(pk) for pk in typo.values_list("pk", flat=True)]
    assert len(ids) == len(bad["1P0290"])

    client.force_login(viewer)
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    text = page.content.decode()
    assert page.status_code == 200 and "疑似笔误" in text and "疑似 P0290 的笔误" in text
    assert len([q for q in queries.captured_queries if "pipeline_keysuggestion" in q["sql"]]) <= 2  # page + count
    assert "correct_by_suggestion" not in text
    refused = client.post(url, {"action": "correct_by_suggestion", "_selected_action": ids})
    assert refused.status_code == 200
    assert QuarantinedRow.objects.filter(pk__in=ids, state="pending").count() == len(ids)
    assert not KeyAlias.objects.exists()

    client.force_login(steward)
    text = client.get(url).content.decode()
    assert "correct_by_suggestion" in text and "按建议更正并重新提交" in text and "疑似 P0290 的笔误" in text
    done = client.post(url, {"action": "correct_by_suggestion", "_selected_action": ids}, follow=True)
    assert done.status_code == 200
    assert f"{len(ids)} 行已按建议更正，并作为批次" in done.content.decode()
    assert QuarantinedRow.objects.filter(pk__in=ids, state="resubmitted").count() == len(ids)
    assert (
        sorted(
            ScaleFact.objects.filter(plan_id="P0290", source_row__in=bad["1P0290"]).values_list("source_row", flat=True)
        )
        == bad["1P0290"]
    )
    assert KeyAlias.objects.get(table="年金计划", alias="1P0290").canonical == "P0290"
    assert not AnnuityPlan.objects.filter(plan_code="1P0290").exists()

    # a second file with the same typo: the alias resolves it, nothing is quarantined
    again = load(tmp_path / "202412_规模明细.csv", [scale_row(月度="202412", 计划号="1P0290", 组合代码="QTAN0290")])
    assert again.rows_loaded == 1 and ScaleFact.objects.get(batch=again).plan_id == "P0290"
    assert not QuarantinedRow.objects.filter(batch=again).exists()

    # 见附件 has no suggestion: the action leaves its rows pending and says so
    junk = QuarantinedRow.objects.filter(batch=batch, bad_keys="计划代码=见附件")
    result = correct_by_suggestions(ids=list(junk.values_list("pk", flat=True)), user=steward)
    assert result.corrected == 0 and result.left == junk.count() and result.resubmitted.rows == 0
    assert set(junk.values_list("state", flat=True)) == {"pending"}
