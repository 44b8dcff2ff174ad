"""A realistic legacy MySQL dataset: the tables of ``annuity_hub`` and ``enterprise`` with DESIGN.md §5's shapes.

Used by the README demo, the tests and the benchmarks. Rows are generated deterministically from a seed and bulk
loaded with ``LOAD DATA LOCAL INFILE`` so that a million rows take seconds.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pipeline.sources.legacy_mysql import MySQLServer
from refgov.db.identifiers import quote_mysql as mq

PLAN_DDL = """
CREATE TABLE {table} (
  `年金计划号` VARCHAR(50) NOT NULL PRIMARY KEY,
  `计划简称` VARCHAR(255), `计划全称` VARCHAR(255), `主拓代码` VARCHAR(50), `计划类型` VARCHAR(50),
  `客户名称` VARCHAR(255), `company_id` VARCHAR(50), `管理资格` VARCHAR(255), `计划状态` VARCHAR(50),
  `主拓机构` VARCHAR(100), `组合数` INT, `是否统括` TINYINT(1), `备注` TEXT,
  `updated_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  KEY `idx_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

PORTFOLIO_DDL = """
CREATE TABLE {table} (
  `组合代码` VARCHAR(50) NOT NULL PRIMARY KEY, `年金计划号` VARCHAR(50),
  `组合名称` VARCHAR(255), `组合简称` VARCHAR(255), `组合状态` VARCHAR(50), `运作开始日` DATE,
  `组合类型` VARCHAR(50), `子分类` VARCHAR(50), `受托人` VARCHAR(255), `是否存款组合` TINYINT(1),
  `是否外部组合` TINYINT(1), `是否PK组合` TINYINT(1), `投资管理人` VARCHAR(255), `受托管理人` VARCHAR(255),
  `投资组合代码` VARCHAR(50), `投资组合名称` VARCHAR(255), `备注` TEXT,
  `updated_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  KEY `idx_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

ORG_DDL = """
CREATE TABLE {table} (
  `机构代码` VARCHAR(20) NOT NULL PRIMARY KEY, `机构` VARCHAR(100), `年金中心` VARCHAR(100), `战区` VARCHAR(100),
  `NO_机构` INT, `NO_年金中心` INT, `NO_区域` INT, `新架构` VARCHAR(100), `行政域` VARCHAR(100)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

PLAN_COLUMNS = [
    "年金计划号",
    "计划简称",
    "计划全称",
    "主拓代码",
    "计划类型",
    "客户名称",
    "company_id",
    "管理资格",
    "计划状态",
    "主拓机构",
    "组合数",
    "是否统括",
    "备注",
    "updated_at",
]
PORTFOLIO_COLUMNS = [
    "组合代码",
    "年金计划号",
    "组合名称",
    "组合简称",
    "组合状态",
    "运作开始日",
    "组合类型",
    "子分类",
    "受托人",
    "是否存款组合",
    "是否外部组合",
    "是否PK组合",
    "投资管理人",
    "受托管理人",
    "投资组合代码",
    "投资组合名称",
    "备注",
    "updated_at",
]
ORG_COLUMNS = ["机构代码", "机构", "年金中心", "战区", "NO_机构", "NO_年金中心", "NO_区域", "新架构", "行政域"]

CITIES = [
    "总部",
    "北京",
    "上海",
    "天津",
    "重庆",
    "河北",
    "山西",
    "辽宁",
    "吉林",
    "黑龙江",
    "江苏",
    "浙江",
    "安徽",
    "福建",
    "江西",
    "山东",
    "河南",
    "湖北",
    "湖南",
    "广东",
    "广西",
    "海南",
    "四川",
    "贵州",
    "云南",
    "陕西",
    "甘肃",
    "青海",
    "内蒙古",
    "宁夏",
    "新疆",
    "西藏",
    "大连",
    "青岛",
    "宁波",
    "厦门",
    "深圳",
    "苏州",
]
REGIONS = ["总部", "华北战区", "华东战区", "华南战区", "华中战区", "西部战区", "东北战区"]
COMPANIES = ["电力", "石化", "建设", "交通", "钢铁", "银行", "证券", "烟草", "航空", "电信", "煤业", "机械", "化工"]
SUFFIXES = ["集团有限公司", "股份有限公司", "有限责任公司", "控股集团"]
MANAGERS = ["长江养老", "平安养老", "太平养老", "国寿养老", "泰康资产", "华夏基金", "易方达基金", "工银瑞信"]


def branches() -> list[tuple[str, str]]:
    """The 38 branches G00–G37 (G00 = 总部) with their names."""
    return [(f"G{i:02d}", CITIES[i] if i == 0 else f"{CITIES[i]}分公司") for i in range(38)]


def plan_code(i: int) -> str:
    return f"{'P' if i % 5 else 'Z'}{i:06d}" if i >= 10_000 else f"{'P' if i % 5 else 'Z'}{i:04d}"


def portfolio_code(i: int) -> str:
    return f"QTAN{i:07d}" if i >= 10_000 else f"QTAN{i:04d}"


@dataclass
class LegacyDataset:
    plans: int = 1_200
    portfolios: int = 1_300
    seed: int = 20241101
    updated_at: str = "2024-11-01 02:00:00"

    def organizations(self) -> Iterator[tuple[Any, ...]]:
        for i, (code, name) in enumerate(branches()):
            region = REGIONS[0] if i == 0 else REGIONS[1 + i % (len(REGIONS) - 1)]
            center = "总部" if i == 0 else f"{REGIONS[1 + i % (len(REGIONS) - 1)][:2]}年金中心"
            yield (code, name, center, region, i, 1 + i % 6, 1 + i % 7, region, "省级" if i < 32 else "计划单列市")

    def plan_rows(self) -> Iterator[tuple[Any, ...]]:
        rnd = random.Random(self.seed)
        names = branches()
        for i in range(1, self.plans + 1):
            company = f"{rnd.choice(CITIES[1:])}{rnd.choice(COMPANIES)}{rnd.choice(SUFFIXES)}"
            collective = i % 5 == 0
            branch_code, branch_name = names[rnd.randrange(len(names))]
            yield (
                plan_code(i),
                f"{company[:8]}年金计划" if not collective else f"集合计划{i}号",
                f"{company}企业年金计划",
                branch_code,
                "集合计划" if collective else "单一计划",
                company,
                f"{rnd.randrange(600_000_000, 699_999_999)}",
                rnd.choice(["受托", "受托+投资", "投资", "账管+受托+投资", "账管"]),
                "正常" if rnd.random() > 0.05 else "终止",
                branch_name,
                rnd.randrange(1, 4),
                1 if collective else 0,
                None if rnd.random() > 0.1 else "历史迁移数据",
                self.updated_at,
            )

    def portfolio_rows(self) -> Iterator[tuple[Any, ...]]:
        rnd = random.Random(self.seed + 1)
        start = date(2008, 1, 1)
        for i in range(1, self.portfolios + 1):
            plan = plan_code(1 + (i - 1) % self.plans)
            kind = rnd.choice(["固定收益型", "含权益型", "货币型", "存款型"])
            opened = start + timedelta(days=rnd.randrange(0, 6000))
            yield (
                portfolio_code(i),
                plan,
                f"{plan}{kind}组合{i}",
                f"{kind}{i}",
                "运作中" if rnd.random() > 0.08 else "已终止",
                "0000-00-00" if i % 997 == 0 else opened.isoformat(),
                kind,
                rnd.choice(["稳健", "平衡", "进取"]),
                rnd.choice(MANAGERS),
                1 if kind == "存款型" else 0,
                1 if rnd.random() < 0.1 else 0,
                1 if rnd.random() < 0.05 else 0,
                rnd.choice(MANAGERS),
                rnd.choice(MANAGERS),
                f"TZ{i:07d}",
                f"投资组合{i}",
                None,
                self.updated_at,
            )


def _tsv_value(value: object) -> str:
    if value is None:
        return "\\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def bulk_load(
    server: MySQLServer, database: str, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]
) -> int:
    """Load rows with LOAD DATA LOCAL INFILE through a temporary TSV file; returns the row count."""
    count = 0
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".tsv", delete=False) as fh:
        for row in rows:
            fh.write("\t".join(_tsv_value(v) for v in row))
            fh.write("\n")
            count += 1
        path = fh.name
    try:
        conn = server.connect(database, local_infile=True)
        try:
            cur = conn.cursor()
            cols = ", ".join(mq(c) for c in columns)
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {mq(table)} CHARACTER SET utf8mb4 "
                f"FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({cols})",
                (path,),
            )
            conn.commit()
        finally:
            conn.close()
    finally:
        os.unlink(path)
    return count


def admin_execute(server: MySQLServer, *statements: str) -> None:
    conn = server.connect()
    try:
        cur = conn.cursor()
        for sql in statements:
            cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


DEMO_MARKER = "_refgov_demo"


def foreign_databases(server: MySQLServer, names: list[str]) -> list[str]:
    """Those of ``names`` that exist and were not created by this module (the demo must never replace them)."""
    conn = server.connect()
    try:
        cur = conn.cursor()
        foreign = []
        for name in names:
            cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
            if not cur.fetchone():
                continue
            cur.execute(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (name, DEMO_MARKER),
            )
            if not cur.fetchone():
                foreign.append(name)
        return foreign
    finally:
        conn.close()


def create_legacy_databases(
    server: MySQLServer,
    dataset: LegacyDataset,
    *,
    hub_db: str = "annuity_hub",
    enterprise_db: str = "enterprise",
) -> dict[str, int]:
    """(Re)create the legacy databases with the dataset; returns rows loaded per table."""
    admin_execute(
        server,
        f"DROP DATABASE IF EXISTS {mq(hub_db)}",
        f"DROP DATABASE IF EXISTS {mq(enterprise_db)}",
        f"CREATE DATABASE {mq(hub_db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        f"CREATE DATABASE {mq(enterprise_db)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        PLAN_DDL.format(table=f"{mq(hub_db)}.{mq('年金计划')}"),
        PORTFOLIO_DDL.format(table=f"{mq(hub_db)}.{mq('组合计划')}"),
        ORG_DDL.format(table=f"{mq(enterprise_db)}.{mq('组织架构')}"),
        f"CREATE TABLE {mq(hub_db)}.{mq(DEMO_MARKER)} (created_at DATETIME DEFAULT CURRENT_TIMESTAMP)",
        f"CREATE TABLE {mq(enterprise_db)}.{mq(DEMO_MARKER)} (created_at DATETIME DEFAULT CURRENT_TIMESTAMP)",
    )
    return {
        "年金计划": bulk_load(server, hub_db, "年金计划", PLAN_COLUMNS, dataset.plan_rows()),
        "组合计划": bulk_load(server, hub_db, "组合计划", PORTFOLIO_COLUMNS, dataset.portfolio_rows()),
        "组织架构": bulk_load(server, enterprise_db, "组织架构", ORG_COLUMNS, dataset.organizations()),
    }
