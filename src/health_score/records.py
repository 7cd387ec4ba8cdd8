"""Typed, immutable records that flow between the pipeline's stages.

Extractors turn vendor JSON into these; scoring reads them; loaders write what scoring returns.
Raw vendor JSON never leaves the extractor that received it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

#: A raw metric value: exact decimal, or None when the source had no data for it.
MetricValue = Decimal | None

#: Derived metric values (medians, rates, ratios) are published to this many decimal places, the
#: one convention shared by extractors and the sandbox's expectations.
METRIC_PLACES = 4


def metric_value(value: float | int | Decimal | None, places: int = METRIC_PLACES) -> MetricValue:
    """A raw metric as an exact Decimal, rounded half-up to ``places`` (None stays None)."""
    if value is None:
        return None
    exact = (
        value
        if isinstance(value, Decimal)
        else Decimal(repr(value) if isinstance(value, float) else value)
    )
    if not exact.is_finite():
        return None
    return exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize() + 0


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Account:
    """One customer account as the mapping file describes it.

    ``account_id`` is the key the pipeline uses everywhere: the Salesforce id when the row has one,
    otherwise a stable id derived from the other systems' ids (such an account is scored but never
    written to Salesforce).
    """

    account_id: str
    account_name: str
    segment: str
    sf_account_id: str | None = None
    intercom_company_id: str | None = None
    looker_customer_id: str | None = None
    jira_project_key: str | None = None
    jira_component: str | None = None
    extra: Mapping[str, str] = field(default_factory=_frozen)


@dataclass(frozen=True, slots=True)
class SignalCounts:
    """Active churn signals of one account, after Monitoring ones were moved one severity lower."""

    critical: int = 0
    moderate: int = 0
    watch: int = 0
    critical_confirmed: int = 0
    moderate_confirmed: int = 0
    watch_confirmed: int = 0

    def count(self, severity: str, *, confirmed_only: bool = False) -> int:
        """Number of signals of ``severity`` (critical, moderate, watch)."""
        name = f"{severity}_confirmed" if confirmed_only else severity
        value = getattr(self, name)
        assert isinstance(value, int)
        return value

    @property
    def total(self) -> int:
        return self.critical + self.moderate + self.watch

    def __add__(self, other: SignalCounts) -> SignalCounts:
        return SignalCounts(
            critical=self.critical + other.critical,
            moderate=self.moderate + other.moderate,
            watch=self.watch + other.watch,
            critical_confirmed=self.critical_confirmed + other.critical_confirmed,
            moderate_confirmed=self.moderate_confirmed + other.moderate_confirmed,
            watch_confirmed=self.watch_confirmed + other.watch_confirmed,
        )


NO_SIGNALS = SignalCounts()


@dataclass(frozen=True, slots=True)
class AccountContext:
    """What a CS leader reads beside the score, not scored: the account owner's name, ARR and
    the renewal date (from Salesforce; None: unknown), and the days from the period's end to
    the renewal date (negative: the renewal date has passed)."""

    owner: str | None = None
    arr: Decimal | None = None
    renewal_date: date | None = None
    days_to_renewal: int | None = None


NO_CONTEXT = AccountContext()


@dataclass(frozen=True, slots=True)
class AccountInput:
    """Everything scoring needs for one account: its raw metric values and its signals.

    ``metrics`` maps metric name → value; a name that is absent or maps to None is missing data.
    ``unavailable`` names metrics whose source failed as a whole (shown differently from missing).
    ``context`` is carried into ``scores.csv`` beside the score, never scored.
    """

    account_id: str
    account_name: str
    segment: str
    metrics: Mapping[str, MetricValue]
    signals: SignalCounts = NO_SIGNALS
    unavailable: frozenset[str] = frozenset()
    context: AccountContext = NO_CONTEXT
