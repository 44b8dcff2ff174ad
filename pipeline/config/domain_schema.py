"""Shape of ``config/domains/<domain>.yml``: how a domain's fact files are read, normalised and backfilled.

Cross-checks against the fact and reference models live in ``loader.load_domain``.
"""

from __future__ import annotations

import re
import string
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from .schema import Identifier, Strict

TEMPLATE_FIELDS = {"yymm", "yyyymm", "yyyy", "mm", "domain", "file"}


class Derivation(Strict):
    """How one column of a new reference row is derived from the fact rows that reference its key."""

    rule: Literal["first", "max_by", "concat_distinct", "count_distinct", "template", "constant", "function"]
    column: Identifier | None = None
    order_by: Identifier | None = None
    separator: str = "+"
    order: list[str] = Field(default_factory=list)
    template: str | None = None
    value: str | int | float | bool | None = None
    function: Identifier | None = None

    @model_validator(mode="after")
    def _parameters_for_rule(self) -> Derivation:
        needs_column = {"first", "max_by", "concat_distinct", "count_distinct", "function"}
        if self.rule in needs_column and not self.column:
            raise ValueError(f"rule {self.rule!r} needs 'column' (the fact column to derive from)")
        if self.rule == "max_by" and not self.order_by:
            raise ValueError("rule 'max_by' needs 'order_by' (the fact column whose largest value wins)")
        if self.rule == "template":
            if not self.template:
                raise ValueError("rule 'template' needs 'template', e.g. '{yymm}_新建'")
            names = {name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None}
            unknown = names - TEMPLATE_FIELDS
            if unknown:
                raise ValueError(
                    f"template {self.template!r} uses unknown field(s) {', '.join(sorted(unknown))} "
                    f"(known: {', '.join(sorted(TEMPLATE_FIELDS))})"
                )
        if self.rule == "constant" and self.value is None:
            raise ValueError("rule 'constant' needs 'value'")
        if self.rule == "function" and not self.function:
            raise ValueError("rule 'function' needs 'function' (the name of a registered derivation function)")
        return self


class ForeignKey(Strict):
    name: Identifier
    source_column: Identifier
    target_table: Identifier
    target_key: Identifier
    depends_on: list[Identifier] = Field(default_factory=list)
    derive: dict[Identifier, Derivation] = Field(default_factory=dict)


class Lookup(Strict):
    """Fill a missing fact column by matching another fact column against a reference table's column."""

    table: Identifier
    match: Identifier
    from_column: Identifier = Field(alias="from")
    default: str | None = None


class Files(Strict):
    patterns: list[str] = Field(min_length=1)
    sheet: str | None = None
    encoding: Literal["utf-8", "gbk", "gb18030"] | None = None


class KeyRules(Strict):
    placeholders: list[str] = Field(default_factory=lambda: ["(空白)", "0", ""])
    strip_prefix: dict[Identifier, str] = Field(default_factory=dict)
    temporary_company_id: str = r"^IN[A-Z2-7]{16}$"

    @model_validator(mode="after")
    def _valid_pattern(self) -> KeyRules:
        try:
            re.compile(self.temporary_company_id)
        except re.error as exc:
            raise ValueError(f"temporary_company_id is not a valid regular expression: {exc}") from None
        return self


class InvalidKeys(StrEnum):
    """What a load does with rows whose new key breaks the key rules (junk characters, the table's key pattern)."""

    REJECT = "reject"  # refuse the file, listing every bad key with its rows; nothing loaded
    QUARANTINE = "quarantine"  # load the other rows; keep the bad ones in the quarantine for a steward


class DomainConfig(Strict):
    domain: Identifier
    fact_table: Identifier
    files: Files
    aliases: dict[str, Identifier] = Field(default_factory=dict)
    required_columns: list[Identifier] = Field(default_factory=list)
    derived_columns: dict[Identifier, Lookup] = Field(default_factory=dict)
    keys: KeyRules = KeyRules()
    replace_scope: list[Identifier] = Field(min_length=1)
    invalid_keys: InvalidKeys = InvalidKeys.QUARANTINE
    foreign_keys: list[ForeignKey] = Field(min_length=1)
