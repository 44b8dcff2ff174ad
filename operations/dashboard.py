"""The admin index dashboard: how much of each reference table is still provisional, and the last runs."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Min
from django.urls import reverse
from django.utils import timezone

from operations.alert_checks import LateSchedule, late_schedules
from operations.share_chart import chart_svg
from pipeline.config import ConfigError, load_config
from pipeline.config.schema import ReferenceManagementConfig
from pipeline.models import Alert, AlertKind, FactBatch, QuarantinedRow, QuarantineState, SyncRun
from pipeline.selectors import open_unmapped
from reference.registry import all_tables
from reference.selectors import auto_derived_shares
from refgov.errors import first_line

OPEN_ALERTS_SHOWN = 10


@dataclass
class TableHealth:
    table: str
    verbose_name: str
    changelist: str
    total: int
    auto_derived: int
    pending: int
    share: float
    over_threshold: bool
    oldest_pending_days: int | None

    @property
    def authoritative(self) -> int:
        return self.total - self.auto_derived

    @property
    def share_percent(self) -> str:
        return f"{self.share:.1%}"


@dataclass
class Dashboard:
    tables: list[TableHealth]
    alert_share: float
    last_preload: SyncRun | None
    last_batches: list[FactBatch]
    open_alerts: list[Alert]
    late_schedules: list[LateSchedule]
    chart: str = ""
    config_problem: str = ""
    quarantined: int = 0  # quarantined rows waiting for a correction (隔离行)
    unmapped: int = 0  # lookup values still unmapped (未映射值)

    @property
    def alert_share_percent(self) -> str:
        return f"{self.alert_share:.0%}"


def dashboard() -> Dashboard:
    """Counts per table (the seed's dashboard query), share against the configured threshold, oldest pending age."""
    problem = ""
    try:
        config = load_config().config
    except ConfigError as exc:
        config, problem = ReferenceManagementConfig(), first_line(exc)  # the schema's defaults
    alert_share, grace = config.backfill.alert_share, config.alerts.missed_schedule_minutes
    shares = auto_derived_shares()
    now = timezone.now()
    tables = []
    for ref in all_tables():
        s = shares[ref.name]
        oldest = ref.model._default_manager.filter(needs_review=True).aggregate(oldest=Min("derived_at"))["oldest"]
        meta = ref.model._meta
        tables.append(
            TableHealth(
                table=ref.name,
                verbose_name=str(meta.verbose_name),
                changelist=reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"),
                total=s["total"],
                auto_derived=s["auto_derived"],
                pending=s["pending"],
                share=s["share"],
                over_threshold=s["share"] > alert_share,
                oldest_pending_days=(now - oldest).days if oldest else None,
            )
        )
    return Dashboard(
        tables=tables,
        alert_share=alert_share,
        last_preload=SyncRun.objects.order_by("-started_at").first(),
        last_batches=list(FactBatch.objects.order_by("-started_at")[:5]),
        open_alerts=list(
            Alert.objects.filter(resolved_at__isnull=True)
            .exclude(kind=AlertKind.MISSED_SCHEDULE)  # shown live from the schedules instead
            .order_by("-last_seen")[:OPEN_ALERTS_SHOWN]
        ),
        late_schedules=late_schedules(grace_minutes=grace, now=now),
        chart=chart_svg(threshold=alert_share),
        config_problem=problem,
        quarantined=QuarantinedRow.objects.filter(state=QuarantineState.PENDING).count(),
        unmapped=len(open_unmapped()),
    )
