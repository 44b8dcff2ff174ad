"""Reference integrity checks (seed phase 1, last step), shared by the preload and ``check_references``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection
from psycopg import sql

from refgov.db.sql import ident

from .models import Source
from .registry import all_tables, get_table, tracking_column

SAMPLE_LIMIT = 20


@dataclass
class Violation:
    table: str
    check: str
    count: int
    samples: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.table}: {self.check}: {self.count} (e.g. {', '.join(self.samples[:5])})"


@dataclass
class IntegrityReport:
    checked: list[str]
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "violations": [asdict(v) for v in self.violations]}


def _count_and_samples(from_where: sql.Composable, key: sql.Composable, params: list[Any]) -> tuple[int, list[str]]:
    with connection.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) {}").format(from_where), params)
        count = cur.fetchone()[0]
        samples: list[str] = []
        if count:
            cur.execute(sql.SQL("SELECT {} {} ORDER BY 1 LIMIT %s").format(key, from_where), [*params, SAMPLE_LIMIT])
            samples = [str(r[0]) for r in cur.fetchall()]
    return count, samples


def _validated_constraint(table: str, column: str, parent: str) -> str | None:
    """Name of a validated foreign-key constraint table(column) → parent, if PostgreSQL enforces one."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT c.conname FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.contype = 'f' AND c.convalidated
              AND c.conrelid = quote_ident(%s)::regclass AND c.confrelid = quote_ident(%s)::regclass
              AND a.attname = %s AND array_length(c.conkey, 1) = 1
            """,
            [table, parent, column],
        )
        row = cur.fetchone()
    return row[0] if row else None


def check_reference_integrity(*, trust_constraints: bool = False) -> IntegrityReport:
    """Every reference foreign key resolves, and auto-derived rows carry their provenance columns.

    With ``trust_constraints`` a relation covered by a validated PostgreSQL foreign key is reported as guaranteed
    by it instead of being scanned (the preload uses this right after validating those constraints itself)."""
    checked: list[str] = []
    violations: list[Violation] = []
    for table in all_tables():
        key = ident(table.key_column)
        for column, parent_name in table.parents.items():
            parent = get_table(parent_name)
            name = f"{column} → {parent.name}.{parent.key_column}"
            constraint = _validated_constraint(table.name, column, parent.name) if trust_constraints else None
            if constraint:
                checked.append(f"{table.name}: {name} (guaranteed by validated constraint {constraint})")
                continue
            checked.append(f"{table.name}: {name}")
            count, samples = _count_and_samples(
                sql.SQL(
                    "FROM {table} c WHERE c.{column} IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM {parent} p WHERE p.{parent_key} = c.{column})"
                ).format(
                    table=ident(table.name),
                    column=ident(column),
                    parent=ident(parent.name),
                    parent_key=ident(parent.key_column),
                ),
                sql.SQL("c.{} || ' → ' || c.{}").format(key, ident(column)),
                [],
            )
            if count:
                violations.append(Violation(table.name, f"orphan {name}", count, samples))
        checked.append(f"{table.name}: auto-derived provenance")
        count, samples = _count_and_samples(
            sql.SQL("FROM {table} WHERE {source} = %s AND ({derived_at} IS NULL OR {domain} IS NULL)").format(
                table=ident(table.name),
                source=ident(tracking_column("source")),
                derived_at=ident(tracking_column("derived_at")),
                domain=ident(tracking_column("derived_from_domain")),
            ),
            key,
            [Source.AUTO_DERIVED.value],
        )
        if count:
            violations.append(
                Violation(table.name, "auto-derived row without _derived_at/_derived_from_domain", count, samples)
            )
    return IntegrityReport(checked=checked, violations=violations)
