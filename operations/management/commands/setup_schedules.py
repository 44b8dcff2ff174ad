from __future__ import annotations

from typing import Any

from operations.management.base import RefgovCommand
from operations.schedules import sync_schedules
from pipeline.config import load_config


class Command(RefgovCommand):
    help = "Create or update the django-q2 schedules from the cron strings of reference_management.yml."

    def run(self, **options: Any) -> dict:
        return sync_schedules(config=load_config()).summary()

    def emit_text(self, payload: dict) -> None:
        for what in ("created", "updated", "deleted", "unchanged"):
            for name in payload[what]:
                self.stdout.write(f"{what}: {name}")
