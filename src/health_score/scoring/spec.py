"""The scoring model's configuration types: what the pure scoring functions are given.

Scoring owns these; :mod:`health_score.config` builds them from ``weights.yaml`` and
``thresholds.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

CHURN_RISK = "churn_risk"
PLATFORM_VALUE = "platform_value"
DEFAULT_MIN_COVERAGE_PCT = Decimal(50)
INSUFFICIENT_DATA = "Insufficient Data"
#: The default config's tier labels, best first: the fallback where a run's config is unreadable.
DEFAULT_TIER_LABELS = ("Champion", "Healthy", "At Risk", "Critical")


@dataclass(frozen=True, slots=True)
class Band:
    """One segment's thresholds for a metric."""

    green: Decimal
    yellow: Decimal
    red: Decimal


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric inside a dimension: its weight there, direction and per-segment thresholds."""

    name: str
    weight: Decimal
    lower_is_better: bool
    bands: Mapping[str, Band]
    description: str = ""


@dataclass(frozen=True, slots=True)
class DimensionSpec:
    name: str
    metrics: tuple[MetricSpec, ...]


@dataclass(frozen=True, slots=True)
class Tier:
    key: str
    label: str
    min: Decimal


@dataclass(frozen=True, slots=True)
class CapRule:
    """A qualitative cap: when ``count(severity[, confirmed]) >= min_count``, cap at ``value``."""

    condition: str
    severity: str
    min_count: int
    confirmed_only: bool
    value: Decimal
    description: str = ""


@dataclass(frozen=True, slots=True)
class ValidityFloors:
    """``validity:`` of thresholds.yaml: what the backtest must show (None: no floor)."""

    min_auc: float | None = None
    min_red_lift: float | None = None
    min_churner_capture_pct: float | None = None
    max_green_share_pct: float | None = None
    #: Fewest churners and renewers a figure needs (fewer: "too few events").
    min_events: int | None = None

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.min_auc,
                self.min_red_lift,
                self.min_churner_capture_pct,
                self.max_green_share_pct,
            )
        )


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """Everything the pure scoring functions need."""

    component_weights: Mapping[str, Decimal]  # churn_risk / platform_value
    churn_risk_weights: Mapping[str, Decimal]  # dimension -> weight
    dimensions: Mapping[str, DimensionSpec]  # includes platform_value
    tiers: tuple[Tier, ...]  # highest min first
    cap_rules: tuple[CapRule, ...]
    min_coverage_pct: Decimal = DEFAULT_MIN_COVERAGE_PCT
    segments: frozenset[str] = frozenset()
    validity: ValidityFloors = ValidityFloors()
    #: Accepted but worth saying (e.g. a weight group summing to 0.995): printed by
    #: check-config and recorded in each run's manifest.
    warnings: tuple[str, ...] = ()

    @property
    def tier_labels(self) -> tuple[str, ...]:
        """Every tier a score can get, best first: the configured tiers, then Insufficient Data."""
        return (*(t.label for t in self.tiers), INSUFFICIENT_DATA)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every distinct raw metric, in config order."""
        seen: dict[str, None] = {}
        for dim in self.dimensions.values():
            for metric in dim.metrics:
                seen.setdefault(metric.name, None)
        return tuple(seen)

    def with_weights(
        self,
        *,
        component_weights: Mapping[str, Decimal] | None = None,
        churn_risk_weights: Mapping[str, Decimal] | None = None,
        metric_weights: Mapping[str, Mapping[str, Decimal]] | None = None,
    ) -> ScoringConfig:
        """A copy with some weights replaced (what-if analysis); thresholds and rules unchanged."""
        dims = dict(self.dimensions)
        for dim_name, weights in (metric_weights or {}).items():
            dim = dims[dim_name]
            dims[dim_name] = DimensionSpec(
                dim.name,
                tuple(
                    MetricSpec(
                        m.name,
                        weights.get(m.name, m.weight),
                        m.lower_is_better,
                        m.bands,
                        m.description,
                    )
                    for m in dim.metrics
                ),
            )
        return ScoringConfig(
            component_weights=MappingProxyType(dict(component_weights or self.component_weights)),
            churn_risk_weights=MappingProxyType(
                dict(churn_risk_weights or self.churn_risk_weights)
            ),
            dimensions=MappingProxyType(dims),
            tiers=self.tiers,
            cap_rules=self.cap_rules,
            min_coverage_pct=self.min_coverage_pct,
            segments=self.segments,
            validity=self.validity,
            warnings=self.warnings,
        )
