"""The stand-ins' own rounding (their ground truth) pinned by hand-computed literals."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from health_score_sandbox.truth import exact, median, percent, rounded


@pytest.mark.parametrize(
    ("value", "published"),
    [
        (Fraction(100 * 32, 4096), "0.7813"),  # 0.78125: half-up, not half-even's 0.7812
        (Fraction(1804 + 1805, 2 * 3600), "0.5013"),  # 0.50125 h
        (Fraction(33, 32), "1.0313"),  # 1.03125
        (Decimal("2.00005"), "2.0001"),
        (Fraction(-25 * 100, 2_000_000), "-0.0013"),  # ties go away from zero
        (87.12345, "87.1235"),  # a float by its shortest repr
        (Fraction(600 + 601, 2 * 60), "10.0083"),  # 10.008333…
        (Fraction(1, 3), "0.3333"),
        (Fraction(2, 3), "0.6667"),
        (Decimal("100.00000"), "100"),  # trailing zeros stripped
        (Fraction(5, 2), "2.5"),
        (Fraction(49, 1_000_000), "0"),
        (Fraction(-49, 1_000_000), "0"),  # no negative zero
        (12, "12"),
    ],
)
def test_rounded_is_half_up_at_4_places_without_trailing_zeros(
    value: Fraction | Decimal | float | int, published: str
) -> None:
    result = rounded(value)
    assert str(result) == published
    assert result == Decimal(published)


def test_other_places_and_helpers() -> None:
    assert str(rounded(Fraction(78125, 100_000), places=2)) == "0.78"
    assert str(rounded(Fraction(5, 2), places=0)) == "3"
    assert str(rounded(Fraction(-5, 2), places=0)) == "-3"
    assert median([3, 1, 2]) == 2
    assert median([1804, 1805]) == Fraction(3609, 2)
    assert percent(1, 128) == Decimal("0.7813")
    assert percent(3, 0) is None
    assert exact(0.1) == Fraction(1, 10)
