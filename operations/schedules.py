"""The django-q2 schedules, made from the cron strings of reference_management.yml (Asia/Shanghai)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django_q.models import Schedule

from pipeline.config.loader import LoadedConfig
from pipeline.config.schema import Strategy

PREFIX = "refgov."


@dataclass
class ScheduleChanges:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"created": self.created, "updated": self.updated, "deleted": self.deleted, "unchanged": self.unchanged}


def wanted_schedules(config: LoadedConfig) -> dict[str, tuple[str, str]]:
    """Schedule name → (task function, cron string) for what the configuration enables."""
    c = config.config
    wanted = {}
    if c.preload.enabled and c.strategy != Strategy.BACKFILL_ONLY:
        wanted[f"{PREFIX}preload"] = ("operations.tasks.preload_task", c.preload.schedule)
        if c.preload.full_schedule:
            wanted[f"{PREFIX}preload_full"] = ("operations.tasks.preload_full_task", c.preload.full_schedule)
    if c.facts.enabled:
        wanted[f"{PREFIX}facts"] = ("operations.tasks.process_inbox_task", c.facts.schedule)
        if c.facts.poll:
            wanted[f"{PREFIX}facts_poll"] = ("operations.tasks.poll_inbox_task", c.facts.poll)
    if c.review_report.enabled:
        wanted[f"{PREFIX}review_report"] = ("operations.tasks.review_report_task", c.review_report.schedule)
    if c.alerts.enabled:
        wanted[f"{PREFIX}alerts"] = ("operations.tasks.check_alerts_task", c.alerts.schedule)
    return wanted


@transaction.atomic
def sync_schedules(*, config: LoadedConfig) -> ScheduleChanges:
    """Create or update the wanted schedules and delete refgov schedules the configuration no longer has.

    Idempotent: an unchanged schedule keeps its next run."""
    changes = ScheduleChanges()
    wanted = wanted_schedules(config)
    for schedule in Schedule.objects.select_for_update().filter(name__startswith=PREFIX):
        if schedule.name not in wanted:
            schedule.delete()
            changes.deleted.append(schedule.name)
    for name, (func, cron) in wanted.items():
        schedule = Schedule.objects.filter(name=name).first()
        if schedule is None:
            Schedule.objects.create(name=name, func=func, schedule_type=Schedule.CRON, cron=cron, repeats=-1)
            changes.created.append(name)
        elif (schedule.func, schedule.cron, schedule.schedule_type) != (func, cron, Schedule.CRON):
            schedule.func, schedule.cron, schedule.schedule_type, schedule.repeats = func, cron, Schedule.CRON, -1
            schedule.next_run = schedule.calculate_next_run()
            schedule.save()
            changes.updated.append(name)
        else:
            changes.unchanged.append(name)
    return changes
