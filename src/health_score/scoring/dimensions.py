"""Weighted means with proportional redistribution of missing weight (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

ZERO = Decimal(0)


def weighted_mean(parts: Iterable[tuple[Decimal, Decimal | None]]) -> Decimal | None:
    """Mean of the scores that exist, weighted by their weights renormalised to sum to 1.

    ``parts`` are (weight, score) pairs; a None score is missing data and its weight is shared out
    among the others in proportion. With no scored part carrying weight, the result is None.
    """
    total_weight = ZERO
    total = ZERO
    for weight, score in parts:
        if score is None:
            continue
        total_weight += weight
        total += weight * score
    if total_weight == 0:
        return None
    return total / total_weight


def present_weight(parts: Iterable[tuple[Decimal, Decimal | None]]) -> Decimal:
    """The sum of the weights whose score exists (the denominator of :func:`weighted_mean`)."""
    return sum((w for w, s in parts if s is not None), ZERO)
