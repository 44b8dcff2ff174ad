"""Floating-point numbers as the decimal text PostgreSQL stores for them in a ``numeric(…, scale)`` column, written
with numpy in a fraction of the time Arrow takes to write a float's shortest text (which was most of the cost of
writing a frame as CSV: 0.8 s of CPU for the nine number columns of 1M 规模明细 rows on the benchmark machine).

A value is rounded to ``scale`` decimals half away from zero, as PostgreSQL rounds the number's shortest decimal text
(what ``repr`` and Arrow's CSV writer give) into the column; the rounding is done in floating point where it cannot
differ from the decimal one, and with ``Decimal`` for the few values too close to a half for that, or too large for a
float to hold their last decimal. Every value of an array has the same width: a sign (``-``, or ``0`` for none), the
whole part with leading zeros, a point and the decimals followed by zeros, in groups of four characters, each group
taken from a table of their texts (PostgreSQL ignores the zeros).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EXACT = 2.0**52  # below this a float's count of 10^-scale units is a whole number it holds exactly
_ERROR = 2.0**-50  # what the shortest text and the scaling may move a value by, relative to it (a few ulps)


def _groups(lead: bytes, digits: int) -> np.ndarray:
    """The four bytes ``lead`` + ``digits`` digits of each number below 10^digits, as one uint32 each."""
    texts = b"".join(lead + b"%0*d" % (digits, i) for i in range(10**digits))
    return np.frombuffer(texts, dtype=np.uint32)


_FOUR = _groups(b"", 4)
_SIGNED = np.concatenate([_groups(b"0", 3), _groups(b"-", 3)])  # a negative number's at 1000 + its digits
_POINT = _groups(b".", 3)


def fixed_point(values: pa.Array, *, scale: int) -> pa.Array:
    """The float64 array ``values`` (finite or null) as text with ``scale`` decimals, rounded as PostgreSQL rounds."""
    null = values.is_null().to_numpy(zero_copy_only=False)
    floats = pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False)
    unit = float(10**scale)
    scaled = np.abs(floats) * unit
    units = np.floor(scaled + 0.5)
    odd = np.flatnonzero((np.abs(scaled - np.floor(scaled) - 0.5) <= scaled * _ERROR) | (scaled >= _EXACT))
    units[odd] = 0.0
    negative = (floats < 0) & (units > 0)
    whole = np.floor(units / unit)
    fraction = units - whole * unit
    exact = [_rounded(float(floats[row]), scale) for row in map(int, odd)]
    if any(w >= _EXACT for w, _, _ in exact):
        whole, fraction = whole.astype(object), fraction.astype(object)  # Python ints: exact beyond 2^53
    for row, (row_whole, row_fraction, row_negative) in zip(map(int, odd), exact, strict=True):
        whole[row], fraction[row], negative[row] = row_whole, row_fraction, row_negative
    return _text(whole, fraction, negative, null, scale)


def _rounded(value: float, scale: int) -> tuple[int, int, bool]:
    """The whole part and the decimals (as a whole number) of ``value``'s shortest text rounded to ``scale`` places,
    and whether it is negative."""
    exact = Decimal(repr(value)).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    whole, fraction = divmod(int(abs(exact).scaleb(scale)), 10**scale)
    return whole, fraction, exact < 0


def _text(whole: np.ndarray, fraction: np.ndarray, negative: np.ndarray, null: np.ndarray, scale: int) -> pa.Array:
    count = len(whole)
    whole_groups = max(1, (len(str(int(whole.max()) if count else 0)) + 4) // 4)  # the first holds the sign
    fraction_groups = (scale + 4) // 4 if scale else 0  # the first holds the point
    text = np.empty((count, whole_groups + fraction_groups), dtype=np.uint32)
    for group in range(whole_groups - 1, 0, -1):
        whole, digits = _divmod(whole, 10_000)
        text[:, group] = _FOUR[digits]
    text[:, 0] = _SIGNED[whole.astype(np.int64) + 1000 * negative]
    if fraction_groups:
        fraction = fraction * 10 ** (4 * fraction_groups - 1 - scale)
        for group in range(whole_groups + fraction_groups - 1, whole_groups, -1):
            fraction, digits = _divmod(fraction, 10_000)
            text[:, group] = _FOUR[digits]
        text[:, whole_groups] = _POINT[fraction.astype(np.int64)]
    width = 4 * text.shape[1]
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    nulls = int(null.sum())
    validity = pa.array(~null).buffers()[1] if nulls else None
    return pa.Array.from_buffers(
        pa.string(), count, [validity, pa.py_buffer(offsets), pa.py_buffer(text)], null_count=nulls
    )


def _divmod(values: np.ndarray, by: int) -> tuple[np.ndarray, np.ndarray]:
    """Quotient and remainder of whole numbers held as floats (exact below 2^52) or as Python ints."""
    if values.dtype == object:
        return values // by, (values % by).astype(np.int64)
    quotient = np.floor(values / by)
    return quotient, (values - quotient * by).astype(np.int64)
