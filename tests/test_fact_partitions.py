"""Fact tables partitioned by month (issue 12): a load builds each whole month off-line and attaches it, a narrow
scope is replaced inside its month, a month can be dropped, and migration 0014 converts tables holding data."""

from __future__ import annotations

import io
import json
from datetime import date

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from pipeline.demo.legacy import plan_code, portfolio_code
from pipeline.facts import partitions
from pipeline.facts.service import drop_month
from pipeline.models import FactBatch, FactKind, FactStatus, ScaleFact
from tests.facts_support import PLANS, PORTFOLIOS, create_references, scale_row, write_csv
from tests.test_facts import ConfigCopy, process

pytestmark = pytest.mark.django_db
ROWS = 10_000


@pytest.fixture
def config(tmp_path, settings) -> ConfigCopy:
    copy = ConfigCopy(tmp_path / "config")
    settings.REFGOV_CONFIG_DIR = copy.directory
    return copy


@pytest.fixture
def refs(config):
    create_references()


def rows(n: int, month: str = "202411", **values) -> list[dict]:
    return [
        scale_row(
            月度=month,
            计划号=plan_code(1 + i % PLANS),
            组合代码=portfolio_code(1 + i % PORTFOLIOS),
            期末资产规模=float(i),
            **values,
        )
        for i in range(n)
    ]


def catalog(name: str) -> dict:
    """What PostgreSQL holds about a table: oid, partition bound, attached indexes and foreign keys, checks."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.oid, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [f'business."{name}"'],
        )
        found = cur.fetchone()
        if found is None:
            return {}
        oid, bound = found
        cur.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s AND c.relispartition",
            [oid],
        )
        indexes = cur.fetchone()[0]
        cur.execute("SELECT contype, conparentid <> 0 FROM pg_constraint WHERE conrelid = %s", [oid])
        constraints = cur.fetchall()
    return {
        "oid": oid,
        "bound": bound,
        "attached_indexes": indexes,
        "foreign_keys": sum(1 for kind, inherited in constraints if kind == "f" and inherited),
        "checks": sum(1 for kind, _ in constraints if kind == "c"),
    }


def leftover_tables() -> list[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT relname FROM pg_class WHERE relname LIKE '%\\_load\\_%' AND relkind = 'r'")
        return [r[0] for r in cur.fetchall()]


def month_rows(month: date) -> int:
    return ScaleFact.objects.filter(month=month).count()


NOV, DEC = date(2024, 11, 1), date(2024, 12, 1)


def test_a_new_month_becomes_its_own_partition_with_the_parents_indexes_and_keys(refs, tmp_path):
    result = process(write_csv(tmp_path / "nov.csv", rows(ROWS)))

    assert result.batch.rows_loaded == ROWS and result.batch.rows_replaced == 0
    assert "read 10000, loaded 10000, replaced 0" in result.batch.message
    with connection.cursor() as cur:
        assert partitions.month_partitions(cur, "规模明细") == {NOV: "规模明细_2024_11"}
    part = catalog("规模明细_2024_11")
    assert part["bound"] == "FOR VALUES FROM ('2024-11-01') TO ('2024-12-01')"
    assert part["attached_indexes"] == 4  # primary key (id, 月度), 计划代码, 组合代码, _batch_id (none on 月度)
    assert part["foreign_keys"] == 5  # four reference tables and the batch
    assert part["checks"] == 1
    assert month_rows(NOV) == ROWS and not leftover_tables()


@pytest.mark.django_db(transaction=True)
def test_reloading_a_whole_month_swaps_its_partition_and_readers_see_the_old_month_until_commit(config, tmp_path):
    create_references()
    first = process(write_csv(tmp_path / "a.csv", rows(ROWS))).batch
    old = catalog("规模明细_2024_11")
    seen = []

    def reader(message: str) -> None:
        if message == "building the months":  # the new month is built; another session still reads the old one
            with psycopg.connect(**_dsn()) as other:
                seen.append(
                    other.execute(
                        'SELECT count(*), min(_batch_id), max(_batch_id) FROM business."规模明细" WHERE "月度" = %s',
                        [NOV],
                    ).fetchone()
                )

    second = process(write_csv(tmp_path / "b.csv", rows(ROWS + 2000)), progress=reader).batch

    assert seen == [(ROWS, first.pk, first.pk)]
    assert (second.rows_loaded, second.rows_replaced) == (ROWS + 2000, ROWS)
    assert "loaded 12000, replaced 10000" in second.message
    new = catalog("规模明细_2024_11")
    assert new["oid"] != old["oid"] and new["attached_indexes"] == 4 and new["foreign_keys"] == 5
    assert set(ScaleFact.objects.values_list("batch_id", flat=True).distinct()) == {second.pk}
    assert not leftover_tables()


def _dsn() -> dict:
    db = connection.settings_dict
    return {
        "host": db["HOST"],
        "port": db["PORT"],
        "user": db["USER"],
        "dbname": db["NAME"],
        "autocommit": True,
    }


def varied(n: int, **values) -> list[dict]:
    """Rows whose every column differs from its neighbours' (a value in the wrong column shows)."""
    return [
        scale_row(
            计划号=plan_code(1 + i % PLANS),
            组合代码=portfolio_code(1 + i % PORTFOLIOS),
            计划名称=f"计划{i}",
            组合名称=f"组合{i}",
            客户名称=f"客户{i}",
            组合类型=["固定收益型", "权益型"][i % 2],
            期初资产规模=i + 0.25,
            期末资产规模=i + 0.5,
            供款=i + 0.75,
            机构=["北京分公司", "上海分公司"][i % 2],
            年金账户号=f"9{i:08d}",
            年金账户名=f"账户{i}",
            company_id=f"6{i:08d}",
            **values,
        )
        for i in range(n)
    ]


def stored(business_type: str, month: date = NOV) -> list[dict]:
    """The rows of one scope as the parent table shows them, column by column, in file order."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT to_jsonb(t) - 'id' - '_batch_id' - '_source_row' - '月度' FROM \"规模明细\" t "
            'WHERE "业务类型" = %s AND "月度" = %s ORDER BY "_source_row"',
            [business_type, month],
        )
        return [json.loads(row[0]) for row in cur.fetchall()]


def test_every_path_stores_each_value_in_its_column_whatever_the_partitions_column_order(refs, tmp_path):
    """Month tables a load builds store keys first; partitions made otherwise keep the parent's order. Whole month
    swapped in, scope replaced inside a partition of either order, several months at once: the same values."""
    invest = varied(300, 业务类型="企年投资")
    process(write_csv(tmp_path / "invest.csv", invest))
    swapped = stored("企年投资")
    assert len(swapped) == 300 and swapped[7]["计划名称"] == "计划7" and swapped[7]["客户名称"] == "客户7"
    assert swapped[7]["机构代码"] != swapped[8]["机构代码"]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'business.\"规模明细_2024_11\"'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        )
        order = [name for (name,) in cur.fetchall()]
    assert set(order[:4]) == {"id", "月度", "_batch_id", "_source_row"}  # fixed width, then the keys
    assert set(order[4:8]) == {"计划代码", "组合代码", "机构代码", "产品线代码"}

    # inside the partition of the new order: the month also holds 职年投资
    process(write_csv(tmp_path / "other.csv", varied(20, 业务类型="职年投资")))
    process(write_csv(tmp_path / "invest2.csv", invest))
    assert stored("企年投资") == swapped and len(stored("职年投资")) == 20

    # several months at once: November inside its partition, December built as its own table
    process(write_csv(tmp_path / "two.csv", invest + varied(300, 业务类型="企年投资", 月度="202412")))
    assert stored("企年投资") == swapped and stored("企年投资", DEC) == swapped

    # a partition in the parent's order (as migration 0018 made them) holding another scope, replaced inside it
    drop_month(domain="annuity_performance", month=NOV)
    kept = {"id", "月度", "业务类型"}
    columns = ", ".join(f'"{f.column}"' for f in ScaleFact._meta.concrete_fields if f.column not in kept)
    with connection.cursor() as cur:
        partitions.create_partition(cur, "规模明细", NOV)
        cur.execute(
            f'INSERT INTO "规模明细" ("月度", "业务类型", {columns}) SELECT %s, %s, {columns} FROM "规模明细" '
            'WHERE "月度" = %s ORDER BY "_source_row" LIMIT 20',
            [NOV, "职年投资", DEC],
        )
    assert catalog("规模明细_2024_11")["checks"] == 0  # no month CHECK: the partition in the parent's order
    process(write_csv(tmp_path / "invest3.csv", invest))
    assert catalog("规模明细_2024_11")["checks"] == 0 and stored("企年投资") == swapped


def test_a_scope_narrower_than_the_month_is_replaced_inside_the_partition(refs, tmp_path):
    process(write_csv(tmp_path / "both.csv", rows(ROWS, 业务类型="企年投资") + rows(3000, 业务类型="职年投资")))
    part = catalog("规模明细_2024_11")

    result = process(write_csv(tmp_path / "one.csv", rows(4000, 业务类型="职年投资")))

    assert (result.batch.rows_loaded, result.batch.rows_replaced) == (4000, 3000)
    assert catalog("规模明细_2024_11")["oid"] == part["oid"]  # not swapped: it keeps the other scope's rows
    assert ScaleFact.objects.filter(business_type="企年投资").count() == ROWS
    assert ScaleFact.objects.filter(business_type="职年投资", batch=result.batch).count() == 4000
    assert ScaleFact.objects.count() == ROWS + 4000 and not leftover_tables()


def test_a_file_of_several_months_loads_each_month_on_its_own_path(refs, tmp_path):
    process(write_csv(tmp_path / "nov.csv", rows(ROWS, 业务类型="企年投资") + rows(500, 业务类型="职年投资")))

    both = rows(ROWS, 业务类型="企年投资") + rows(6000, month="202412")
    result = process(write_csv(tmp_path / "both.csv", both))

    # November keeps its 职年投资 rows (replaced inside the partition); December is a new partition
    assert (result.batch.rows_loaded, result.batch.rows_replaced) == (ROWS + 6000, ROWS)
    assert month_rows(NOV) == ROWS + 500 and month_rows(DEC) == 6000
    with connection.cursor() as cur:
        assert set(partitions.month_partitions(cur, "规模明细")) == {NOV, DEC}
    assert catalog("规模明细_2024_12")["foreign_keys"] == 5 and not leftover_tables()
    assert result.batch.periods == ["2024-11-01", "2024-12-01"]


def test_a_failure_at_the_swap_leaves_the_old_month_untouched(refs, tmp_path, monkeypatch):
    first = process(write_csv(tmp_path / "a.csv", rows(ROWS))).batch
    old = catalog("规模明细_2024_11")
    original = partitions.swap_in

    def swap_then_fail(*args):
        original(*args)
        raise psycopg.errors.DiskFull("could not extend file")

    monkeypatch.setattr(partitions, "swap_in", swap_then_fail)
    with pytest.raises(psycopg.errors.DiskFull):
        process(write_csv(tmp_path / "b.csv", rows(ROWS + 1)))

    assert catalog("规模明细_2024_11")["oid"] == old["oid"]
    assert set(ScaleFact.objects.values_list("batch_id", flat=True).distinct()) == {first.pk}
    assert month_rows(NOV) == ROWS and not leftover_tables()
    assert FactBatch.objects.exclude(pk=first.pk).get().status == FactStatus.FAILED


def test_drop_month_drops_the_partition_and_records_a_batch(refs, tmp_path):
    process(write_csv(tmp_path / "both.csv", rows(ROWS) + rows(100, month="202412")))

    for args, refusal in [
        (["--drop-month", "2024-11"], "needs --yes"),
        (["--drop-month", "2024-10", "--yes"], "holds no month 2024-10: nothing dropped"),
    ]:
        err = io.StringIO()
        with pytest.raises(SystemExit):
            call_command("process_facts", "--domain", "annuity_performance", *args, stderr=err)
        assert refusal in err.getvalue()
    assert month_rows(NOV) == ROWS

    out = io.StringIO()
    call_command("process_facts", "--domain", "annuity_performance", "--drop-month", "2024-11", "--yes", stdout=out)

    assert "month 2024-11 dropped from 规模明细: 10000 rows" in out.getvalue()
    assert month_rows(NOV) == 0 and month_rows(DEC) == 100
    assert not catalog("规模明细_2024_11")
    dropped = FactBatch.objects.get(kind=FactKind.DROP)
    assert (dropped.rows_replaced, dropped.periods, dropped.domain) == (ROWS, ["2024-11-01"], "annuity_performance")

    # the month can be loaded again afterwards
    assert process(write_csv(tmp_path / "again.csv", rows(50))).batch.rows_replaced == 0
    assert month_rows(NOV) == 50


def test_current_load_counts_a_batch_through_its_index(refs, tmp_path):
    process(write_csv(tmp_path / "a.csv", rows(ROWS)))
    batch = FactBatch.objects.get()
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute('EXPLAIN SELECT count(*) FROM "规模明细" WHERE _batch_id = %s', [batch.pk])
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert "Index" in plan and "Seq Scan" not in plan


@pytest.mark.django_db(transaction=True)
def test_migration_0018_partitions_a_table_holding_three_months(config):
    executor = MigrationExecutor(connection)
    before, after = [("pipeline", "0017_rejected_keys")], [("pipeline", "0018_partition_facts")]
    executor.migrate(before)
    try:
        create_references()
        batch = FactBatch.objects.create(domain="annuity_performance", file_name="old.csv", file_path="", checksum="")
        with connection.cursor() as cur:
            cur.execute(
                """
                INSERT INTO "规模明细" ("月度", "业务类型", "计划代码", "组合代码", "期末资产规模", _batch_id)
                SELECT make_date(2024, 9 + i %% 3, 1), '企年投资', %s, %s, i, %s FROM generate_series(1, 12000) i
                """,
                [plan_code(1), portfolio_code(1), batch.pk],
            )
            cur.execute('SELECT max(id) FROM "规模明细"')
            top = cur.fetchone()[0]
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)

        with connection.cursor() as cur:
            held = partitions.month_partitions(cur, "规模明细")
            cur.execute(
                "SELECT conname, condeferrable, condeferred FROM pg_constraint "
                "WHERE conrelid = 'business.\"规模明细\"'::regclass AND contype = 'f'"
            )
            keys = cur.fetchall()
            cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = '规模明细'")
            indexes = {r[0] for r in cur.fetchall()}
        assert held == {date(2024, m, 1): f"规模明细_2024_{m:02d}" for m in (9, 10, 11)}
        assert ScaleFact.objects.count() == 12000 and ScaleFact.objects.filter(month=date(2024, 10, 1)).count() == 4000
        assert set(ScaleFact.objects.values_list("batch_id", flat=True).distinct()) == {batch.pk}
        assert len(keys) == 5 and all(deferrable and deferred for _, deferrable, deferred in keys)
        assert {
            "规模明细_pkey",
            "scalefact_month",
            "scalefact_plan",
            "scalefact_portfolio",
            "scalefact_batch",
        } <= indexes
        assert all(catalog(name)["foreign_keys"] == 5 for name in held.values())
        fresh = ScaleFact.objects.create(month=date(2024, 11, 1), batch=batch)
        assert fresh.pk > top  # ids continue after the old identity
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_a_dry_run_counts_what_a_reload_would_replace_and_leaves_the_month_as_it_was(refs, tmp_path):
    first = process(write_csv(tmp_path / "a.csv", rows(ROWS))).batch
    old = catalog("规模明细_2024_11")

    result = process(write_csv(tmp_path / "b.csv", rows(ROWS + 5)), dry_run=True)

    assert result.dry_run and result.summary()["rows_replaced"] == ROWS
    assert [(p.values, p.rows) for p in result.scope] == [
        ({"月度": "2024-11-01", "业务类型": "企年投资", "计划类型": "单一计划"}, ROWS + 5)
    ]
    assert catalog("规模明细_2024_11")["oid"] == old["oid"]
    assert set(ScaleFact.objects.values_list("batch_id", flat=True).distinct()) == {first.pk}
    assert not leftover_tables()
