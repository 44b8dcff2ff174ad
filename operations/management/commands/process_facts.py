from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from operations.management.base import Failed, RefgovCommand
from operations.management.stdin import STDIN, STDIN_PATH, StdinRefused, checked_name, spooled
from pipeline.facts.readers import FactFileError
from pipeline.facts.service import FactLoadError, drop_month, process_fact_file
from pipeline.models import FactBatch, FactStatus


class Command(RefgovCommand):
    help = "Phases 2+3: load fact files of a domain, auto-deriving the reference rows their unknown keys need."
    load_facts = True
    # Django's system checks (models, admin, URLs) cost ~0.1 s per run and say nothing about fact files; the
    # configuration this command depends on is validated by load_config / load_domain on every run.
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--domain", required=True, help="e.g. annuity_performance (config/domains/<domain>.yml)")
        parser.add_argument("files", nargs="*", metavar="FILE", help="fact files; - reads a CSV from standard input")
        parser.add_argument(
            "--name", help="with -: the file name the batch records (e.g. 202411_规模明细.csv; CSV only)"
        )
        parser.add_argument("--sheet", help="sheet name (default: the domain's sheet)")
        parser.add_argument("--encoding", choices=["utf-8", "gbk", "gb18030"], help="csv encoding (default: detect)")
        parser.add_argument("--dry-run", action="store_true", help="report what would be derived and loaded")
        parser.add_argument(
            "--force", action="store_true", help="process a file even if the fact table holds it already"
        )
        parser.add_argument(
            "--allow-empty",
            action="store_true",
            help="accept a file without data rows (rejected otherwise: usually an export error)",
        )
        if self.load_facts:
            parser.add_argument(
                "--drop-month", metavar="YYYY-MM", help="drop every fact row of this month (the month's partition)"
            )
            parser.add_argument("--yes", action="store_true", help="with --drop-month: do not ask for confirmation")

    def progress_for(self, path: str) -> Callable[[str], None] | None:
        """Progress on a terminal (stderr), nothing when output goes to a file or a scheduler's log."""
        if not self.stderr.isatty():
            return None
        name = Path(path).name
        return lambda message: self.stderr.write(f"{name}: {message}", style_func=str)

    def run(self, **options: Any) -> dict:
        if options.get("drop_month"):
            return self.run_drop(**options)
        if not options["files"]:
            raise Failed("no fact file given (or --drop-month YYYY-MM)", {"domain": options["domain"], "files": []})
        if STDIN in options["files"] or options["name"]:
            return self.run_stdin(**options)
        results, failures = [], []
        for path in options["files"]:
            try:
                result = process_fact_file(
                    domain=options["domain"],
                    path=path,
                    sheet=options["sheet"],
                    encoding=options["encoding"],
                    load_facts=self.load_facts,
                    dry_run=options["dry_run"],
                    force=options["force"],
                    allow_empty=options["allow_empty"],
                    progress=self.progress_for(path),
                )
                results.append(result.summary())
            except (FactFileError, FactLoadError) as exc:
                failures.append(str(exc))
                results.append({"file": path, "status": FactStatus.REJECTED.value, "message": str(exc)})
        payload = {"domain": options["domain"], "files": results}
        if failures:
            raise Failed(f"{len(failures)} of {len(options['files'])} files not loaded: {failures[0]}", payload)
        return payload

    def run_drop(self, **options: Any) -> dict:
        domain, text = options["domain"], options["drop_month"]
        payload: dict[str, Any] = {"domain": domain, "files": []}
        try:
            month = datetime.strptime(text, "%Y-%m").date()
        except ValueError:
            raise Failed(f"--drop-month {text!r}: expected YYYY-MM", payload) from None
        if options["files"]:
            raise Failed("--drop-month takes no fact files", payload)
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise Failed(f"dropping {text} of {domain} needs --yes (no terminal to confirm on)", payload)
            answer = input(f"Drop every fact row of {text} of {domain}? Type the month again to confirm: ")
            if answer.strip() != text:
                raise Failed(f"not confirmed: {text} of {domain} kept", payload)
        try:
            batch = drop_month(domain=domain, month=month)
        except FactLoadError as exc:
            raise Failed(str(exc), payload) from None
        payload["files"].append(
            {
                "batch_id": batch.pk,
                "status": batch.kind,
                "file": batch.file_name,
                "months": batch.periods,
                "rows_replaced": batch.rows_replaced,
                "message": batch.message,
            }
        )
        return payload

    def run_stdin(self, **options: Any) -> dict:
        """``-``: standard input spooled to a temporary file named ``--name``, processed like a file argument; its
        batch records the file path ``<stdin>``, and the summary says ``<stdin>`` with the name."""
        try:
            name = checked_name(options["files"], options["name"])
            with spooled(sys.stdin.buffer, name=name) as path:
                spool = {str(path), str(path.resolve())}
                files = [str(path) if f == STDIN else f for f in options["files"]]
                try:
                    payload = self.run(**{**options, "files": files, "name": None})
                except Failed as exc:
                    _from_stdin(exc.payload, spool, name)
                    raise
                finally:
                    FactBatch.objects.filter(file_path__in=spool).update(file_path=STDIN_PATH)
        except StdinRefused as exc:
            raise Failed(
                str(exc), {"domain": options["domain"], "files": [], "status": "error", "error": str(exc)}
            ) from None
        _from_stdin(payload, spool, name)
        return payload

    def emit_text(self, payload: dict) -> None:
        for item in payload["files"]:
            head = "DRY RUN " if item.get("dry_run") else ""
            batch = f"batch #{item['batch_id']} " if item.get("batch_id") else ""
            file = f"{item['file']} ({item['name']})" if item.get("name") else item["file"]
            self.stdout.write(f"{head}{batch}{file}: {item['status']} — {item.get('message', '')}")
            for table, rows in item.get("derived", {}).items():
                if rows:
                    keys = ", ".join(r["key"] for r in rows[:20] if r.get("key"))
                    self.stdout.write(f"  new {table}: {len(rows)} ({keys}{' …' if len(rows) > 20 else ''})")


def _from_stdin(payload: dict | None, spool: set[str], name: str) -> None:
    for item in (payload or {}).get("files", []):
        if item.get("file") in spool:
            item.update(file=STDIN_PATH, name=name)
