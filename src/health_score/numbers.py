"""The one way vendor values, YAML scalars and CSV cells become exact numbers.

Numbers are read from the literal as written (``"0.1"`` is exactly one tenth) and floats by their
shortest repr, never through binary floating point; a bool is not a number; NaN and infinities
are not values. This module imports nothing from the package, so every layer may use it.

Input files (the raw-metrics file) also bound what a number may be: :func:`bounds_problem`
refuses magnitudes of 10^15 and more and literals of more than 30 significant digits, which no
metric has and which would only slow the exact arithmetic down or lose digits in float64.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction


def parse_decimal(text: str) -> Decimal | None:
    """The Decimal a numeric literal spells (NaN and infinities included), or None if none.

    Surrounding whitespace and ``_`` digit separators are accepted, as ``Decimal`` does.
    """
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


#: A value must be smaller than this in magnitude (no metric comes near it: ARR in cents of a
#: very large contract is still below 10^13).
MAX_MAGNITUDE = Decimal("1e15")
#: The most significant digits a literal may spell (as written: ``1.50`` has three).
MAX_SIGNIFICANT_DIGITS = 30
#: What a bounded number is, for messages.
BOUNDS_EXPECTED = (
    f"a finite number with at most {MAX_SIGNIFICANT_DIGITS} significant digits, "
    "below 1e15 in magnitude"
)


def bounds_problem(value: Decimal) -> str | None:
    """Why ``value`` (as parsed by :func:`parse_decimal`) is out of bounds, or None if it is in."""
    if not value.is_finite():
        return "not a finite number"
    digits = len(value.as_tuple().digits)
    if digits > MAX_SIGNIFICANT_DIGITS:
        return f"{digits} significant digits"
    if abs(value) >= MAX_MAGNITUDE:
        return "1e15 or more in magnitude"
    return None


def to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON/YAML/CSV scalar, or None if it is not a finite number.

    Ints are exact, floats go through their shortest repr, strings are read as written; bools,
    containers and other objects are not numbers.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = parse_decimal(repr(value))
    elif isinstance(value, str):
        number = parse_decimal(value.strip())
    else:
        return None
    return number if number is not None and number.is_finite() else None


def to_fraction(value: object) -> Fraction | None:
    """:func:`to_decimal` as an exact Fraction (for arithmetic that must not round)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Fraction(value)
    number = to_decimal(value)
    return None if number is None else Fraction(number)
