from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser
from django.utils import timezone

from pipeline.management.base import Failed, RefgovCommand
from pipeline.reports import WRITERS, pending_review, reports_dir
from reference.registry import table_names


class Command(RefgovCommand):
    help = "Write the review report of every reference row pending review (html, xlsx or csv)."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--table", help="only this reference table")
        parser.add_argument("--format", choices=sorted(WRITERS), default="html", help="report format (default html)")
        parser.add_argument("--output", help="output file (default var/reports/review_<timestamp>.<ext>)")

    def run(self, **options: Any) -> dict:
        table, fmt = options.get("table"), options["format"]
        if table and table not in table_names():
            raise Failed(f"unknown reference table {table!r} (known: {', '.join(table_names())})")
        rows = pending_review(table=table)
        if options.get("output"):
            output = Path(options["output"])
        else:
            stamp = timezone.localtime().strftime("%Y%m%d_%H%M%S")
            output = reports_dir() / f"review_{stamp}.{fmt}"
        output.parent.mkdir(parents=True, exist_ok=True)
        WRITERS[fmt](rows, output)
        per_table = {name: 0 for name in ([table] if table else table_names())}
        for row in rows:
            per_table[row["table"]] += 1
        return {"output": str(output), "format": fmt, "rows": len(rows), "per_table": per_table}

    def emit_text(self, payload: dict) -> None:
        self.stdout.write(payload["output"])
        for name, count in payload["per_table"].items():
            self.stdout.write(f"{name}: {count}")
        self.stdout.write(f"total: {payload['rows']}")
