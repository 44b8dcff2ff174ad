"""The ETL API (``refgov_api``): a DataFrame or Arrow table loads exactly like the same rows as a CSV file."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from psycopg import sql

import refgov_api
from pipeline.demo.facts import SCALE_COLUMNS
from pipeline.demo.legacy import branches, plan_code, portfolio_code
from pipeline.facts import csv_parts, frames
from pipeline.facts.service import process_fact_file
from pipeline.models import DerivedReference, FactBatch, FactKind, FactStatus, ScaleFact
from reference.models import AnnuityPlan, PortfolioPlan, Source
from reference.registry import get_table
from tests.facts_support import create_references, scale_row

NAME = "202411_规模明细.csv"
DOMAIN = "annuity_performance"
pytestmark = pytest.mark.django_db
REFERENCE_TABLES = ["年金计划", "组合计划", "产品线", "组织架构"]


class _Rollback(Exception):
    pass


def big_frame(rows: int = 100_000, seed: int = 14) -> pd.DataFrame:
    """``rows`` raw 规模明细 rows, built column-wise: known and new plans and portfolios, dirty keys (case, spaces, the
    F prefix, placeholders), two months in two spellings, unknown branches, empty numbers and text (None and "")."""
    rng = np.random.default_rng(seed)
    pick = lambda values, p=None: np.asarray(values, dtype=object)[rng.integers(0, len(values), rows)]  # noqa: E731
    plans = [plan_code(i) for i in range(1, 61)] + [f"N{i:04d}" for i in range(1, 41)]
    plan = pick(plans)
    dirty = rng.random(rows)
    plan = np.where(dirty < 0.05, np.char.lower(plan.astype(str)).astype(object), plan)
    plan = np.where((dirty >= 0.05) & (dirty < 0.08), np.char.add(" ", plan.astype(str)).astype(object), plan)
    portfolios = [portfolio_code(i) for i in range(1, 81)] + [f"XN{i:04d}" for i in range(1, 61)] + ["(空白)"]
    portfolio = pick(portfolios)
    portfolio = np.where(rng.random(rows) < 0.05, np.char.add("F", portfolio.astype(str)).astype(object), portfolio)
    names = [name for _, name in branches()] + ["新设分公司", "另一新分公司"]
    money = lambda: np.where(rng.random(rows) < 0.03, np.nan, np.round(rng.random(rows) * 1e7, 2))  # noqa: E731
    frame = pd.DataFrame(
        {
            "月度": pick(["202411", "2024-10", "2024年11月"]),
            "业务类型": pick(["企年投资", "企年受托", "职年受托", "职年投资"]),
            "计划类型": pick(["单一计划", "集合计划"]),
            "计划号": plan,
            "计划名称": pick([f"计划{i}" for i in range(1, 90)] + [None]),
            "组合类型": pick(["固定收益型", "权益型", None, ""]),
            "组合代码": portfolio,
            "组合名称": pick([f"组合{i}" for i in range(1, 150)]),
            # commas and quotes in the first 50k rows only: their chunk of CSV text is quoted, the next one is not
            "客户名称": np.where(
                np.arange(rows) < 50_000,
                pick([f"客户{i}, 有限公司" for i in range(1, 500)] + [None, '引号"客户', "换行\n客户"]),
                pick([f"客户{i}有限公司" for i in range(1, 500)] + [None, ""]),
            ),
            "期初资产规模": money(),
            "期末资产规模": money(),
            "供款": money(),
            "流失（含待遇支付）": money(),
            "流失": money(),
            "待遇支付": money(),
            "投资收益": money(),
            "当期收益率": rng.random(rows) / 7,
            "年化收益率": np.where(rng.random(rows) < 0.1, np.nan, rng.random(rows) / 3),
            "机构": pick(names + [None]),
            "年金账户号": pick([f"9{i:08d}" for i in range(2000)]),
            "年金账户名": pick([f"账户{i}" for i in range(2000)]),
            "company_id": pick([f"6{i:08d}" for i in range(300)] + [None, "INABCDEFGHIJKLMNOP"]),
        },
        columns=SCALE_COLUMNS,
    )
    return frame


def snapshot(offset: int = 0) -> dict:
    """Every fact row (its row number less ``offset``), every auto-derived reference row and its provenance."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT to_jsonb(t) - 'id' - '_batch_id' - '_source_row', t.\"_source_row\" - %s "
            'FROM "规模明细" t ORDER BY t."_source_row"',
            [offset],
        )
        facts = cur.fetchall()
        derived = {}
        for name in REFERENCE_TABLES:
            table = get_table(name)
            cur.execute(
                f'SELECT to_jsonb(t) - \'_derived_at\' FROM "{table.name}" t WHERE "_source" = %s '
                f'ORDER BY "{table.key_column}"',
                [Source.AUTO_DERIVED.value],
            )
            derived[name] = [r[0] for r in cur.fetchall()]
    provenance = [
        (d.table, d.key, d.file_name, d.sheet, [n - offset for n in d.row_numbers], d.fact_rows)
        for d in DerivedReference.objects.order_by("table", "key")
    ]
    return {"facts": facts, "derived": derived, "provenance": provenance}


def through_csv(frame: pd.DataFrame, tmp_path) -> dict:
    """Load ``frame`` as a CSV file and take the snapshot, then roll it all back."""
    path = tmp_path / NAME
    frame.to_csv(path, index=False)
    with pytest.raises(_Rollback), transaction.atomic():
        result = process_fact_file(domain=DOMAIN, path=path)
        assert result.batch.status == FactStatus.LOADED
        taken = snapshot(offset=2)  # the header is row 1: data row n of the file is position n - 2
        raise _Rollback
    return taken


@pytest.fixture
def refs(config_copy):
    create_references()


def staging_tables() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'refgov_staging'")
        return [r[0] for r in cur.fetchall()]


def test_a_100k_row_frame_loads_exactly_like_the_same_rows_as_a_csv_file(refs, tmp_path, monkeypatch):
    frame = big_frame()
    expected = through_csv(frame, tmp_path)
    assert len(expected["facts"]) == 100_000
    assert all(expected["derived"][t] for t in ("年金计划", "组合计划"))
    assert expected["provenance"]
    checksums: list[str] = []

    # pandas in one COPY; Arrow in two parts at once (the second by a worker connection), as a 1M-row frame is
    for data, parallel_from in ((frame, 10**9), (pa.Table.from_pandas(frame, preserve_index=False), 50_000)):
        monkeypatch.setattr(frames, "FRAME_PARALLEL_MIN_ROWS", parallel_from)
        with pytest.raises(_Rollback), transaction.atomic():
            result = refgov_api.load_facts(data, domain=DOMAIN, source=NAME)
            assert (result.rows_read, result.rows_loaded) == (100_000, 100_000)
            assert snapshot() == expected
            batch = result.batch
            assert (batch.status, batch.kind, batch.file_name, batch.file_path) == (
                FactStatus.LOADED,
                FactKind.FACTS,
                NAME,
                f"api:{NAME}",
            )
            assert len(batch.checksum) == 64 and batch.size_bytes > 0
            checksums.append(batch.checksum)
            assert staging_tables() == []
            assert result.new_references["年金计划"] == sorted(
                json.loads(r)["年金计划号"] for r in expected["derived"]["年金计划"]
            )
            raise _Rollback
    assert checksums[0] == checksums[1]  # the same rows, whether copied in one part or two
    # Rolling the test's savepoint back undid the drop of the committed part table (as when a caller rolls back its
    # transaction after a load): the sweep would drop it after hours; drop it now.
    csv_parts.drop_parts([sql.Identifier("refgov_staging", t) for t in staging_tables()])


def test_texts_with_tabs_line_breaks_quotes_and_backslashes_load_as_the_same_rows_of_a_csv_file(refs, tmp_path):
    """The frame is staged in COPY's text format: a chunk holding what that format or Arrow would misread (tab, line
    break, carriage return, quote, backslash, ``\\N``, ``\\.``) has its texts escaped; the next chunk has none."""
    odd = ["制表\t客户", "换行\n客户", '引号"客户', "反斜杠\\客户", "\\N", "\\.", "\\x22", "逗号,客户", ""]
    odd.append("回车\r客户")
    plain = pd.DataFrame([scale_row(客户名称=f"客户{i}", 组合名称="组合1") for i in range(frames.CHUNK_ROWS + 10)])
    tricky = pd.DataFrame([scale_row(客户名称=name, 组合名称=f"{name}{i}") for i in range(200) for name in odd])
    frame = pd.concat([tricky, plain, tricky], ignore_index=True)
    carriage_return = frame["客户名称"] == odd[-1]  # to_csv writes it unquoted: a file with it is refused
    expected = through_csv(frame[~carriage_return], tmp_path)

    result = refgov_api.load_facts(frame, domain=DOMAIN, source=NAME)

    assert result.rows_loaded == len(frame)
    facts = snapshot()
    assert [row for row in facts["facts"] if row[1] not in set(frame.index[carriage_return])] == [
        (fields, frame.index[~carriage_return][i]) for i, (fields, _) in enumerate(expected["facts"])
    ]
    stored = set(ScaleFact.objects.values_list("customer_name", flat=True))
    assert {name for name in odd if name} <= stored and "" not in stored


def test_row_numbers_are_frame_positions_and_ensure_references_only_derives(refs):
    frame = pd.DataFrame(
        [scale_row(), scale_row(计划号="N9001", 计划名称="新计划"), scale_row(计划号="n9001 ", 组合代码="FXN0001")]
    )

    result = refgov_api.ensure_references(frame, domain=DOMAIN, source="etl_202411")

    assert ScaleFact.objects.count() == 0
    assert result.rows_read == 3 and result.new_references["年金计划"] == ["N9001"]
    assert result.new_references["组合计划"] == ["XN0001"]
    assert AnnuityPlan.objects.get(plan_code="N9001").short_name == "新计划"
    provenance = DerivedReference.objects.get(table="年金计划", key="N9001")
    assert (provenance.file_name, provenance.sheet, provenance.row_numbers, provenance.fact_rows) == (
        "etl_202411",
        "",
        [1, 2],
        2,
    )
    batch = result.batch
    assert (batch.kind, batch.status, batch.file_path, batch.rows_loaded) == (
        FactKind.REFERENCES,
        FactStatus.LOADED,
        "api:etl_202411",
        0,
    )

    loaded = refgov_api.load_facts(frame, domain=DOMAIN, source="etl_202411")
    assert loaded.rows_loaded == 3 and loaded.new_references["年金计划"] == []
    assert sorted(ScaleFact.objects.values_list("source_row", "plan_id")) == [
        (0, plan_code(1)),
        (1, "N9001"),
        (2, "N9001"),
    ]


def test_replace_false_appends_to_the_scope_and_replace_true_replaces_it(refs):
    frame = pd.DataFrame([scale_row(), scale_row()])
    refgov_api.load_facts(frame, domain=DOMAIN)
    again = refgov_api.load_facts(frame, domain=DOMAIN, replace=False)
    assert (again.rows_replaced, ScaleFact.objects.count()) == (0, 4)
    replaced = refgov_api.load_facts(frame, domain=DOMAIN)
    assert (replaced.rows_replaced, ScaleFact.objects.count()) == (4, 2)


def test_typed_frames_polars_style_arrow_and_odd_values_load_like_cells_of_a_workbook(refs):
    frame = pa.table(
        {
            "月度": pa.array([pd.Timestamp("2024-11-01"), pd.Timestamp("2024-11-30")], pa.timestamp("ns")),
            "业务类型": pa.array(["企年投资", "企年投资"]).dictionary_encode(),
            "计划类型": ["单一计划", "单一计划"],
            "计划号": [plan_code(1), plan_code(2)],
            "组合代码": pa.array([1234.0, None]),  # a whole number as a key: 1234, not 1234.0
            "期末资产规模": ["1,234.5", "(12%)"],  # text a file may hold: parsed as the file path parses it
            "供款": pa.array([7, None], pa.int64()),
            "客户名称": pa.array([True, None]),
        }
    )

    result = refgov_api.load_facts(frame, domain=DOMAIN, source="typed")

    assert result.months == [pd.Timestamp("2024-11-01").date()]
    rows = list(
        ScaleFact.objects.order_by("source_row").values_list(
            "source_row", "portfolio_id", "closing_assets", "contribution", "customer_name"
        )
    )
    assert [(r[0], r[1], str(r[2]), r[3], r[4]) for r in rows] == [
        (0, "1234", "1234.50", 7, "true"),
        (1, None, "-0.12", None, None),
    ]
    assert PortfolioPlan.objects.filter(portfolio_code="1234").exists()


def test_pandas_columns_of_mixed_objects_decimals_and_nullable_types_load_as_their_text(refs):
    from decimal import Decimal

    frame = pd.DataFrame(
        {
            "月度": pd.Categorical(["202411", "202411", "202411"]),
            "业务类型": ["企年投资"] * 3,
            "计划类型": ["单一计划"] * 3,
            "计划号": [plan_code(1), 7001, 7002.0],  # mixed Python objects: each as its text, 7002 not 7002.0
            "组合代码": [portfolio_code(1), None, np.nan],
            "期末资产规模": [Decimal("12.345"), None, Decimal("-3")],
            "供款": pd.array([5, None, 6], dtype="Int64"),
            "客户名称": [None, pd.NA, "客户"],
        }
    )

    result = refgov_api.load_facts(frame, domain=DOMAIN, source="mixed")

    assert result.new_references["年金计划"] == ["7001", "7002"]
    rows = ScaleFact.objects.order_by("source_row").values_list(
        "plan_id", "portfolio_id", "closing_assets", "contribution", "customer_name"
    )
    assert [(p, f, None if c is None else str(c), n, name) for p, f, c, n, name in rows] == [
        (plan_code(1), portfolio_code(1), "12.35", 5, None),
        ("7001", None, None, None, None),
        ("7002", None, "-3.00", 6, "客户"),
    ]


def test_float32_numbers_load_as_their_shortest_text_rounded_half_away_from_zero(refs):
    from decimal import ROUND_HALF_UP, Decimal

    money = np.array([0.1, 1.005, 2.675, -0.125, 16777216.0], dtype=np.float32)
    rates = np.array([0.1, 1 / 3, 0.07, -2 / 3, 0.0], dtype=np.float32)
    frame = pd.DataFrame([scale_row()] * 5).assign(期末资产规模=money, 当期收益率=rates)

    refgov_api.load_facts(frame, domain=DOMAIN, source="float32")

    def text(value: np.float32, places: int) -> Decimal:  # what a file holding str(value) loads
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)

    rows = ScaleFact.objects.order_by("source_row").values_list("closing_assets", "period_return")
    assert list(rows) == [(text(m, 2), text(r, 10)) for m, r in zip(money, rates, strict=True)]


def test_anything_with_to_arrow_polars_style_loads(refs):
    class PolarsLike:
        def to_arrow(self) -> pa.Table:
            return pa.Table.from_pylist([scale_row(), scale_row(计划号="N5001")])

    result = refgov_api.load_facts(PolarsLike(), domain=DOMAIN, source="polars")

    assert (result.rows_loaded, result.new_references["年金计划"]) == (2, ["N5001"])


def test_a_source_label_with_a_folder_is_refused(refs):
    with pytest.raises(ValueError, match="without / or"):
        refgov_api.load_facts(pd.DataFrame([scale_row()]), domain=DOMAIN, source="etl/202411")
    assert not FactBatch.objects.exists()


def _unchanged(before: dict) -> None:
    assert snapshot() == before
    assert not FactBatch.objects.filter(status=FactStatus.LOADED).exists()


@pytest.mark.parametrize(
    ("change", "kind", "row", "column", "reason"),
    [
        ({"月度": "2024年13月"}, refgov_api.BadMonthError, 70_001, "月度", "month 13 is not between 1 and 12"),
        ({"期末资产规模": "12 万"}, refgov_api.WrongTypeError, 70_001, "期末资产规模", "'12 万' is not a number"),
        ({"期末资产规模": 1e20}, refgov_api.WrongTypeError, 70_001, "期末资产规模", "is out of range"),
        ({"计划号": "P" * 60}, refgov_api.ValueTooLongError, 70_001, "计划代码", "longer than"),
        ({"客户名称": ["a", "list"]}, refgov_api.WrongTypeError, 70_001, "客户名称", "a list value is not text"),
        ({"客户名称": "客户\x00甲"}, refgov_api.WrongTypeError, 70_001, "客户名称", "holds the character NUL"),
    ],
)
def test_a_bad_value_names_its_row_and_column_and_loads_nothing(refs, change, kind, row, column, reason):
    frame = pd.DataFrame([scale_row(计划号=f"N{i % 50:04d}") for i in range(80_000)])
    for name, value in change.items():
        if isinstance(value, list):
            frame[name] = frame[name].astype(object)
            frame.at[row, name] = value
        elif isinstance(value, float):
            frame.loc[row, name] = value
        else:
            frame[name] = frame[name].astype(object)
            frame.loc[row, name] = value
    before = snapshot()

    with pytest.raises(kind) as raised:
        refgov_api.load_facts(frame, domain=DOMAIN, source="bad_frame")

    error = raised.value
    assert (error.row, error.column) == (row, column)
    assert str(error).startswith(f"bad_frame, row {row}, column {column}: ") and reason in str(error)
    _unchanged(before)


def test_a_bad_value_in_the_part_a_worker_copies_names_its_row_and_leaves_no_part_table(refs, monkeypatch):
    monkeypatch.setattr(frames, "FRAME_PARALLEL_MIN_ROWS", 50_000)
    frame = pd.DataFrame([scale_row(计划号=f"N{i % 50:04d}") for i in range(150_000)])
    frame["期末资产规模"] = frame["期末资产规模"].astype(object)
    frame.loc[140_000, "期末资产规模"] = "十二"
    before, tables = snapshot(), staging_tables()

    with pytest.raises(refgov_api.WrongTypeError) as raised:
        refgov_api.load_facts(frame, domain=DOMAIN, source="bad_part")

    assert (raised.value.row, raised.value.column) == (140_000, "期末资产规模")
    assert staging_tables() == tables
    _unchanged(before)


def test_a_frame_missing_a_required_column_is_refused_before_anything_is_written(refs):
    frame = pd.DataFrame([scale_row()]).drop(columns=["期末资产规模"])

    with pytest.raises(refgov_api.MissingColumnError) as raised:
        refgov_api.load_facts(frame, domain=DOMAIN, source="etl")

    assert raised.value.column == "期末资产规模" and "missing required column 期末资产规模" in str(raised.value)
    assert not FactBatch.objects.exists()


def test_a_date_column_cannot_be_a_number(refs):
    frame = pd.DataFrame([scale_row()] * 3)
    frame["期末资产规模"] = pd.Timestamp("2024-11-01")

    with pytest.raises(refgov_api.WrongTypeError) as raised:
        refgov_api.load_facts(frame, domain=DOMAIN, source="etl")

    assert (raised.value.row, raised.value.column) == (0, "期末资产规模")
    assert not ScaleFact.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_frame_in_parts_is_normalised_by_worker_connections_like_the_same_rows_as_a_csv(config_copy, monkeypatch):
    """Committed references (no caller's transaction): the second part is normalised by a worker connection."""
    create_references()
    monkeypatch.setattr(frames, "FRAME_PARALLEL_MIN_ROWS", 50_000)
    statements: list[str] = []
    insert_part = csv_parts.normalise_part

    def counted(target, make, *after):
        statements.append(str(target))
        return insert_part(target, make, *after)

    monkeypatch.setattr(csv_parts, "normalise_part", counted)
    frame = big_frame()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / NAME
        frame.to_csv(path, index=False)
        process_fact_file(domain=DOMAIN, path=path)
    expected = snapshot(offset=2)
    assert not statements  # 100k rows: a file this small is copied and normalised in one part
    with connection.cursor() as cur:
        cur.execute('DELETE FROM "规模明细"')
    DerivedReference.objects.all().delete()
    for name in ("组合计划", "年金计划"):  # what the CSV derived, portfolios before their plans
        get_table(name).model.objects.filter(source=Source.AUTO_DERIVED).delete()

    result = refgov_api.load_facts(pa.Table.from_pandas(frame, preserve_index=False), domain=DOMAIN, source=NAME)

    assert len(statements) == 1 and result.rows_loaded == 100_000
    assert snapshot() == expected


@pytest.mark.django_db(transaction=True)
def test_inside_the_callers_transaction_the_load_commits_or_rolls_back_with_it(config_copy):
    create_references()
    frame = pd.DataFrame([scale_row(计划号="N7001"), scale_row()])

    # the caller's transaction rolls back: nothing of the load stays, not even its batch
    with pytest.raises(_Rollback), transaction.atomic():
        refgov_api.load_facts(frame, domain=DOMAIN, source="inside")
        assert ScaleFact.objects.count() == 2
        raise _Rollback
    assert not ScaleFact.objects.exists() and not FactBatch.objects.exists()
    assert not AnnuityPlan.objects.filter(plan_code="N7001").exists()

    # a failed load inside it rolls back to its savepoint: the caller's own work and the rejected batch stay
    with transaction.atomic():
        AnnuityPlan.objects.create(plan_code="K0001", short_name="the caller's own row")
        with pytest.raises(refgov_api.BadMonthError):
            refgov_api.load_facts(frame.assign(月度="13/2024"), domain=DOMAIN, source="inside")
        result = refgov_api.load_facts(frame, domain=DOMAIN, source="inside")
    assert AnnuityPlan.objects.filter(plan_code__in=["K0001", "N7001"]).count() == 2
    assert list(FactBatch.objects.order_by("pk").values_list("status", flat=True)) == [
        FactStatus.REJECTED,
        FactStatus.LOADED,
    ]
    assert ScaleFact.objects.filter(batch_id=result.batch_id).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_readme_example_runs_standalone(config_copy, tmp_path):
    """The README's ETL API example, pasted into a script run from the repository root without Django settings."""
    create_references()
    readme = (django_settings.BASE_DIR / "README.md").read_text(encoding="utf-8")
    example = readme.split("<!-- etl-api-example -->\n```python\n", 1)[1].split("```\n<!-- /etl-api-example -->")[0]
    script = tmp_path / "etl.py"
    script.write_text(example, encoding="utf-8")
    database = connection.settings_dict
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")},
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "REFGOV_CONFIG_DIR": str(config_copy),
        "REFGOV_REPORTS_DIR": str(tmp_path / "reports"),
        "PYTHONPATH": str(django_settings.BASE_DIR),
    }

    ran = subprocess.run(
        [sys.executable, str(script)], cwd=django_settings.BASE_DIR, env=env, capture_output=True, timeout=120
    )

    assert ran.returncode == 0, ran.stderr.decode()
    first, second = ran.stdout.decode().splitlines()
    assert "'rows_loaded': 2" in first and "new references: 年金计划 +1, 组合计划 +1;" in first
    assert ast.literal_eval(second) == {"年金计划": [], "组合计划": [], "产品线": [], "组织架构": []}
    batch = FactBatch.objects.get(kind=FactKind.FACTS)
    assert (batch.file_name, batch.rows_loaded) == ("etl_202412", 2)
    assert ScaleFact.objects.filter(batch=batch).count() == 2
    assert PortfolioPlan.objects.get(portfolio_code="XN0001").plan_id == "N0001"
