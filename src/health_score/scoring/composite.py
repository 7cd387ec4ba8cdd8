"""Metrics → dimensions → Churn Risk and Platform Value → Health Score, cap, tier (DESIGN §3).

Pure: no I/O, no clock, no environment. Exact ``Decimal`` arithmetic throughout; only published
numbers are rounded (half-up, one decimal). Every account's result carries its explanation: each
metric's raw value, thresholds, normalised score, effective weight within the Health Score and the
points it contributes — the points add up to the quantitative score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from health_score.records import AccountInput, SignalCounts
from health_score.scoring.dimensions import present_weight, weighted_mean
from health_score.scoring.normaliser import normalise
from health_score.scoring.qualitative import CapDecision, apply_cap
from health_score.scoring.spec import (
    CHURN_RISK,
    INSUFFICIENT_DATA,
    PLATFORM_VALUE,
    Band,
    ScoringConfig,
    Tier,
)

ZERO = Decimal(0)
HUNDRED = Decimal(100)
ONE_DECIMAL = Decimal("0.1")

SCORED = "scored"
MISSING = "missing"
UNAVAILABLE = "unavailable"


def publish(value: Decimal | None) -> Decimal | None:
    """Round half-up to one decimal from the exact value (65.35 → 65.4)."""
    if value is None:
        return None
    return value.quantize(ONE_DECIMAL, rounding=ROUND_HALF_UP)


class MetricResult(NamedTuple):
    """One metric of one account, with everything needed to explain its part of the score.

    A NamedTuple rather than a frozen dataclass: a run builds one per metric per account, and
    frozen dataclasses are several times slower to construct.
    """

    dimension: str
    metric: str
    raw: Decimal | None
    status: str  # scored | missing | unavailable
    band: Band | None
    lower_is_better: bool
    score: Decimal | None
    weight: Decimal  # as configured inside its dimension
    effective_weight: Decimal  # share of the Health Score after redistribution (0 if unscored)
    points: Decimal  # effective_weight × score


@dataclass(frozen=True, slots=True)
class AccountScore:
    """The scored account: exact values, the published ones, the cap, the tier and the parts."""

    account_id: str
    account_name: str
    segment: str
    dimensions: Mapping[str, Decimal | None]  # includes platform_value
    churn_risk: Decimal | None
    platform_value: Decimal | None
    quantitative: Decimal | None
    final: Decimal | None
    tier: str
    coverage_pct: Decimal  # share of the model's weight backed by data, 0–100, exact
    cap: CapDecision
    signals: SignalCounts
    metrics: tuple[MetricResult, ...]
    #: Coverage below the floor (``min_coverage_pct``): the tier is Insufficient Data unless a
    #: cap rule matched, which then decides the tier (see :func:`tier_for`).
    low_coverage: bool = False

    @property
    def final_published(self) -> Decimal | None:
        return publish(self.final)


def tier_for(
    final: Decimal | None,
    coverage_pct: Decimal,
    config: ScoringConfig,
    cap: CapDecision | None = None,
) -> str:
    """Tier of the published final score; below the coverage floor, Insufficient Data.

    A matching churn-signal cap rule overrides the floor (DESIGN §3): the tier is that of the
    capped final score, or of the cap itself for an account with no score, so a confirmed
    Critical account is never hidden behind thin data.
    """
    published = publish(final)
    thin = published is None or coverage_pct < config.min_coverage_pct
    if thin and cap is not None and cap.cap is not None:
        # The final score is already min(quantitative, cap); with no score, the cap stands in.
        shown = publish(cap.cap) if published is None else published
        assert shown is not None
        return tier_of_published(shown, config.tiers)
    if thin or published is None:
        return INSUFFICIENT_DATA
    return tier_of_published(published, config.tiers)


def tier_of_published(published: Decimal, tiers: Iterable[Tier]) -> str:
    """Tiers are highest-min first; each min is an inclusive lower bound."""
    for tier in tiers:
        if published >= tier.min:
            return tier.label
    return INSUFFICIENT_DATA  # unreachable with a validated config (a tier starts at 0)


@dataclass(frozen=True, slots=True)
class _Metric:
    name: str
    weight: Decimal
    lower_is_better: bool
    bands: Mapping[str, Band]


@dataclass(frozen=True, slots=True)
class _Dimension:
    name: str
    component: str  # churn_risk or platform_value
    weight: Decimal  # within its component (1 for platform_value)
    metrics: tuple[_Metric, ...]
    model_share: Decimal  # dimension weight × component weight: a metric weight's share of all


@dataclass(frozen=True, slots=True)
class CompactScore:
    """An account's scores without explanation objects: the fast path for big runs.

    ``metric_scores`` and ``multipliers`` follow :attr:`Model.dimensions` (and each dimension's
    metrics): a metric's effective weight is its weight × its dimension's multiplier.
    """

    score: AccountScore  # with metrics=()
    metric_scores: tuple[tuple[Decimal | None, ...], ...]
    multipliers: tuple[Decimal, ...]


class Model:
    """A scoring config compiled once for scoring many accounts."""

    def __init__(self, config: ScoringConfig) -> None:
        self.config = config
        comp = config.component_weights
        dims: list[_Dimension] = []
        for name, spec in config.dimensions.items():
            if name == PLATFORM_VALUE:
                component, dim_weight = PLATFORM_VALUE, Decimal(1)
            else:
                component, dim_weight = CHURN_RISK, config.churn_risk_weights.get(name, ZERO)
            metrics = tuple(
                _Metric(m.name, m.weight, m.lower_is_better, m.bands) for m in spec.metrics
            )
            share = dim_weight * comp.get(component, ZERO)
            dims.append(_Dimension(name, component, dim_weight, metrics, share))
        self.dimensions = tuple(dims)
        self.total_model_weight = sum(
            (m.weight * d.model_share for d in dims for m in d.metrics), ZERO
        )

    def score(self, account: AccountInput) -> AccountScore:
        """Score one account, with the full per-metric explanation."""
        compact = self.score_compact(account)
        return dataclasses.replace(compact.score, metrics=self.explain(account, compact))

    def score_compact(self, account: AccountInput) -> CompactScore:
        """Score one account; per-metric results stay plain tuples (the fast path for big runs).

        ``score.metrics`` is empty; :meth:`explain` turns the tuples into :class:`MetricResult`.
        """
        config = self.config
        values = account.metrics
        segment = account.segment
        dim_scores: dict[str, Decimal | None] = {}
        dim_present: list[Decimal] = []
        metric_scores: list[tuple[Decimal | None, ...]] = []
        backed = ZERO
        for dim in self.dimensions:
            total = ZERO
            present = ZERO
            scores: list[Decimal | None] = []
            for metric in dim.metrics:
                raw = values.get(metric.name)
                if raw is None:
                    scores.append(None)
                    continue
                score = normalise(raw, metric.bands[segment], metric.lower_is_better)
                scores.append(score)
                total += metric.weight * score
                present += metric.weight
            # Coverage: the weight backed by data, through every level (metric × dim × component).
            backed += present * dim.model_share
            dim_present.append(present)
            metric_scores.append(tuple(scores))
            dim_scores[dim.name] = total / present if present else None

        churn_parts = [
            (d.weight, dim_scores[d.name]) for d in self.dimensions if d.component == CHURN_RISK
        ]
        churn_present = present_weight(churn_parts)
        churn_risk = weighted_mean(churn_parts)
        platform_value = dim_scores.get(PLATFORM_VALUE)
        comp = config.component_weights
        components = {CHURN_RISK: churn_risk, PLATFORM_VALUE: platform_value}
        comp_parts = [(comp.get(k, ZERO), v) for k, v in components.items()]
        comp_present = present_weight(comp_parts)
        quantitative = weighted_mean(comp_parts)

        # Each metric's share of the Health Score is its weight × its dimension's multiplier:
        # 1 / (dimension's present weight) × the dimension's share of its component × the
        # component's share of the Health Score. One division per dimension, none per metric.
        multipliers: list[Decimal] = []
        for dim, dim_total in zip(self.dimensions, dim_present, strict=True):
            if not dim_total or not comp_present or components[dim.component] is None:
                multipliers.append(ZERO)
                continue
            numerator = comp.get(dim.component, ZERO)
            denominator = dim_total * comp_present
            if dim.component == CHURN_RISK:
                numerator *= dim.weight
                denominator *= churn_present
            multipliers.append(numerator / denominator)

        final, cap = apply_cap(quantitative, account.signals, config.cap_rules)
        coverage = HUNDRED * backed / self.total_model_weight if self.total_model_weight else ZERO
        result = AccountScore(
            account_id=account.account_id,
            account_name=account.account_name,
            segment=segment,
            dimensions=dim_scores,
            churn_risk=churn_risk,
            platform_value=platform_value,
            quantitative=quantitative,
            final=final,
            tier=tier_for(final, coverage, config, cap),
            coverage_pct=coverage,
            cap=cap,
            signals=account.signals,
            metrics=(),
            low_coverage=coverage < config.min_coverage_pct,
        )
        return CompactScore(result, tuple(metric_scores), tuple(multipliers))

    def explain(self, account: AccountInput, compact: CompactScore) -> tuple[MetricResult, ...]:
        """Every metric's raw value, thresholds, score, effective weight and points."""
        values = account.metrics
        segment = account.segment
        results: list[MetricResult] = []
        for dim, scores, multiplier in zip(
            self.dimensions, compact.metric_scores, compact.multipliers, strict=True
        ):
            for metric, metric_score in zip(dim.metrics, scores, strict=True):
                if metric_score is None:
                    status = UNAVAILABLE if metric.name in account.unavailable else MISSING
                    effective = points = ZERO
                else:
                    status = SCORED
                    effective = metric.weight * multiplier
                    points = effective * metric_score
                results.append(
                    MetricResult(
                        dim.name,
                        metric.name,
                        values.get(metric.name),
                        status,
                        metric.bands.get(segment),
                        metric.lower_is_better,
                        metric_score,
                        metric.weight,
                        effective,
                        points,
                    )
                )
        return tuple(results)


def score_account(account: AccountInput, config: ScoringConfig) -> AccountScore:
    """Score one account (compiles the config; use :func:`score_accounts` for many)."""
    return Model(config).score(account)


def score_accounts(accounts: Iterable[AccountInput], config: ScoringConfig) -> list[AccountScore]:
    model = Model(config)
    return [model.score(a) for a in accounts]


def churn_risk_score(
    dimension_scores: Mapping[str, Decimal | None], config: ScoringConfig
) -> Decimal | None:
    """Churn Risk from dimension scores: weighted mean with proportional redistribution."""
    return weighted_mean(
        (w, dimension_scores.get(name)) for name, w in config.churn_risk_weights.items()
    )


def health_score(
    churn_risk: Decimal | None, platform_value: Decimal | None, config: ScoringConfig
) -> Decimal | None:
    """Health Score from Churn Risk and Platform Value, redistributing a missing one's weight."""
    comp = config.component_weights
    return weighted_mean(
        [(comp.get(CHURN_RISK, ZERO), churn_risk), (comp.get(PLATFORM_VALUE, ZERO), platform_value)]
    )
