"""Qualitative churn signals: ordered cap rules that can only lower a score (DESIGN §3)."""

from __future__ import annotations

import re
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


_CAP_WORD = re.compile(r"\bcap(?:s|ped|ping)?\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?")


def cap_text(value: Decimal) -> str:
    """A cap as people write it: ``65``, ``62.5`` (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")


def _mentions_cap(description: str, value: Decimal) -> bool:
    """The description names the cap: a word ``cap``/``caps``/``capped`` followed, anywhere later,
    by a number equal to the cap."""
    word = _CAP_WORD.search(description)
    if word is None:
        return False
    return any(Decimal(n) == value for n in _NUMBER.findall(description, word.end()))


def condition_in_words(rule: CapRule) -> str:
    """A rule's condition in words: ``1 Critical signal``, ``2+ Moderate signals``,
    ``Confirmed Critical signal``, ``3+ Confirmed Critical signals``.

    A count of 1 means "1 or more" (as ``critical_1`` does in the original configuration)."""
    kind = rule.severity.capitalize()
    if rule.confirmed_only:
        kind = f"Confirmed {kind}"
    if rule.min_count == 1:
        return f"{kind} signal" if rule.confirmed_only else f"1 {kind} signal"
    return f"{rule.min_count}+ {kind} signals"


def rule_in_words(rule: CapRule) -> str:
    """The rule as the original system's ``modifier_applied`` showed it, e.g.
    ``1 Critical signal → cap at 65``.

    The rule's ``description`` from the thresholds config when it has one (with ``→ cap at V``
    appended unless it already names the cap), else words generated from its condition."""
    cap = f"cap at {cap_text(rule.value)}"
    description = " ".join(rule.description.split())
    if not description:
        return f"{condition_in_words(rule)} → {cap}"
    if _mentions_cap(description, rule.value):
        return description
    return f"{description} → {cap}"
