"""``decimal_text.fixed_point`` writes what PostgreSQL stores for a float's shortest text in a numeric column."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from django.db import connection

from pipeline.facts.decimal_text import fixed_point

pytestmark = pytest.mark.django_db

# Halves in decimal that a float holds a little above or below, -0.0, a negative that rounds to zero, values whose
# cents a float cannot hold (beyond 2^52 units), the smallest and largest magnitudes a column takes.
EDGES = [1.005, 2.675, 0.125, 0.005, -0.005, -1.005, 1e13 + 0.005, 123456789012.345, 0.0, -0.0, -0.001, 5e13 + 0.125]
EDGES += [9.99e17, -9.99e17, 0.015, 1.115, 8.325, 1e-300, -1e-20, 0.5, -0.5, 9999.995, 99999999.995, 4503599627370.495]


def values(scale: int, whole_digits: int, rows: int = 40_000) -> np.ndarray:
    """Money with cents, random magnitudes with every digit, fractions below one, thousandths (halves at two
    places), the edges; 5% missing; all inside the column's range."""
    rng = np.random.default_rng(scale)
    mixed = np.concatenate(
        [
            np.round(rng.random(rows) * 1e7, 2),
            rng.normal(0, 1e6, rows),
            rng.random(rows) / 7,
            rng.integers(-(10**6), 10**6, rows) / 1000,
            np.array(EDGES),
        ]
    )
    mixed[rng.random(len(mixed)) < 0.05] = np.nan
    return np.where(np.abs(mixed) < 10**whole_digits * 0.999, mixed, np.nan)


def stored(column: pa.Array, *, precision: int, scale: int) -> list[tuple[int, object, object]]:
    """Rows (position, what PostgreSQL stored for the fixed-point text, for Arrow's shortest text) that differ."""
    table = pa.table({"r": pa.array(np.arange(len(column), dtype=np.int32)), "a": fixed_point(column, scale=scale)})
    table = table.append_column("b", column)
    text = io.BytesIO()
    pacsv.write_csv(table, text, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    with connection.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE numbers (r int, a numeric({precision}, {scale}), b numeric({precision}, {scale}))"
        )
        with cur.connection.cursor() as raw, raw.copy("COPY numbers FROM STDIN (FORMAT csv)") as copy:
            copy.write(text.getvalue())
        cur.execute("SELECT r, a, b FROM numbers WHERE a IS DISTINCT FROM b ORDER BY r LIMIT 5")
        differ = cur.fetchall()
        cur.execute("SELECT count(*), count(a) FROM numbers")
        assert cur.fetchone() == (len(column), len(column) - column.null_count)
        cur.execute("DROP TABLE numbers")
    return differ


@pytest.mark.parametrize(("precision", "scale"), [(20, 2), (20, 10), (12, 0), (20, 5), (18, 4)])
def test_every_value_is_stored_as_postgresql_stores_its_shortest_text(precision, scale):
    column = pa.array(values(scale, precision - scale), from_pandas=True)

    assert stored(column, precision=precision, scale=scale) == []


def test_the_text_is_fixed_width_with_the_sign_first_and_nulls_stay_null():
    text = fixed_point(pa.array([1.005, None, -0.001, -2.5, 12345.0]), scale=2)

    assert text.to_pylist() == ["00000001.010", None, "00000000.000", "-0000002.500", "00012345.000"]
