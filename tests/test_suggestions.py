"""Typo detection at birth: a load that derives new keys ranks the existing rows each probably means (real files,
real PostgreSQL with pg_trgm and fuzzystrmatch)."""

from __future__ import annotations

import random
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pipeline.config import load_config
from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts.service import process_fact_file
from pipeline.facts.suggestions import flush_pending_index_entries
from pipeline.models import KeySuggestion
from reference.models import AnnuityPlan, PortfolioPlan, Source
from tests.facts_support import create_references, scale_row, write_csv

pytestmark = pytest.mark.django_db

PLANS, PORTFOLIOS = 300, 600
CITIES = ["北京", "上海", "广州", "深圳", "成都", "武汉", "南京", "西安", "杭州", "重庆"]
TRADES = ["电力", "石化", "建设", "交通", "钢铁", "银行", "证券", "烟草", "航空", "电信", "煤业", "机械"]
KINDS = ["固定收益型", "含权益型", "货币型", "存款型"]


def plan_name(i: int) -> str:
    return f"{CITIES[i % 10]}{TRADES[(i // 10) % 12]}{'甲乙丙丁戊己庚辛壬癸'[(i // 120) % 10]}企业年金计划"


def customer(i: int) -> str:
    return f"{CITIES[i % 10]}{TRADES[(i // 10) % 12]}集团{i}有限公司"


def portfolio_name(i: int) -> str:
    return f"{plan_name(1 + (i - 1) % PLANS)}{KINDS[i % 4]}组合{i}"


@pytest.fixture
def references(config_copy):
    create_named_references()


def create_named_references() -> None:
    """300 plans and 600 portfolios with realistic names (and the product lines and branches)."""
    create_references()  # product lines, branches, the first 30 plans and 40 portfolios (named again below)
    AnnuityPlan.objects.bulk_create(AnnuityPlan(plan_code=plan_code(i)) for i in range(31, PLANS + 1))
    PortfolioPlan.objects.bulk_create(
        PortfolioPlan(portfolio_code=portfolio_code(i), plan_id=plan_code(1 + (i - 1) % PLANS))
        for i in range(41, PORTFOLIOS + 1)
    )
    plans = list(AnnuityPlan.objects.all())
    for plan in plans:
        i = int(plan.plan_code[1:])
        plan.short_name, plan.customer_name, plan.plan_type = plan_name(i), customer(i), "单一计划"
    AnnuityPlan.objects.bulk_update(plans, ["short_name", "customer_name", "plan_type"])
    portfolios = list(PortfolioPlan.objects.all())
    for portfolio in portfolios:
        portfolio.name = portfolio_name(int(portfolio.portfolio_code[4:]))
    PortfolioPlan.objects.bulk_update(portfolios, ["name"])


def fact_rows(n: int, *, seed: int = 7) -> list[dict]:
    """``n`` rows on existing plans and portfolios, their names as the source writes them."""
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        p = rnd.randrange(1, PORTFOLIOS + 1)
        plan = 1 + (p - 1) % PLANS
        rows.append(
            scale_row(
                计划号=plan_code(plan),
                计划名称=plan_name(plan),
                客户名称=customer(plan),
                组合代码=portfolio_code(p),
                组合名称=portfolio_name(p),
                期末资产规模=rnd.randrange(1_000, 9_000_000),
            )
        )
    return rows


def typo_row(plan_key: str, plan: int, portfolio_key: str, portfolio: int, assets: int = 500_000) -> dict:
    """A row whose codes are mistyped while its names are those of ``plan`` and ``portfolio``."""
    return scale_row(
        计划号=plan_key,
        计划名称=plan_name(plan),
        客户名称=customer(plan),
        组合代码=portfolio_key,
        组合名称=portfolio_name(portfolio),
        期末资产规模=assets,
    )


def suggestions(table: str, key: str) -> list[KeySuggestion]:
    return list(KeySuggestion.objects.filter(table=table, key=key).order_by("rank"))


def test_a_load_of_12k_rows_suggests_the_right_key_for_each_kind_of_typo(references, tmp_path):
    rows = fact_rows(12_000)
    typos = {
        "1P0029": 29,  # a stray leading digit (the old system's hard-coded 1P0290 → P0290)
        "P00299": 299,  # a doubled digit
        "P1029": 129,  # two digits swapped
        "P024": 24,  # a digit dropped
        "P0957": 57,  # a wrong digit
    }
    for key, plan in typos.items():
        rows += [typo_row(key, plan, portfolio_code(plan), plan)] * 3
    # a portfolio code with a digit dropped, under its right plan
    rows += [typo_row(plan_code(77), 77, "QTAN077", 77)] * 2
    # genuinely new: a plan and a portfolio nobody has, with names like no other
    rows.append(
        scale_row(
            计划号="P9001",
            计划名称="全新示范养老计划",
            客户名称="新客户股份",
            组合代码="QTAN9001",
            组合名称="全新示范组合",
        )
    )
    path = write_csv(tmp_path / "202411_规模明细.csv", rows)

    result = process_fact_file(domain="annuity_performance", path=path)

    assert result.batch.status == "loaded" and result.batch.rows_loaded == len(rows)
    assert result.batch.new_references["年金计划"] == 6
    for key, plan in typos.items():
        found = suggestions("年金计划", key)
        assert found, f"no suggestion for {key}"
        best = found[0]
        assert best.candidate == plan_code(plan), (key, [(s.candidate, s.score, s.evidence) for s in found])
        assert best.score >= 0.8 and best.key_distance in (1, 2)
        assert best.evidence["names"]["计划简称"] == 1.0 and best.evidence["names"]["客户名称"] == 1.0
        assert best.batch_id == result.batch.pk
    assert suggestions("年金计划", "1P0029")[0].evidence["key"] == {
        "distance": 1,
        "edit": "extra",
        "same_shape": False,
        "same_prefix": False,
    }
    assert suggestions("年金计划", "P1029")[0].evidence["key"]["edit"] == "swapped"
    assert suggestions("年金计划", "P024")[0].evidence["key"]["edit"] == "missing_digit"
    assert suggestions("年金计划", "P0957")[0].evidence["key"]["edit"] == "wrong_digit"

    portfolio = suggestions("组合计划", "QTAN077")
    assert portfolio[0].candidate == portfolio_code(77) and portfolio[0].score >= 0.8
    assert "key" in portfolio[0].evidence["found_by"] and "sibling" in portfolio[0].evidence["found_by"]

    # the genuinely new keys: nothing close enough by key or name
    assert suggestions("年金计划", "P9001") == []
    assert suggestions("组合计划", "QTAN9001") == []
    # the facts stay on the keys of the file until a steward merges
    assert AnnuityPlan.objects.get(pk="1P0029").source == Source.AUTO_DERIVED


def test_a_similar_name_alone_finds_a_plan_whose_code_is_entirely_different(references, tmp_path):
    rows = fact_rows(200) + [typo_row("X777", 42, portfolio_code(42), 42)]
    process_fact_file(domain="annuity_performance", path=write_csv(tmp_path / "202411_规模明细.csv", rows))

    found = suggestions("年金计划", "X777")
    assert found[0].candidate == plan_code(42)
    assert found[0].key_distance is None and found[0].evidence["found_by"] == ["name"]
    assert 0.55 <= found[0].score < 0.8  # a name alone is weaker evidence than a key one typo away


def test_a_load_without_new_keys_computes_no_suggestion(references, tmp_path):
    path = write_csv(tmp_path / "202411_规模明细.csv", fact_rows(10_000))
    with CaptureQueriesContext(connection) as queries:
        result = process_fact_file(domain="annuity_performance", path=path)
    assert result.batch.new_references == {"年金计划": 0, "组合计划": 0, "产品线": 0, "组织架构": 0}
    assert not [q for q in queries.captured_queries if "_suggest" in q["sql"] or "keysuggestion" in q["sql"]]
    assert not KeySuggestion.objects.exists()


def test_thresholds_come_from_the_config(references, tmp_path, config_copy):
    from tests.legacy import edit_config

    edit_config(config_copy, lambda c: c.setdefault("stewardship", {}).update({"suggestions": {"min_score": 0.95}}))
    rows = fact_rows(100) + [typo_row("1P0029", 29, portfolio_code(29), 29)]
    process_fact_file(
        domain="annuity_performance", path=write_csv(tmp_path / "202411_规模明细.csv", rows), config=load_config()
    )
    assert suggestions("年金计划", "1P0029") == []  # scores 0.93: below this configuration's minimum


def test_the_name_indexes_pending_entries_are_flushed_by_their_owner_only(config_copy):
    """The typo search flushes the GIN pending lists of the name indexes (the rows a load just derived wait there);
    a role that does not own them leaves them as they are instead of failing the load."""
    create_references()
    role = f"refgov_reader_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cur:
        assert flush_pending_index_entries(cur, "年金计划") == 2  # 计划简称 and 客户名称
        cur.execute(f"CREATE ROLE {role} NOLOGIN")
        cur.execute(f"GRANT USAGE ON SCHEMA business TO {role}")
        cur.execute(f"SET LOCAL ROLE {role}")
        try:
            assert flush_pending_index_entries(cur, "年金计划") == 0  # not 'must be owner of index'
        finally:
            cur.execute("RESET ROLE")
