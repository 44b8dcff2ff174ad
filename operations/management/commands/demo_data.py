from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandParser
from django.utils import timezone

from operations.management.base import Failed, RefgovCommand
from pipeline.config import load_config
from pipeline.config.schema import LegacyMySQLSource
from pipeline.demo.facts import FactWorkbook
from pipeline.demo.legacy import LegacyDataset, create_legacy_databases, foreign_databases
from pipeline.sources.legacy_mysql import MySQLServer


class Command(RefgovCommand):
    help = (
        "Create the demo legacy MySQL databases named in the config (annuity_hub, enterprise) with realistic rows, "
        "and demo fact workbooks. Refuses to replace databases it did not create."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--plans", type=int, default=1_200)
        parser.add_argument("--portfolios", type=int, default=1_300)
        parser.add_argument("--facts-dir", default=str(settings.BASE_DIR / "var" / "demo" / "inbox"))

    def run(self, **options: Any) -> dict:
        config = load_config().config
        legacy = [s for s in config.preload.sources.values() if isinstance(s, LegacyMySQLSource)]
        hub = next(s.database for s in legacy if s.table in {"年金计划", "组合计划"})
        enterprise = next(s.database for s in legacy if s.table == "组织架构")
        server = MySQLServer.from_settings()
        foreign = foreign_databases(server, [hub, enterprise])
        if foreign:
            raise Failed(
                f"legacy database(s) {', '.join(foreign)} on {server} exist and were not created by demo_data; "
                "refusing to replace them"
            )
        # Rows changed "now" at the source: a later incremental preload picks up what a re-run adds.
        dataset = LegacyDataset(
            plans=options["plans"],
            portfolios=options["portfolios"],
            updated_at=f"{timezone.localtime():%Y-%m-%d %H:%M:%S}",
        )
        counts = create_legacy_databases(server, dataset, hub_db=hub, enterprise_db=enterprise)
        facts_dir = Path(options["facts_dir"])
        workbooks = [
            str(
                FactWorkbook(month=month, legacy=dataset, seed=int(month)).write(
                    facts_dir / f"{month}_年金业务明细.xlsx"
                )
            )
            for month in ("202410", "202411")
        ]
        return {"legacy_server": str(server), "databases": [hub, enterprise], "rows": counts, "workbooks": workbooks}

    def emit_text(self, payload: dict) -> None:
        self.stdout.write(f"legacy demo data on {payload['legacy_server']}:")
        for table, count in payload["rows"].items():
            self.stdout.write(f"  {table}: {count} rows")
        for path in payload["workbooks"]:
            self.stdout.write(f"demo fact workbook: {path}")
