from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser

from operations.management.base import Failed, RefgovCommand
from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset
from pipeline.facts.readers import parse_month


class Command(RefgovCommand):
    help = (
        "Write one more demo fact workbook (规模明细 and 收入明细 of a month) on the keys of the demo legacy data, "
        "by default into the inbox, so that the running qcluster picks it up."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--month", required=True, help="e.g. 202412")
        parser.add_argument("--to", default=None, help="folder (default: REFGOV_INBOX_DIR)")
        parser.add_argument("--plans", type=int, default=1_200, help="as given to demo_data")
        parser.add_argument("--portfolios", type=int, default=1_300, help="as given to demo_data")

    def run(self, **options: Any) -> dict:
        try:
            month = f"{parse_month(options['month']):%Y%m}"
        except ValueError as exc:
            raise Failed(f"--month: {exc}") from None
        folder = Path(options["to"] or settings.REFGOV_INBOX_DIR)
        target = folder / f"{month}_年金业务明细.xlsx"
        partial = folder / f".{target.name}.partial"  # hidden until complete: the inbox never sees half a file
        dataset = LegacyDataset(plans=options["plans"], portfolios=options["portfolios"])
        FactWorkbook(month=month, legacy=dataset, seed=int(month)).write(partial)
        os.replace(partial, target)
        return {"workbook": str(target)}

    def emit_text(self, payload: dict) -> None:
        self.stdout.write(f"demo fact workbook: {payload['workbook']}")
