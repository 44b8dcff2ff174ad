"""Config validation: every class of mistake is reported with file, key path and reason, before any SQL runs.

Each test starts from the real ``config/`` (loaded as YAML, edited as a dict, dumped into ``tmp_path``) so the tests
follow the shipped config. No database is needed: pytest-django refuses PostgreSQL access without a ``django_db``
mark, and the MariaDB client is booby-trapped below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import MySQLdb
import pytest
import yaml
from django.conf import settings

from pipeline.config.loader import MAIN_FILE, ConfigError, Problem, load_config
from refgov.db.identifiers import check_identifier

REAL_DIR = settings.BASE_DIR / "config"
PRODUCT_LINES = "reference_data/product_lines.yml"
KNOWN_TABLES = "(known: 年金计划, 组合计划, 产品线, 组织架构)"
UNSAFE = "use 1-64 letters, digits, underscores or Chinese characters"


def read_real(relative: str) -> dict[str, Any]:
    return yaml.safe_load((REAL_DIR / relative).read_text(encoding="utf-8"))


def dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def set_key(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data.setdefault(key, {})
    data[last] = value


@pytest.fixture(autouse=True)
def _no_mysql(monkeypatch):
    """Validation must finish before any connection to the legacy database is attempted."""

    def refuse(*args, **kwargs):
        raise AssertionError("config validation tried to connect to MySQL")

    monkeypatch.setattr(MySQLdb, "connect", refuse)


@pytest.fixture
def make_config(tmp_path):
    """make_config({"preload.schedule": "61 1 * * *"}, rows=...) → a config dir: the real config with those edits.

    ``edits`` maps a dotted key path to its new value; ``rows`` replaces the product-line data file's rows.
    """

    def make(edits: dict[str, Any] | None = None, *, rows: list[dict] | None = None) -> Path:
        directory = tmp_path / "config"
        main = read_real(MAIN_FILE)
        for dotted, value in (edits or {}).items():
            set_key(main, dotted, value)
        data = read_real(PRODUCT_LINES)
        if rows is not None:
            data["rows"] = rows
        dump(directory / MAIN_FILE, main)
        dump(directory / PRODUCT_LINES, data)
        return directory

    return make


def problems_of(config_dir: Path) -> list[Problem]:
    """Load a config that must be rejected; check the message lists every problem, return the problems."""
    with pytest.raises(ConfigError) as info:
        load_config(config_dir)
    error = info.value
    assert error.problems, "ConfigError without problems"
    for problem in error.problems:
        assert f"{problem.file}: {problem.key_path or '<top>'}: {problem.reason}" in str(error)
    return error.problems


def main_problem(config_dir: Path, key_path: str, reason: str) -> Problem:
    return Problem(config_dir / MAIN_FILE, key_path, reason)


def data_problem(config_dir: Path, key_path: str, reason: str) -> Problem:
    return Problem((config_dir / PRODUCT_LINES).resolve(), key_path, reason)


# --- the real config --------------------------------------------------------------------------------------------------


def test_real_config_loads_with_parents_first():
    loaded = load_config(REAL_DIR)

    assert loaded.path == REAL_DIR / MAIN_FILE
    assert set(loaded.config.preload.sources) == {"年金计划", "组合计划", "产品线", "组织架构"}
    order = loaded.sync_order
    assert sorted(order) == sorted(loaded.config.preload.sources)
    assert order.index("年金计划") < order.index("组合计划")
    codes = [row["产品线代码"] for row in loaded.file_rows["产品线"]]
    assert len(codes) == 12 and codes[0] == "PL201" and "PL301" in codes


def test_model_foreign_key_orders_tables_without_configured_depends_on(make_config):
    loaded = load_config(make_config({"depends_on": {}}))

    order = loaded.sync_order
    assert order.index("年金计划") < order.index("组合计划")


def test_copied_config_loads(make_config):
    """The helper's round trip (safe_dump with allow_unicode) keeps the config valid: the error tests start clean."""
    loaded = load_config(make_config())

    assert loaded.config.preload.sources["年金计划"].database == "annuity_hub"


# --- unknown keys, tables and columns ---------------------------------------------------------------------------------


def test_unknown_top_level_key(make_config):
    config_dir = make_config({"stratgy": "hybrid"})

    assert problems_of(config_dir) == [main_problem(config_dir, "stratgy", "unknown key")]


def test_unknown_nested_key(make_config):
    config_dir = make_config({"preload.sources.年金计划.tabel": "年金计划"})

    assert problems_of(config_dir) == [main_problem(config_dir, "preload.sources.年金计划.tabel", "unknown key")]


def test_unknown_table_in_preload_sources(make_config):
    source = {"type": "legacy_mysql", "database": "annuity_hub", "table": "年金计化"}
    config_dir = make_config({"preload.sources.年金计化": source})

    assert problems_of(config_dir) == [
        main_problem(config_dir, "preload.sources.年金计化", f"unknown table '年金计化' {KNOWN_TABLES}")
    ]


def test_unknown_column_in_rename_mapping(make_config):
    config_dir = make_config({"preload.sources.年金计划.columns": {"计划简称": "plan_short", "计划简陈": "x"}})

    assert problems_of(config_dir) == [
        main_problem(
            config_dir,
            "preload.sources.年金计划.columns.计划简陈",
            "unknown column '计划简陈' of table '年金计划'",
        )
    ]


def test_rename_mapping_of_known_columns_is_accepted(make_config):
    loaded = load_config(make_config({"preload.sources.组合计划.columns": {"组合名称": "portfolio_name"}}))

    assert loaded.config.preload.sources["组合计划"].columns == {"组合名称": "portfolio_name"}


def test_unknown_table_as_depends_on_key(make_config):
    config_dir = make_config({"depends_on.年金计化": ["组合计划"]})

    assert problems_of(config_dir) == [
        main_problem(config_dir, "depends_on.年金计化", f"unknown table '年金计化' {KNOWN_TABLES}")
    ]


def test_unknown_table_in_depends_on_list(make_config):
    config_dir = make_config({"depends_on.组合计划": ["年金计划", "产品线s"]})

    assert problems_of(config_dir) == [
        main_problem(config_dir, "depends_on.组合计划[1]", f"unknown table '产品线s' {KNOWN_TABLES}")
    ]


def test_dependency_cycle_through_model_foreign_key(make_config):
    # The model FK 组合计划.年金计划号 → 年金计划 closes the loop.
    config_dir = make_config({"depends_on": {"年金计划": ["组合计划"]}})

    [problem] = problems_of(config_dir)
    assert (problem.file, problem.key_path) == (config_dir / MAIN_FILE, "depends_on")
    assert "cycle" in problem.reason
    assert "年金计划" in problem.reason and "组合计划" in problem.reason


# --- values -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["61 1 * * *", "0 1 * *", "0 1 * * * *", "every night"])
def test_bad_cron_string(make_config, schedule):
    config_dir = make_config({"preload.schedule": schedule})

    assert problems_of(config_dir) == [
        main_problem(
            config_dir, "preload.schedule", f"invalid cron string {schedule!r} (expected 5 fields, e.g. '0 1 * * *')"
        )
    ]


@pytest.mark.parametrize(
    "key_path, value",
    [
        ("preload.sources.年金计划.database", "annuity_hub; DROP TABLE x"),
        ("preload.sources.年金计划.table", "年金`计划"),
        ("preload.sources.组合计划.table", '组合计划"'),
        ("preload.sources.组织架构.database", "enterprise "),
        ("preload.sources.年金计划.incremental_column", "updated_at--"),
    ],
)
def test_unsafe_identifier_is_rejected(make_config, key_path, value):
    config_dir = make_config({key_path: value})

    assert problems_of(config_dir) == [main_problem(config_dir, key_path, f"unsafe identifier {value!r}: {UNSAFE}")]


def test_unsafe_source_column_in_rename_mapping(make_config):
    config_dir = make_config({"preload.sources.年金计划.columns": {"计划简称": "a`; DROP TABLE x; --"}})

    [problem] = problems_of(config_dir)
    assert problem.key_path == "preload.sources.年金计划.columns.计划简称"
    assert problem.reason == f"unsafe identifier 'a`; DROP TABLE x; --': {UNSAFE}"


@pytest.mark.parametrize(
    "key_path, value, reason",
    [
        ("strategy", "hybird", "Input should be 'hybrid', 'preload_only' or 'backfill_only' (got 'hybird')"),
        ("backfill.mode", "sometimes", "Input should be 'fallback' or 'always' (got 'sometimes')"),
    ],
)
def test_bad_enum_value(make_config, key_path, value, reason):
    config_dir = make_config({key_path: value})

    assert problems_of(config_dir) == [main_problem(config_dir, key_path, reason)]


@pytest.mark.parametrize(
    "source, reason",
    [
        ({"type": "ftp", "path": "x.yml"}, "'type' must be legacy_mysql or config_file (got 'ftp')"),
        ({"path": "x.yml"}, "missing 'type' (legacy_mysql or config_file)"),
    ],
)
def test_unknown_or_missing_source_type(make_config, source, reason):
    config_dir = make_config({"preload.sources.产品线": source})

    assert problems_of(config_dir) == [main_problem(config_dir, "preload.sources.产品线", reason)]


def test_a_top_level_key_named_like_a_source_type_keeps_its_name(make_config):
    config_dir = make_config({"config_file": "x"})

    assert problems_of(config_dir) == [main_problem(config_dir, "config_file", "unknown key")]


# --- files ------------------------------------------------------------------------------------------------------------


def test_invalid_yaml_reports_line_and_column(make_config):
    config_dir = make_config()
    main = config_dir / MAIN_FILE
    lines = main.read_text(encoding="utf-8").splitlines()
    line_no = next(i for i, line in enumerate(lines) if line.strip() == "mode: fallback")
    lines[line_no] = "  mode: fallback: always"
    main.write_text("\n".join(lines) + "\n", encoding="utf-8")

    [problem] = problems_of(config_dir)
    colon = len("  mode: fallback")  # 0-based index of the offending second colon
    assert problem.file == main
    assert problem.key_path == f"line {line_no + 1}, column {colon + 1}"
    assert problem.reason == "invalid YAML: mapping values are not allowed here"


def test_top_level_must_be_a_mapping(make_config):
    config_dir = make_config()
    (config_dir / MAIN_FILE).write_text("- just\n- a list\n", encoding="utf-8")

    assert problems_of(config_dir) == [main_problem(config_dir, "", "expected a mapping at the top level")]


def test_missing_main_file(tmp_path):
    assert problems_of(tmp_path) == [Problem(tmp_path / MAIN_FILE, "", "file not found")]


def test_config_file_path_must_stay_in_config_dir(make_config, tmp_path):
    dump(tmp_path / "x.yml", read_real(PRODUCT_LINES))  # exists, is valid — and still refused
    config_dir = make_config({"preload.sources.产品线.path": "../x.yml"})

    assert problems_of(config_dir) == [
        main_problem(config_dir, "preload.sources.产品线.path", "path '../x.yml' leaves the config directory")
    ]


def test_config_file_absolute_path_is_refused(make_config, tmp_path):
    outside = tmp_path / "elsewhere.yml"
    dump(outside, read_real(PRODUCT_LINES))
    config_dir = make_config({"preload.sources.产品线.path": str(outside)})

    [problem] = problems_of(config_dir)
    assert problem.key_path == "preload.sources.产品线.path"
    assert problem.reason == f"path {str(outside)!r} leaves the config directory"


def test_missing_data_file(make_config):
    config_dir = make_config({"preload.sources.产品线.path": "reference_data/nope.yml"})

    assert problems_of(config_dir) == [
        Problem((config_dir / "reference_data/nope.yml").resolve(), "", "file not found")
    ]


def test_data_file_unknown_column(make_config):
    rows = read_real(PRODUCT_LINES)["rows"]
    rows[2]["产品线名称"] = rows[2].pop("产品线")
    config_dir = make_config(rows=rows)

    assert problems_of(config_dir) == [
        data_problem(config_dir, "rows[2].产品线名称", "unknown column '产品线名称' of table '产品线'")
    ]


@pytest.mark.parametrize("key_value", [None, "", "missing"])
def test_data_file_row_without_key(make_config, key_value):
    rows = read_real(PRODUCT_LINES)["rows"]
    if key_value == "missing":
        del rows[5]["产品线代码"]
    else:
        rows[5]["产品线代码"] = key_value
    config_dir = make_config(rows=rows)

    assert problems_of(config_dir) == [data_problem(config_dir, "rows[5].产品线代码", "key column is missing or empty")]


def test_data_file_without_rows_list(make_config):
    config_dir = make_config()
    dump(config_dir / PRODUCT_LINES, {"row": read_real(PRODUCT_LINES)["rows"]})

    assert problems_of(config_dir) == [data_problem(config_dir, "rows", "expected a mapping with a list under 'rows'")]


# --- several problems at once -----------------------------------------------------------------------------------------


def test_all_shape_problems_are_reported_together(make_config):
    config_dir = make_config(
        {
            "strategy": "hybird",
            "backfill.mode": "sometimes",
            "preload.schedule": "61 1 * * *",
            "preload.sources.年金计划.tabel": "x",
            "preload.sources.组合计划.database": "annuity_hub; DROP TABLE x",
        }
    )

    problems = problems_of(config_dir)
    assert {p.key_path for p in problems} == {
        "strategy",
        "backfill.mode",
        "preload.schedule",
        "preload.sources.年金计划.tabel",
        "preload.sources.组合计划.database",
    }
    assert {p.file for p in problems} == {config_dir / MAIN_FILE}


def test_all_cross_check_problems_are_reported_together(make_config):
    rows = read_real(PRODUCT_LINES)["rows"]
    rows[0]["颜色"] = "red"
    del rows[3]["产品线代码"]
    config_dir = make_config(
        {
            "preload.sources.年金计划.columns": {"计划简陈": "x"},
            "preload.sources.组织架构.columns": {"机构名称": "机构"},
            "depends_on.组合计划": ["年金计化"],
        },
        rows=rows,
    )

    assert problems_of(config_dir) == [
        main_problem(
            config_dir, "preload.sources.年金计划.columns.计划简陈", "unknown column '计划简陈' of table '年金计划'"
        ),
        data_problem(config_dir, "rows[0].颜色", "unknown column '颜色' of table '产品线'"),
        data_problem(config_dir, "rows[3].产品线代码", "key column is missing or empty"),
        main_problem(
            config_dir, "preload.sources.组织架构.columns.机构名称", "unknown column '机构名称' of table '组织架构'"
        ),
        main_problem(config_dir, "depends_on.组合计划[0]", f"unknown table '年金计化' {KNOWN_TABLES}"),
    ]


# --- identifiers ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["组合计划", "NO_产品线", "年金计划号", "annuity_hub", "company_id", "updated_at", "PL201", "x" * 64]
)
def test_check_identifier_accepts(name):
    assert check_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 65,
        "组" * 65,
        "年金 计划",
        "a;b",
        "annuity_hub; DROP TABLE x",
        "a`b",
        'a"b',
        "a'b",
        "a.b",
        "a-b",
        "组合计划\n",
        "（组合）",
        None,
        123,
    ],
)
def test_check_identifier_rejects(name):
    with pytest.raises(ValueError, match="unsafe identifier"):
        check_identifier(name)


def test_alert_share_must_be_a_fraction(make_config):
    config_dir = make_config({"backfill.alert_share": 1.5})

    [problem] = problems_of(config_dir)
    assert problem.key_path == "backfill.alert_share"
    assert problem.reason.startswith("Input should be less than or equal to 1")


@pytest.mark.parametrize("schedule", ["0 3 * * 8", "weekly"])
def test_bad_full_schedule_names_its_key(make_config, schedule):
    config_dir = make_config({"preload.full_schedule": schedule})

    assert problems_of(config_dir) == [
        main_problem(
            config_dir,
            "preload.full_schedule",
            f"invalid cron string {schedule!r} (expected 5 fields, e.g. '0 1 * * *')",
        )
    ]


def test_full_schedule_at_the_nightly_time_is_rejected(make_config):
    config_dir = make_config({"preload.schedule": "0 1 * * *", "preload.full_schedule": "0 1 * * *"})

    [problem] = problems_of(config_dir)
    assert problem.key_path == "preload.full_schedule" and "same as preload.schedule" in problem.reason


def test_full_schedule_is_optional(make_config):
    assert load_config(make_config()).config.preload.full_schedule is None
    assert load_config(make_config({"preload.full_schedule": "0 3 * * 0"})).config.preload.full_schedule == "0 3 * * 0"
