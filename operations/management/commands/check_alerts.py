from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from operations.alert_checks import check_alerts
from operations.management.base import Failed, RefgovCommand
from pipeline.config import load_config
from pipeline.runs_liveness import close_abandoned_runs


class Command(RefgovCommand):
    help = (
        "Close runs whose process is gone (abandoned), check the alert conditions no run reports by itself "
        "(auto-derived share, stale reviews, missed schedules), notify each new one once, and list the open alerts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--strict", action="store_true", help="exit 1 when any alert is open (for monitoring)")

    def run(self, **options: Any) -> dict:
        config = load_config()
        abandoned = close_abandoned_runs(config=config)
        payload = {**check_alerts(config=config).summary(), **abandoned.summary()}
        if options["strict"] and payload["open"]:
            raise Failed(f"{len(payload['open'])} open alert(s): {payload['open'][0]}", payload)
        return payload

    def emit_text(self, payload: dict) -> None:
        if not payload["open"]:
            self.stdout.write("no open alerts")
        for subject in payload["open"]:
            self.stdout.write(f"open: {subject}")
