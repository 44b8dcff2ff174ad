"""Reference integrity checks (seed phase 1, last step), shared by the preload and ``check_references``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.db import connection

from refgov.db.identifiers import quote_pg as q

from .models import Source
from .registry import all_tables, get_table

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

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "violations": [asdict(v) for v in self.violations]}


def _count_and_samples(from_where: str, key: str) -> tuple[int, list[str]]:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) {from_where}")
        count = cur.fetchone()[0]
        samples: list[str] = []
        if count:
            cur.execute(f"SELECT {key} {from_where} ORDER BY 1 LIMIT {SAMPLE_LIMIT}")
            samples = [str(r[0]) for r in cur.fetchall()]
    return count, samples


def _validated_constraint(table: str, column: str, parent: str) -> str | None:
    """Name of a validated foreign-key constraint table(column) → parent, if PostgreSQL enforces one."""
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT c.conname FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.contype = 'f' AND c.convalidated AND c.conrelid = %s::regclass AND c.confrelid = %s::regclass
              AND a.attname = %s AND array_length(c.conkey, 1) = 1
            """,
            [q(table), q(parent), column],
        )
        row = cur.fetchone()
    return row[0] if row else None


def check_reference_integrity(*, trust_constraints: bool = False) -> IntegrityReport:
    """Every reference foreign key resolves, and auto-derived rows carry their provenance columns.

    With ``trust_constraints`` a relation covered by a validated PostgreSQL foreign key is reported as guaranteed
    by it instead of being scanned (the preload uses this right after validating those constraints itself)."""
    checked, violations = [], []
    for table in all_tables():
        key = q(table.key_column)
        for column, parent_name in table.parents.items():
            parent = get_table(parent_name)
            name = f"{column} → {parent.name}.{parent.key_column}"
            constraint = _validated_constraint(table.name, column, parent.name) if trust_constraints else None
            if constraint:
                checked.append(f"{table.name}: {name} (guaranteed by validated constraint {constraint})")
                continue
            checked.append(f"{table.name}: {name}")
            count, samples = _count_and_samples(
                f"FROM {q(table.name)} c WHERE c.{q(column)} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {q(parent.name)} p WHERE p.{q(parent.key_column)} = c.{q(column)})",
                f"c.{key} || ' → ' || c.{q(column)}",
            )
            if count:
                violations.append(Violation(table.name, f"orphan {name}", count, samples))
        checked.append(f"{table.name}: auto-derived provenance")
        count, samples = _count_and_samples(
            f"FROM {q(table.name)} WHERE _source = '{Source.AUTO_DERIVED.value}' "
            f"AND (_derived_at IS NULL OR _derived_from_domain IS NULL)",
            key,
        )
        if count:
            violations.append(
                Violation(table.name, "auto-derived row without _derived_at/_derived_from_domain", count, samples)
            )
    return IntegrityReport(checked=checked, violations=violations)
