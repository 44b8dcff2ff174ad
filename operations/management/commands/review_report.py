from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from operations.management.base import Failed, RefgovCommand
from pipeline.reports import WRITERS, write_review_report
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
        output = Path(options["output"]) if options.get("output") else None
        output, per_table = write_review_report(table=table, fmt=fmt, output=output)
        return {"output": str(output), "format": fmt, "rows": sum(per_table.values()), "per_table": per_table}

    def emit_text(self, payload: dict) -> None:
        self.stdout.write(payload["output"])
        for name, count in payload["per_table"].items():
            self.stdout.write(f"{name}: {count}")
        self.stdout.write(f"total: {payload['rows']}")
