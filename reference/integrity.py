"""Reference integrity checks (seed phase 1, last step), shared by the preload and ``check_references``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.db import connection

from refgov.identifiers import quote_pg as q

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


def check_reference_integrity() -> IntegrityReport:
    """Every reference foreign key resolves, and auto-derived rows carry their provenance columns."""
    checked, violations = [], []
    for table in all_tables():
        key = q(table.key_column)
        for column, parent_name in table.parents.items():
            parent = get_table(parent_name)
            name = f"{column} → {parent.name}.{parent.key_column}"
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
            violations.append(Violation(table.name, "auto-derived row without _derived_at/_derived_from_domain", count, samples))
    return IntegrityReport(checked=checked, violations=violations)
