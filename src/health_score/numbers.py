"""The one way vendor values, YAML scalars and CSV cells become exact numbers.

Numbers are read from the literal as written (``"0.1"`` is exactly one tenth) and floats by their
shortest repr, never through binary floating point; a bool is not a number; NaN and infinities
are not values. This module imports nothing from the package, so every layer may use it.
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
