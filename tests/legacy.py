"""A throwaway legacy MySQL (MariaDB) for one test: databases named test_*, created and dropped by the fixture."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings

from pipeline.demo.legacy import LegacyDataset, admin_execute, create_legacy_databases
from pipeline.sources.legacy_mysql import MySQLServer
from refgov.db.identifiers import quote_mysql as mq

from .safety import require_test_database


@dataclass
class LegacyDB:
    server: MySQLServer
    hub: str
    enterprise: str

    def execute(self, database: str, sql: str, params: tuple | list = ()) -> int:
        conn = self.server.connect(require_test_database(database, what="legacy MySQL"))
        try:
            cur = conn.cursor()
            count = cur.execute(sql, params)
            conn.commit()
            return count
        finally:
            conn.close()

    def fetch(self, database: str, sql: str, params: tuple | list = ()) -> list[tuple]:
        conn = self.server.connect(database)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            conn.close()

    def load(self, dataset: LegacyDataset) -> dict[str, int]:
        return create_legacy_databases(self.server, dataset, hub_db=self.hub, enterprise_db=self.enterprise)

    def drop(self) -> None:
        admin_execute(
            self.server,
            f"DROP DATABASE IF EXISTS {mq(require_test_database(self.hub, what='legacy MySQL'))}",
            f"DROP DATABASE IF EXISTS {mq(require_test_database(self.enterprise, what='legacy MySQL'))}",
        )


def make_legacy(tag: str) -> LegacyDB:
    suffix = f"{os.getpid()}_{tag}"
    return LegacyDB(
        server=MySQLServer.from_settings(),
        hub=require_test_database(f"test_hub_{suffix}", what="legacy MySQL"),
        enterprise=require_test_database(f"test_ent_{suffix}", what="legacy MySQL"),
    )


def write_config(directory: Path, legacy: LegacyDB, *, sources: dict | None = None, **overrides) -> Path:
    """A reference_management.yml (plus product lines) pointing at the test's legacy databases.

    ``sources`` updates single preload sources (table → keys), other keyword arguments replace top-level keys."""
    base = yaml.safe_load((settings.BASE_DIR / "config" / "reference_management.yml").read_text(encoding="utf-8"))
    configured = base["preload"]["sources"]
    configured["年金计划"]["database"] = legacy.hub
    configured["组合计划"]["database"] = legacy.hub
    configured["组织架构"]["database"] = legacy.enterprise
    for table, changes in (sources or {}).items():
        configured[table] = {**configured.get(table, {}), **changes}
    for key, value in overrides.items():
        base[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "reference_data").mkdir(exist_ok=True)
    (directory / "reference_data" / "product_lines.yml").write_text(
        (settings.BASE_DIR / "config" / "reference_data" / "product_lines.yml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    (directory / "reference_management.yml").write_text(
        yaml.safe_dump(base, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return directory


def edit_config(directory: Path, mutate) -> None:
    """Change reference_management.yml in place: ``mutate`` gets the parsed YAML and edits it."""
    path = directory / "reference_management.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    mutate(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
