"""Qualitative churn signals: ordered cap rules that can only lower a score (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from health_score.records import SignalCounts
from health_score.scoring.spec import CapRule


@dataclass(frozen=True, slots=True)
class CapDecision:
    """Which rule matched (first in order), its cap, and whether it lowered the score."""

    rule: CapRule | None
    cap: Decimal | None
    applied: bool


NO_CAP = CapDecision(None, None, False)


def matching_rule(signals: SignalCounts, rules: Sequence[CapRule]) -> CapRule | None:
    """The first rule whose condition the signals meet, or None."""
    for rule in rules:
        if signals.count(rule.severity, confirmed_only=rule.confirmed_only) >= rule.min_count:
            return rule
    return None


def apply_cap(
    score: Decimal | None, signals: SignalCounts, rules: Sequence[CapRule]
) -> tuple[Decimal | None, CapDecision]:
    """final = min(score, cap of the first matching rule); a cap never raises a score."""
    rule = matching_rule(signals, rules)
    if rule is None:
        return score, NO_CAP
    if score is None:
        return None, CapDecision(rule, rule.value, False)
    if rule.value < score:
        return rule.value, CapDecision(rule, rule.value, True)
    return score, CapDecision(rule, rule.value, False)
