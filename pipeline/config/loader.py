"""The one config loader: reads the YAML files and validates them against the models before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, TypeVar

import yaml
from django.conf import settings
from django.db import DatabaseError, DataError, connection, models, transaction
from pydantic import BaseModel, ValidationError

from pipeline.derivations import FUNCTIONS
from pipeline.fact_tables import fact_table, fact_table_names
from reference.registry import DependencyCycle, dependency_order, get_table, table_names, trigram_indexed_columns
from refgov.db.identifiers import check_identifier
from refgov.errors import first_line

from .domain_schema import DomainConfig, ForeignKey
from .schema import ConfigFileSource, LegacyMySQLSource, ReferenceManagementConfig, Suggestions

MAIN_FILE = "reference_management.yml"
ModelT = TypeVar("ModelT", bound=BaseModel)


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
            problems.append(Problem(path, f"{key_path}.{column}", f"unknown column {column!r} of table {table!r}"))


def postgresql_regex_error(pattern: str) -> str | None:
    """Why PostgreSQL's ``~`` cannot use ``pattern`` (its dialect differs from Python's: no ``(?P<name>)``, …), or
    None. Without a database connection the check is left to the first load."""
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT '' ~ %s", [pattern])
    except DataError as exc:
        return first_line(exc)
    except DatabaseError:
        return None
    return None


def _check_suggestions(path: Path, suggestions: Suggestions, problems: list[Problem]) -> None:
    """Name columns must be text columns (with a trigram index where the whole table is searched); ``siblings`` a
    foreign key to another reference table."""
    for table, settings_ in suggestions.tables.items():
        key_path = f"stewardship.suggestions.tables.{table}"
        if not _check_table(path, key_path, table, problems):
            continue
        reference = get_table(table)
        fields = reference.data_fields
        indexed = trigram_indexed_columns(reference.model)
        for i, column in enumerate(settings_.names):
            field = fields.get(column)
            if field is None or column == reference.key_column:
                problems.append(
                    Problem(path, f"{key_path}.names[{i}]", f"unknown column {column!r} of table {table!r}")
                )
            elif not isinstance(field, (models.CharField, models.TextField)) or field.is_relation:
                problems.append(Problem(path, f"{key_path}.names[{i}]", f"column {column!r} is not a text column"))
            elif settings_.search_names and column not in indexed:
                problems.append(
                    Problem(
                        path,
                        f"{key_path}.names[{i}]",
                        f"search_names needs a trigram index on {table}.{column} (indexed: "
                        f"{', '.join(sorted(indexed)) or 'none'}); without one every load reads the whole table",
                    )
                )
        if settings_.siblings is not None and settings_.siblings not in reference.parents:
            problems.append(
                Problem(
                    path,
                    f"{key_path}.siblings",
                    f"{settings_.siblings!r} is not a foreign key of table {table!r} to another reference table "
                    f"(foreign keys: {', '.join(reference.parents) or 'none'})",
                )
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


def _parse(path: Path, schema: type[ModelT]) -> ModelT:
    """One YAML file validated against its schema; every problem names the file and key path."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError([Problem(path, "", "expected a mapping at the top level")])
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(path, exc)) from None


def load_config(config_dir: Path | str | None = None) -> LoadedConfig:
    """Load and validate ``reference_management.yml`` and the files it names; raise ConfigError listing every
    problem."""
    config_dir = Path(config_dir or settings.REFGOV_CONFIG_DIR)
    main = config_dir / MAIN_FILE
    config = _parse(main, ReferenceManagementConfig)

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
    for table, columns in config.stewardship.required_fields.items():
        if _check_table(main, f"stewardship.required_fields.{table}", table, problems):
            _check_columns(main, f"stewardship.required_fields.{table}", table, columns, problems)
    _check_suggestions(main, config.stewardship.suggestions, problems)
    if config.preload.full_schedule is not None and config.preload.full_schedule == config.preload.schedule:
        problems.append(
            Problem(
                main,
                "preload.full_schedule",
                f"same as preload.schedule ({config.preload.schedule!r}): only one preload runs at a time, the "
                f"second would find the first running; give the full sync another time (e.g. '0 3 * * 0')",
            )
        )
    for table, pattern in config.key_patterns.items():
        key_path = f"key_patterns.{table}"
        if _check_table(main, key_path, table, problems) and (error := postgresql_regex_error(pattern)):
            problems.append(
                Problem(main, key_path, f"{pattern!r} is not a valid PostgreSQL regular expression: {error}")
            )
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


DOMAINS_DIR = "domains"


@dataclass(frozen=True)
class LoadedDomain:
    path: Path
    config: DomainConfig

    @property
    def fk_order(self) -> list[ForeignKey]:
        """Foreign keys in dependency order: parents (by ``depends_on`` and by reference table) first."""
        by_name = {fk.name: fk for fk in self.config.foreign_keys}
        graph = {fk.name: _fk_parents(fk, self.config.foreign_keys) for fk in self.config.foreign_keys}
        return [by_name[name] for name in TopologicalSorter(graph).static_order()]


def _fk_parents(fk: ForeignKey, all_fks: list[ForeignKey]) -> set[str]:
    by_table = {other.target_table: other.name for other in all_fks}
    implied = (
        {by_table[t] for t in get_table(fk.target_table).depends_on if t in by_table}
        if fk.target_table in table_names()
        else set()
    )
    return set(fk.depends_on) | implied


def _check_domain(path: Path, domain: DomainConfig, problems: list[Problem]) -> None:
    if domain.fact_table not in fact_table_names():
        problems.append(
            Problem(
                path, "fact_table", f"unknown fact table {domain.fact_table!r} (known: {', '.join(fact_table_names())})"
            )
        )
        return
    fact = fact_table(domain.fact_table)
    columns = fact.columns

    def fact_column(key_path: str, name: str | None) -> None:
        if name is not None and name not in columns:
            problems.append(Problem(path, key_path, f"unknown column {name!r} of fact table {fact.name!r}"))

    for raw, canonical in domain.aliases.items():
        fact_column(f"aliases.{raw}", canonical)
    for i, name in enumerate(domain.required_columns):
        fact_column(f"required_columns[{i}]", name)
    for i, name in enumerate(domain.replace_scope):
        fact_column(f"replace_scope[{i}]", name)
    for name in domain.keys.strip_prefix:
        fact_column(f"keys.strip_prefix.{name}", name)
    for name, lookup in domain.derived_columns.items():
        key_path = f"derived_columns.{name}"
        fact_column(key_path, name)
        fact_column(f"{key_path}.from", lookup.from_column)
        if (
            _check_table(path, f"{key_path}.table", lookup.table, problems)
            and lookup.match not in get_table(lookup.table).data_fields
        ):
            problems.append(
                Problem(path, f"{key_path}.match", f"unknown column {lookup.match!r} of table {lookup.table!r}")
            )

    names = [fk.name for fk in domain.foreign_keys]
    for i, fk in enumerate(domain.foreign_keys):
        key_path = f"foreign_keys[{i}]"
        if names.count(fk.name) > 1:
            problems.append(Problem(path, f"{key_path}.name", f"duplicate foreign key name {fk.name!r}"))
        fact_column(f"{key_path}.source_column", fk.source_column)
        for j, parent in enumerate(fk.depends_on):
            if parent not in names:
                problems.append(
                    Problem(
                        path,
                        f"{key_path}.depends_on[{j}]",
                        f"unknown foreign key {parent!r} (known: {', '.join(names)})",
                    )
                )
        if not _check_table(path, f"{key_path}.target_table", fk.target_table, problems):
            continue
        table = get_table(fk.target_table)
        if fk.target_key != table.key_column:
            problems.append(
                Problem(
                    path,
                    f"{key_path}.target_key",
                    f"{fk.target_key!r} is not the key of {table.name} (its key is {table.key_column!r})",
                )
            )
        if fact.reference_columns.get(fk.source_column, table.name) != table.name:
            problems.append(
                Problem(
                    path,
                    f"{key_path}.target_table",
                    f"fact column {fk.source_column!r} references "
                    f"{fact.reference_columns[fk.source_column]}, not {table.name}",
                )
            )
        for target, rule in fk.derive.items():
            rule_path = f"{key_path}.derive.{target}"
            if target not in table.data_fields or target == table.key_column:
                problems.append(Problem(path, rule_path, f"unknown column {target!r} of table {table.name!r}"))
            fact_column(f"{rule_path}.column", rule.column)
            fact_column(f"{rule_path}.order_by", rule.order_by)
            if rule.rule == "function" and rule.function not in FUNCTIONS:
                problems.append(
                    Problem(
                        path,
                        f"{rule_path}.function",
                        f"unknown derivation function {rule.function!r} (registered: {', '.join(sorted(FUNCTIONS))})",
                    )
                )
    covered = {fk.source_column for fk in domain.foreign_keys}
    for column, referenced in fact.reference_columns.items():
        if column not in covered:
            problems.append(
                Problem(
                    path,
                    "foreign_keys",
                    f"fact column {column!r} references {referenced} but no foreign key entry covers it",
                )
            )


def load_domain(name: str, config_dir: Path | str | None = None) -> LoadedDomain:
    """Load and validate ``domains/<name>.yml``; raise ConfigError listing every problem."""
    config_dir = Path(config_dir or settings.REFGOV_CONFIG_DIR)
    check_identifier(name)
    path = config_dir / DOMAINS_DIR / f"{name}.yml"
    if not path.exists():
        known = sorted(p.stem for p in (config_dir / DOMAINS_DIR).glob("*.yml"))
        raise ConfigError([Problem(path, "", f"no such domain {name!r} (configured: {', '.join(known) or 'none'})")])
    domain = _parse(path, DomainConfig)
    problems: list[Problem] = []
    if domain.domain != name:
        problems.append(Problem(path, "domain", f"file is named {name!r} but declares domain {domain.domain!r}"))
    _check_domain(path, domain, problems)
    if problems:
        raise ConfigError(problems)
    loaded = LoadedDomain(path=path, config=domain)
    try:
        _ = loaded.fk_order  # a cycle is found by ordering
    except CycleError as exc:
        raise ConfigError([Problem(path, "foreign_keys", f"dependency cycle: {' → '.join(exc.args[1])}")]) from None
    return loaded


def domain_names(config_dir: Path | str | None = None) -> list[str]:
    config_dir = Path(config_dir or settings.REFGOV_CONFIG_DIR)
    return sorted(p.stem for p in (config_dir / DOMAINS_DIR).glob("*.yml"))
