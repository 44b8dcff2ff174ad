from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from operations.management.base import Failed, RefgovCommand
from pipeline.preload import run_preload


class Command(RefgovCommand):
    help = "Phase 1: sync the reference tables from their authoritative sources (legacy MySQL, config files)."
    # The system checks import the whole admin (and openpyxl): over a second, more than an unchanged sync takes.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--table", action="append", dest="tables", metavar="T", help="only this table (repeatable)")
        parser.add_argument("--full", action="store_true", help="read every source row, ignoring watermarks")
        parser.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")

    def run(self, **options: Any) -> dict:
        result = run_preload(
            tables=options["tables"], full=options["full"], dry_run=options["dry_run"], trigger="command"
        )
        payload = result.summary()
        if not result.ok:
            raise Failed(f"preload {result.run.status}: {result.run.message}", payload)
        return payload

    def emit_text(self, payload: dict) -> None:
        head = "DRY RUN — nothing written. " if payload["dry_run"] else f"run #{payload['run_id']} "
        self.stdout.write(f"{head}status: {payload['status']}")
        self.stdout.write(
            f"{'table':<8} {'mode':<11} {'status':<8} {'read':>8} {'new':>8} {'upd':>8} {'upgr':>6} "
            f"{'conf':>6} {'same':>8} {'rejected':>8} {'gone':>6} {'await':>6}"
        )
        for t in payload["tables"]:
            self.stdout.write(
                f"{t['table']:<8} {t['mode']:<11} {t['status']:<8} {t['rows_read']:>8} {t['inserted']:>8} "
                f"{t['updated']:>8} {t['upgraded']:>6} {t['confirmed']:>6} {t['unchanged']:>8} {t['errors']:>8} "
                f"{t['missing_at_source']:>6} {t['awaiting_source']:>6}"
            )
            if t["message"]:
                self.stdout.write(f"  {t['message']}")
        for u in payload["upgrades"][:50]:
            what = "confirmed promoted" if u["promoted"] else "upgraded"
            self.stdout.write(f"{what} {u['table']} {u['key']}: changed {u['changed'] or '-'} kept {u['kept'] or '-'}")
        if len(payload["upgrades"]) > 50:
            self.stdout.write(f"... and {len(payload['upgrades']) - 50} more upgrades (see admin or --json)")
        integrity = payload["integrity"]
        self.stdout.write(
            "integrity: ok" if integrity["ok"] else f"integrity: {len(integrity['violations'])} violations"
        )
