"""Hypothesis strategies for scoring inputs, kept in one place."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

from hypothesis import strategies as st

from health_score.records import AccountInput, SignalCounts
from health_score.scoring.spec import (
    CHURN_RISK,
    PLATFORM_VALUE,
    Band,
    CapRule,
    DimensionSpec,
    MetricSpec,
    ScoringConfig,
    Tier,
)

SEGMENTS = ("paid", "standard")
CHURN_DIMS = (
    "support_health",
    "financial_contract",
    "adoption_engagement",
    "relationship_expansion",
)

DEFAULT_RULES = (
    CapRule("critical_confirmed", "critical", 1, True, Decimal(50)),
    CapRule("critical_2plus", "critical", 2, False, Decimal(55)),
    CapRule("critical_1", "critical", 1, False, Decimal(65)),
    CapRule("moderate_1plus", "moderate", 1, False, Decimal(75)),
)

values = st.decimals(
    min_value=-1000, max_value=1000, places=3, allow_nan=False, allow_infinity=False
)
scores = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)


@st.composite
def bands(draw: st.DrawFn, lower_is_better: bool | None = None) -> tuple[Band, bool]:
    """Ordered thresholds for a direction (equal thresholds allowed: steps)."""
    lib = draw(st.booleans()) if lower_is_better is None else lower_is_better
    three = sorted(draw(st.lists(values, min_size=3, max_size=3)))
    low, mid, high = three
    band = Band(low, mid, high) if lib else Band(high, mid, low)
    return band, lib


@st.composite
def weight_parts(draw: st.DrawFn, n: int) -> list[Decimal]:
    """n non-negative weights that sum to exactly 1 (hundredths), at least one positive."""
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=n - 1, max_size=n - 1)))
    edges = [0, *cuts, 100]
    parts = [Decimal(edges[i + 1] - edges[i]) / 100 for i in range(n)]
    if not any(parts):
        parts[0] = Decimal(1)
    return parts


@st.composite
def scoring_configs(draw: st.DrawFn) -> ScoringConfig:
    dims: dict[str, DimensionSpec] = {}
    for dim in (*CHURN_DIMS, PLATFORM_VALUE):
        count = draw(st.integers(1, 4))
        weights = draw(weight_parts(count))
        metrics = []
        for index in range(count):
            lib = draw(st.booleans())
            seg_bands = {seg: draw(bands(lib))[0] for seg in SEGMENTS}
            metrics.append(
                MetricSpec(f"{dim}_m{index}", weights[index], lib, MappingProxyType(seg_bands))
            )
        dims[dim] = DimensionSpec(dim, tuple(metrics))
    churn = draw(weight_parts(len(CHURN_DIMS)))
    comp = draw(weight_parts(2))
    return ScoringConfig(
        component_weights=MappingProxyType({CHURN_RISK: comp[0], PLATFORM_VALUE: comp[1]}),
        churn_risk_weights=MappingProxyType(dict(zip(CHURN_DIMS, churn, strict=True))),
        dimensions=MappingProxyType(dims),
        tiers=(
            Tier("champion", "Champion", Decimal(90)),
            Tier("healthy", "Healthy", Decimal(76)),
            Tier("at_risk", "At Risk", Decimal(60)),
            Tier("critical", "Critical", Decimal(0)),
        ),
        cap_rules=DEFAULT_RULES,
        segments=frozenset(SEGMENTS),
    )


signal_counts = st.builds(
    lambda c, m, w, cc: SignalCounts(critical=c + cc, moderate=m, watch=w, critical_confirmed=cc),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 2),
)


@st.composite
def accounts_for(draw: st.DrawFn, config: ScoringConfig, *, complete: bool = False) -> AccountInput:
    metrics: dict[str, Decimal | None] = {}
    for name in config.metric_names:
        metrics[name] = draw(values) if complete else draw(st.none() | values)
    return AccountInput(
        account_id="001000000000001AAA",
        account_name="Property Test Ltd",
        segment=draw(st.sampled_from(SEGMENTS)),
        metrics=metrics,
        signals=draw(signal_counts),
    )
