"""Named derivation functions a domain config may use with ``rule: function`` (never ``eval`` of config text).

A function receives the values of one fact column for one new key, in file order (blanks removed), and returns the
value of the reference column."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

DerivationFunction = Callable[[Sequence[Any]], Any]
FUNCTIONS: dict[str, DerivationFunction] = {}


def derivation_function(name: str) -> Callable[[DerivationFunction], DerivationFunction]:
    def register(function: DerivationFunction) -> DerivationFunction:
        FUNCTIONS[name] = function
        return function

    return register


@derivation_function("most_frequent")
def most_frequent(values: Sequence[Any]) -> Any:
    """The value seen most often; ties go to the one seen first."""
    if not values:
        return None
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


@derivation_function("last")
def last(values: Sequence[Any]) -> Any:
    return values[-1] if values else None


@derivation_function("longest")
def longest(values: Sequence[Any]) -> Any:
    """The longest text (a full name over its abbreviations); ties go to the one seen first."""
    return max(values, key=lambda v: len(str(v)), default=None)
