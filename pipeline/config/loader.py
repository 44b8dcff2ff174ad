"""The one config loader: reads the YAML files and validates them against the models before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from pydantic import ValidationError

from reference.registry import DependencyCycle, dependency_order, get_table, table_names

from .schema import ConfigFileSource, LegacyMySQLSource, ReferenceManagementConfig

MAIN_FILE = "reference_management.yml"


@dataclass(frozen=True)
class Problem:
    file: Path
    key_path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key_path or '<top>'}: {self.reason}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    config: ReferenceManagementConfig
    file_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def sync_order(self) -> list[str]:
        return dependency_order(self.config.preload.sources, self.config.depends_on)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(path, "", "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([Problem(path, where, f"invalid YAML: {getattr(exc, 'problem', exc)}")]) from None


def _pydantic_problems(path: Path, exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # pydantic names the chosen variant of a source after its table: preload.sources.<table>.<type>.<key>
        if loc[:2] == ["preload", "sources"] and len(loc) > 3 and loc[3] in {"legacy_mysql", "config_file"}:
            del loc[3]
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] == "union_tag_not_found":
            reason = "missing 'type' (legacy_mysql or config_file)"
        elif err["type"] == "union_tag_invalid":
            reason = f"'type' must be legacy_mysql or config_file (got {err['input'].get('type')!r})"
        else:
            reason = err["msg"].removeprefix("Value error, ")
            if err["type"] in {"enum", "literal_error", "bool_parsing", "string_type", "dict_type", "list_type"}:
                reason += f" (got {err['input']!r})"
        problems.append(Problem(path, ".".join(loc), reason))
    return problems


def _check_table(path: Path, key_path: str, name: str, problems: list[Problem]) -> bool:
    if name not in table_names():
        problems.append(Problem(path, key_path, f"unknown table {name!r} (known: {', '.join(table_names())})"))
        return False
    return True


def _check_columns(path: Path, key_path: str, table: str, columns: list[str], problems: list[Problem]) -> None:
    known = get_table(table).data_fields
    for column in columns:
        if column not in known:
            problems.append(
                Problem(path, f"{key_path}.{column}", f"unknown column {column!r} of table {table!r}")
            )


def _load_file_rows(
    config_dir: Path, main: Path, table: str, source: ConfigFileSource, problems: list[Problem]
) -> list[dict[str, Any]]:
    key_path = f"preload.sources.{table}.path"
    data_path = (config_dir / source.path).resolve()
    if not data_path.is_relative_to(config_dir.resolve()):
        problems.append(Problem(main, key_path, f"path {source.path!r} leaves the config directory"))
        return []
    try:
        data = read_yaml(data_path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return []
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        problems.append(Problem(data_path, "rows", "expected a mapping with a list under 'rows'"))
        return []
    unknown = set(data) - {"rows"}
    for key in sorted(unknown):
        problems.append(Problem(data_path, key, "unknown key"))
    key_column = get_table(table).key_column
    rows = []
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict):
            problems.append(Problem(data_path, f"rows[{i}]", "expected a mapping of column: value"))
            continue
        _check_columns(data_path, f"rows[{i}]", table, list(row), problems)
        if row.get(key_column) in (None, ""):
            problems.append(Problem(data_path, f"rows[{i}].{key_column}", "key column is missing or empty"))
        rows.append(row)
    return rows


def load_config(config_dir: Path | str | None = None) -> LoadedConfig:
    """Load and validate ``reference_management.yml`` and the files it names; raise ConfigError listing every problem."""
    config_dir = Path(config_dir or settings.REFGOV_CONFIG_DIR)
    main = config_dir / MAIN_FILE
    raw = read_yaml(main)
    if not isinstance(raw, dict):
        raise ConfigError([Problem(main, "", "expected a mapping at the top level")])
    try:
        config = ReferenceManagementConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(main, exc)) from None

    problems: list[Problem] = []
    file_rows: dict[str, list[dict[str, Any]]] = {}
    for table, source in config.preload.sources.items():
        key_path = f"preload.sources.{table}"
        if not _check_table(main, key_path, table, problems):
            continue
        if isinstance(source, LegacyMySQLSource):
            _check_columns(main, f"{key_path}.columns", table, list(source.columns), problems)
        else:
            file_rows[table] = _load_file_rows(config_dir, main, table, source, problems)
    for table, parents in config.depends_on.items():
        if _check_table(main, f"depends_on.{table}", table, problems):
            for i, parent in enumerate(parents):
                _check_table(main, f"depends_on.{table}[{i}]", parent, problems)
    if problems:
        raise ConfigError(problems)
    try:
        dependency_order(extra_depends_on=config.depends_on)
    except DependencyCycle as exc:
        raise ConfigError([Problem(main, "depends_on", str(exc))]) from None
    return LoadedConfig(path=main, config=config, file_rows=file_rows)
