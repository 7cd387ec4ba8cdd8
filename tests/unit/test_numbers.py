"""One number parser: vendor JSON, YAML scalars and CSV cells read exactly, the same way."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from health_score.numbers import bounds_problem, parse_decimal, to_decimal, to_fraction


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, Decimal(0)),
        (12, Decimal(12)),
        (0.1, Decimal("0.1")),  # the shortest repr, not 0.1000000000000000055…
        (1e-7, Decimal("1E-7")),
        ("2.50", Decimal("2.50")),
        (" 3 ", Decimal(3)),
        ("1_000", Decimal(1000)),
        ("-0.5", Decimal("-0.5")),
        (Decimal("7.25"), Decimal("7.25")),
    ],
)
def test_numbers_are_read_exactly(value: object, expected: Decimal) -> None:
    found = to_decimal(value)
    assert found == expected
    assert str(found) == str(expected)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "abc",
        "1,5",
        float("nan"),
        float("inf"),
        "NaN",
        "-Infinity",
        Decimal("NaN"),
        Decimal("Infinity"),
        [1],
        {"a": 1},
    ],
)
def test_what_is_not_a_finite_number_is_none(value: object) -> None:
    assert to_decimal(value) is None
    assert to_fraction(value) is None


def test_fractions_are_exact() -> None:
    assert to_fraction(3) == Fraction(3)
    assert to_fraction("0.1") == Fraction(1, 10)
    assert to_fraction(0.1) == Fraction(1, 10)
    assert to_fraction(2**70) == Fraction(2**70)


def test_parse_decimal_keeps_nan_and_infinity_for_callers_that_tell_them_apart() -> None:
    nan = parse_decimal("nan")
    assert nan is not None and nan.is_nan()
    assert parse_decimal("-inf") == Decimal("-Infinity")
    assert parse_decimal("1.5") == Decimal("1.5")
    assert parse_decimal("n/a") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1e15", "1e15 or more in magnitude"),
        ("-1e15", "1e15 or more in magnitude"),
        ("1E+999", "1e15 or more in magnitude"),
        ("1234567890123456789012345678901", "31 significant digits"),
        ("-0.1234567890123456789012345678901", "31 significant digits"),
        ("1.000000000000000000000000000000", "31 significant digits"),  # as written
        ("nan", "not a finite number"),
        ("-inf", "not a finite number"),
    ],
)
def test_numbers_out_of_bounds_say_why(text: str, problem: str) -> None:
    value = parse_decimal(text)
    assert value is not None
    assert bounds_problem(value) == problem


@pytest.mark.parametrize(
    "text",
    ["999999999999999", "-999999999999999.9", "123456789012345678901234567890e-20", "1e-40", "0"],
)
def test_numbers_within_bounds_pass(text: str) -> None:
    value = parse_decimal(text)
    assert value is not None
    assert bounds_problem(value) is None
