"""Raw value → 0–100 through a metric's green / yellow / red thresholds (DESIGN §3)."""

from __future__ import annotations

from decimal import Decimal

from health_score.scoring.spec import Band

HUNDRED = Decimal(100)
FIFTY = Decimal(50)
ZERO = Decimal(0)


def normalise(value: Decimal, band: Band, lower_is_better: bool) -> Decimal:
    """Piecewise linear: at or beyond green → 100, at yellow → 50, at or beyond red → 0.

    "At or beyond green" is checked first, then "at or beyond red", so equal thresholds act as
    steps and never divide by zero.
    """
    green, yellow, red = band.green, band.yellow, band.red
    if lower_is_better:
        if value <= green:
            return HUNDRED
        if value >= red:
            return ZERO
        if value <= yellow:  # green < value <= yellow, so yellow > green
            return HUNDRED - FIFTY * (value - green) / (yellow - green)
        return FIFTY - FIFTY * (value - yellow) / (red - yellow)
    if value >= green:
        return HUNDRED
    if value <= red:
        return ZERO
    if value >= yellow:
        return HUNDRED - FIFTY * (green - value) / (green - yellow)
    return FIFTY - FIFTY * (yellow - value) / (yellow - red)
