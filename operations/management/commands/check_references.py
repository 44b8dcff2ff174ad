from __future__ import annotations

from typing import Any

from operations.management.base import Failed, RefgovCommand
from reference.integrity import check_reference_integrity


class Command(RefgovCommand):
    help = "Validate reference integrity: every reference foreign key resolves, no orphans, provenance present."

    def run(self, **options: Any) -> dict:
        report = check_reference_integrity()
        payload = report.as_dict()
        if not report.ok:
            raise Failed("; ".join(str(v) for v in report.violations), payload)
        return payload

    def emit_text(self, payload: dict) -> None:
        for name in payload["checked"]:
            self.stdout.write(f"checked {name}")
        for v in payload["violations"]:
            self.stdout.write(
                f"VIOLATION {v['table']}: {v['check']}: {v['count']} (e.g. {', '.join(v['samples'][:5])})"
            )
        if payload["ok"]:
            self.stdout.write("reference integrity: ok")
