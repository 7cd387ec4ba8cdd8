"""Hypothesis properties of the scoring rules (STYLE 11)."""

from __future__ import annotations

import random
from decimal import Decimal
from types import MappingProxyType

from hypothesis import given
from hypothesis import strategies as st

from health_score.records import SignalCounts
from health_score.scoring.composite import Model
from health_score.scoring.normaliser import normalise
from health_score.scoring.qualitative import apply_cap
from health_score.scoring.spec import Band, DimensionSpec, ScoringConfig
from tests.strategies import (
    DEFAULT_RULES,
    accounts_for,
    bands,
    scores,
    scoring_configs,
    signal_counts,
    values,
)


@given(st.data())
def test_every_score_is_between_0_and_100(data: st.DataObject) -> None:
    config = data.draw(scoring_configs())
    result = Model(config).score(data.draw(accounts_for(config)))
    numbers = [
        result.churn_risk,
        result.platform_value,
        result.quantitative,
        result.final,
        *result.dimensions.values(),
        *(m.score for m in result.metrics),
    ]
    for number in numbers:
        assert number is None or 0 <= number <= 100
    assert 0 <= result.coverage_pct <= 100


@given(bands(), values, values)
def test_normalisation_is_monotone_in_the_raw_value(
    band_and_direction: tuple[Band, bool], a: Decimal, b: Decimal
) -> None:
    band, lower_is_better = band_and_direction
    low, high = min(a, b), max(a, b)
    s_low, s_high = normalise(low, band, lower_is_better), normalise(high, band, lower_is_better)
    if lower_is_better:
        assert s_low >= s_high
    else:
        assert s_low <= s_high


@given(st.none() | scores, signal_counts)
def test_a_cap_never_raises_a_score(score: Decimal | None, signals: SignalCounts) -> None:
    final, _decision = apply_cap(score, signals, DEFAULT_RULES)
    if score is None:
        assert final is None
    else:
        assert final is not None and final <= score


@given(st.data())
def test_with_all_data_redistribution_equals_the_plain_weighted_sum(
    data: st.DataObject,
) -> None:
    config = data.draw(scoring_configs())
    account = data.draw(accounts_for(config, complete=True))
    result = Model(config).score(account)
    # Plain weighted sums, no redistribution: every weight group sums to exactly 1.
    dims = {}
    for name, dim in config.dimensions.items():
        plain = sum(
            (
                m.weight
                * next(
                    r.score for r in result.metrics if r.dimension == name and r.metric == m.name
                )
                for m in dim.metrics
            ),
            Decimal(0),
        )
        dims[name] = plain
        assert result.dimensions[name] == plain
    churn = sum((w * dims[d] for d, w in config.churn_risk_weights.items()), Decimal(0))
    comp = config.component_weights
    health = comp["churn_risk"] * churn + comp["platform_value"] * dims["platform_value"]
    assert result.churn_risk == churn
    assert result.quantitative == health


@given(st.data())
def test_metric_order_does_not_change_the_result(data: st.DataObject) -> None:
    config = data.draw(scoring_configs())
    account = data.draw(accounts_for(config))
    seed = data.draw(st.integers(0, 2**32))
    rng = random.Random(seed)
    shuffled = {}
    for name, dim in config.dimensions.items():
        metrics = list(dim.metrics)
        rng.shuffle(metrics)
        shuffled[name] = DimensionSpec(name, tuple(metrics))
    reordered = ScoringConfig(
        config.component_weights,
        config.churn_risk_weights,
        MappingProxyType(shuffled),
        config.tiers,
        config.cap_rules,
        config.min_coverage_pct,
        config.segments,
    )
    a, b = Model(config).score(account), Model(reordered).score(account)
    # Sums in another order may differ in the last of 28 significant digits, never more.
    tolerance = Decimal("1e-20")
    for x, y in ((a.quantitative, b.quantitative), (a.churn_risk, b.churn_risk)):
        assert (x is None and y is None) or (
            x is not None and y is not None and abs(x - y) < tolerance
        )
    assert a.tier == b.tier
    assert a.coverage_pct == b.coverage_pct or abs(a.coverage_pct - b.coverage_pct) < tolerance


@given(st.data())
def test_explanation_points_sum_to_the_score(data: st.DataObject) -> None:
    config = data.draw(scoring_configs())
    result = Model(config).score(data.draw(accounts_for(config)))
    total = sum((m.points for m in result.metrics), Decimal(0))
    if result.quantitative is None:
        assert total == 0
    else:
        assert abs(total - result.quantitative) < Decimal("1e-20")
