"""The stand-ins' own arithmetic for the metrics they expect: exact fractions, one rounding rule.

Expected metrics are the sandbox's ground truth, so they are computed here from the generated
records with nothing but exact rational arithmetic, then rounded once by the published rule:
**half-up (ties away from zero) to 4 decimal places, trailing zeros stripped** (``0.78125`` →
``0.7813``, ``2.50000`` → ``2.5``, ``100.0000`` → ``100``). This is written independently of the
pipeline on purpose: a change to the pipeline's rounding must show up as a mismatch.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

#: Decimal places of every derived metric (medians, rates, ratios).
PLACES = 4

#: An expected raw metric: an exact decimal, or None when the records give no value.
Metric = Decimal | None


def exact(value: Fraction | Decimal | int | float) -> Fraction:
    """``value`` as an exact fraction (a float by its shortest repr, as JSON shows it)."""
    if isinstance(value, float):
        return Fraction(Decimal(repr(value)))
    return Fraction(value)


def rounded(value: Fraction | Decimal | int | float, places: int = PLACES) -> Decimal:
    """``value`` rounded half-up (ties away from zero) to ``places``, trailing zeros stripped."""
    number = exact(value)
    units = math.floor(abs(number) * 10**places + Fraction(1, 2))
    if units == 0:
        return Decimal(0)
    digits = str(units).rjust(places + 1, "0")
    text = digits if places == 0 else f"{digits[:-places]}.{digits[-places:]}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return Decimal(("-" if number < 0 else "") + text)


def median(values: list[int]) -> Fraction:
    """The median of a non-empty list (the mean of the middle two for an even count)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Fraction(ordered[middle])
    return Fraction(ordered[middle - 1] + ordered[middle], 2)


def percent(part: int, whole: int) -> Metric:
    """``100 × part / whole`` rounded, or None for an empty whole."""
    return rounded(Fraction(100 * part, whole)) if whole else None
