"""Shape of ``reference_management.yml``. Cross-checks against the models live in ``loader``."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from croniter import croniter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from refgov.db.identifiers import check_identifier

Identifier = Annotated[str, AfterValidator(check_identifier)]


def _check_cron(value: str) -> str:
    if not croniter.is_valid(value) or len(value.split()) != 5:
        raise ValueError(f"invalid cron string {value!r} (expected 5 fields, e.g. '0 1 * * *')")
    return value


Cron = Annotated[str, AfterValidator(_check_cron)]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
    return value


KeyPattern = Annotated[str, AfterValidator(_check_regex)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Strategy(StrEnum):
    HYBRID = "hybrid"
    PRELOAD_ONLY = "preload_only"
    BACKFILL_ONLY = "backfill_only"


class LegacyMySQLSource(Strict):
    type: Literal["legacy_mysql"]
    database: Identifier
    table: Identifier
    columns: dict[Identifier, Identifier] = Field(
        default_factory=dict, description="target column → source column, for columns named differently"
    )
    incremental_column: Identifier | None = None

    def describe(self) -> str:
        return f"legacy_mysql {self.database}.{self.table}"


class ConfigFileSource(Strict):
    type: Literal["config_file"]
    path: str

    def describe(self) -> str:
        return f"config_file {self.path}"


Source = Annotated[LegacyMySQLSource | ConfigFileSource, Field(discriminator="type")]


class Preload(Strict):
    enabled: bool = True
    schedule: Cron = "0 1 * * *"
    full_schedule: Cron | None = Field(
        default=None,
        description="cron of a full sync (every source row, ignoring watermarks): sees deletions at the source and "
        "changes that do not move the incremental column",
    )
    sources: dict[str, Source] = Field(default_factory=dict)


class Backfill(Strict):
    enabled: bool = True
    mode: Literal["fallback", "always"] = Field(
        default="fallback",
        description="always: also fill empty fields of auto-derived rows pending review from new batches",
    )
    mark_for_review: bool = True
    notify_on_new_records: bool = True
    notification_channel: str = "data-quality-alerts"
    alert_share: float = Field(
        default=0.10, ge=0, le=1, description="alert when a table's auto-derived share exceeds this"
    )


class PreloadMissing(StrEnum):
    """What the fact run does when the preload of the current window did not succeed."""

    SYNC_FIRST = "sync_first"  # try an incremental preload first; if that fails too, go on degraded
    DEGRADED = "degraded"  # go on at once, degraded (hybrid) or wait (preload_only)


class Facts(Strict):
    """Scheduled fact processing: every file of the inbox that a domain's patterns match."""

    enabled: bool = True
    schedule: Cron = "0 3 * * *"
    poll: Cron | None = Field(default="*/10 * * * *", description="look for new inbox files between the nightly runs")
    after_preload: bool = Field(default=True, description="a successful preload processes the waiting files at once")
    preload_missing: PreloadMissing = PreloadMissing.SYNC_FIRST


class Alerts(Strict):
    """Operational alerts, each sent once per condition; the check runs on its own schedule."""

    enabled: bool = True
    schedule: Cron = "*/15 * * * *"
    channel: str | None = Field(default=None, description="notifier channel; default: backfill.notification_channel")
    stale_review_days: int = Field(default=14, ge=1, description="alert when rows wait for review longer than this")
    missed_schedule_minutes: int = Field(default=30, ge=1, description="alert when a schedule is this late")


class ReviewReport(Strict):
    enabled: bool = True
    schedule: Cron = "0 8 * * 1"
    channel: str | None = Field(
        default=None, description="notifier channel of the weekly report; default: backfill.notification_channel"
    )


DEFAULT_REQUIRED_FIELDS = {
    "年金计划": ["计划简称", "计划类型", "客户名称"],
    "组合计划": ["组合名称", "年金计划号", "组合类型"],
    "产品线": ["产品线"],
    "组织架构": ["机构"],
}


class SuggestionTable(Strict):
    """How new keys of one reference table are compared with its existing rows (database column names)."""

    names: list[str] = Field(
        default_factory=list, description="name columns compared with the same column of existing rows (pg_trgm)"
    )
    search_names: bool = Field(
        default=False, description="also look up similar names across the whole table (needs a trigram index)"
    )
    siblings: str | None = Field(
        default=None, description="a parent key column: rows with the same parent are compared by key and name"
    )


DEFAULT_SUGGESTION_TABLES = {
    "年金计划": SuggestionTable(names=["计划简称", "客户名称"], search_names=True),
    "组合计划": SuggestionTable(names=["组合名称"], siblings="年金计划号"),
    "产品线": SuggestionTable(names=["产品线"], search_names=True),
    "组织架构": SuggestionTable(names=["机构"], search_names=True),
}


class Suggestions(Strict):
    """Typo suggestions for the keys a load derives: existing rows each new key probably means."""

    enabled: bool = True
    min_score: float = Field(default=0.55, ge=0, le=1, description="suggestions scoring less are not kept")
    key_weight: float = Field(
        default=0.4, ge=0, le=1, description="share of the key's similarity in the score; the rest is the name's"
    )
    max_key_distance: int = Field(default=2, ge=1, le=3, description="levenshtein distance of a similar key")
    min_name_similarity: float = Field(
        default=0.5, gt=0, le=1, description="trigram similarity of a similar name (pg_trgm)"
    )
    per_key: int = Field(default=3, ge=1, le=20, description="suggestions kept per new key, best first")
    tables: dict[str, SuggestionTable] = Field(default_factory=lambda: dict(DEFAULT_SUGGESTION_TABLES))


class Stewardship(Strict):
    """What a steward must fill in before an auto-derived row can be promoted (database column names), and the typo
    suggestions shown in the review queue."""

    required_fields: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_REQUIRED_FIELDS))
    suggestions: Suggestions = Suggestions()


class ReferenceManagementConfig(Strict):
    strategy: Strategy = Strategy.HYBRID
    preload: Preload = Preload()
    backfill: Backfill = Backfill()
    facts: Facts = Facts()
    review_report: ReviewReport = ReviewReport()
    alerts: Alerts = Alerts()
    stewardship: Stewardship = Stewardship()
    key_patterns: dict[str, KeyPattern] = Field(
        default_factory=dict,
        description="reference table → the regular expression its new keys must match (PostgreSQL ~, Python re)",
    )
    depends_on: dict[str, list[str]] = Field(default_factory=dict)
