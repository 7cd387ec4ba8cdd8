"""The backtest's statistics: pure functions of observations, exact where they can be.

An *observation* is one churn or renewal event with what the score said about the account some
time before it (:class:`Observation`). Every figure here is a function of a list of them:

- :func:`auc` — the probability that a renewing account scored higher than a churning one (ties
  count half): the Mann–Whitney statistic over average ranks, computed exactly as a fraction.
  0.5 is a coin; 1.0 means every renewer scored above every churner.
- :func:`bootstrap_interval` — a 95 % percentile interval of the AUC from a seeded, stratified
  bootstrap (churners and renewers resampled separately, so each resample has both);
  :func:`delong_interval` — DeLong's normal-approximation interval, for the per-input table.
- :func:`tier_table` — churn rate per tier and each tier's lift over the base rate.
- :func:`capture` — churners flagged below the healthiest tiers, and the book in them, by count
  and by ARR.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from health_score.scoring.spec import INSUFFICIENT_DATA

CHURN = "churn"
RENEWAL = "renewal"
EVENTS = (CHURN, RENEWAL)

#: Below this many churners or renewers a figure is reported as "too few events".
DEFAULT_MIN_EVENTS = 10
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 20_261_201


@dataclass(frozen=True, slots=True)
class Observation:
    """One outcome and the account's run before it."""

    account_id: str
    event: str  # churn | renewal
    day: str  # the event's date, YYYY-MM-DD
    arr: Decimal | None
    run_id: str
    period: str
    final_score: float | None  # None: no score (Insufficient Data)
    tier: str
    low_coverage: bool = False
    capped: bool = False
    #: dimension or metric name → its score in that run (None: no data)
    inputs: dict[str, float | None] = field(default_factory=dict)

    @property
    def churned(self) -> bool:
        return self.event == CHURN


def _average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks, ties sharing the mean of their positions."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    # Start of each run of equal values, and its length.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    lengths = np.diff(np.r_[starts, len(values)])
    mean_rank = starts + (lengths + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, lengths)
    return ranks


def auc_fraction(good: Sequence[float], bad: Sequence[float]) -> Fraction:
    """P(a ``good`` value > a ``bad`` value) + ½ P(equal), exactly.

    ``good``: the renewers' scores; ``bad``: the churners'. Both must be non-empty.
    """
    if not good or not bad:
        raise ValueError("an AUC needs at least one value on each side")
    values = np.array([*good, *bad], dtype=np.float64)
    ranks = _average_ranks(values)
    # Average ranks are multiples of ½: doubled, they are exact integers.
    doubled = round(float(ranks[: len(good)].sum()) * 2)
    n_good, n_bad = len(good), len(bad)
    return Fraction(doubled - n_good * (n_good + 1), 2 * n_good * n_bad)


def auc(good: Sequence[float], bad: Sequence[float]) -> float:
    return float(auc_fraction(good, bad))


#: Resamples computed together (bounds the memory of one step to a few MB per 1,000 events).
_CHUNK = 64


def _counts(rng: np.random.Generator, n: int, size: int) -> NDArray[np.int64]:
    """``size`` resamples of ``n`` items with replacement, as how often each item was drawn."""
    draws = rng.integers(0, n, size=(size, n))
    draws += np.arange(size, dtype=np.int64)[:, None] * n
    return np.bincount(draws.ravel(), minlength=size * n).reshape(size, n)


def delong_interval(
    good: Sequence[float], bad: Sequence[float], *, level_z: float = 1.959964
) -> tuple[float, float]:
    """A 95 % interval of the AUC from DeLong's variance (normal approximation), clipped to
    0–1: the cheap interval of the per-input table (the headline AUC is bootstrapped)."""
    g = np.sort(np.asarray(good, dtype=np.float64))
    b = np.sort(np.asarray(bad, dtype=np.float64))
    n_good, n_bad = len(g), len(b)
    # Each renewer's share of churners it beats (ties ½), and each churner's share of renewers
    # beating it: the two "placement" samples whose variances make the AUC's.
    v10 = (np.searchsorted(b, g, "left") + np.searchsorted(b, g, "right")) / (2.0 * n_bad)
    v01 = 1.0 - (np.searchsorted(g, b, "left") + np.searchsorted(g, b, "right")) / (2.0 * n_good)
    value = float(v10.mean())
    var10 = float(v10.var(ddof=1)) if n_good > 1 else 0.0
    var01 = float(v01.var(ddof=1)) if n_bad > 1 else 0.0
    half = level_z * math.sqrt(var10 / n_good + var01 / n_bad)
    return max(0.0, value - half), min(1.0, value + half)


def bootstrap_interval(
    good: Sequence[float],
    bad: Sequence[float],
    *,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """The percentile interval of the AUC over ``resamples`` stratified bootstrap resamples.

    A resample is drawn as multinomial counts (how often each renewer and each churner is
    picked), which is the same distribution as drawing indices with replacement. Its AUC is
    ``Σᵢ gᵢ·wᵢ / (n_good·n_bad)`` where ``gᵢ`` counts renewer ``i`` and ``wᵢ`` the churners it
    beats (ties half), read from cumulative counts over the churners' sorted values — linear in
    the events per resample instead of a sort.
    """
    if not good or not bad:
        raise ValueError("an interval needs at least one value on each side")
    rng = np.random.default_rng(seed)
    g = np.asarray(good, dtype=np.float64)
    b = np.sort(np.asarray(bad, dtype=np.float64))
    n_good, n_bad = len(g), len(b)
    below = np.searchsorted(b, g, side="left")  # churners strictly below each renewer
    not_above = np.searchsorted(b, g, side="right")
    values = np.empty(resamples, dtype=np.float64)
    for first in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - first)
        good_counts = _counts(rng, n_good, size)
        bad_counts = _counts(rng, n_bad, size)
        cumulative = np.zeros((size, n_bad + 1), dtype=np.int64)
        np.cumsum(bad_counts, axis=1, out=cumulative[:, 1:])
        wins = cumulative[:, below] + 0.5 * (cumulative[:, not_above] - cumulative[:, below])
        values[first : first + size] = (good_counts * wins).sum(axis=1) / (n_good * n_bad)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True, slots=True)
class AucFigure:
    """An AUC with its interval and counts; ``value`` None when there are too few events."""

    value: float | None
    low: float | None
    high: float | None
    churners: int
    renewers: int
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "auc": _round(self.value),
            "interval_95": None if self.low is None else [_round(self.low), _round(self.high)],
            "churners": self.churners,
            "renewers": self.renewers,
            "note": self.note,
        }


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def auc_figure(
    pairs: Sequence[tuple[float | None, bool]],
    *,
    min_events: int = DEFAULT_MIN_EVENTS,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    bootstrap: bool = True,
) -> AucFigure:
    """AUC of ``(value, churned)`` pairs; pairs without a value are left out (see coverage).

    ``bootstrap``: the interval from the seeded bootstrap; else DeLong's (much cheaper).
    """
    good = [v for v, churned in pairs if v is not None and not churned]
    bad = [v for v, churned in pairs if v is not None and churned]
    if len(good) < min_events or len(bad) < min_events:
        return AucFigure(
            None,
            None,
            None,
            len(bad),
            len(good),
            f"too few events (need {min_events} churners and {min_events} renewers with a value)",
        )
    if bootstrap:
        low, high = bootstrap_interval(good, bad, resamples=resamples, seed=seed)
    else:
        low, high = delong_interval(good, bad)
    return AucFigure(auc(good, bad), low, high, len(bad), len(good))


@dataclass(frozen=True, slots=True)
class TierRow:
    tier: str
    accounts: int
    churned: int
    rate: float | None  # churned / accounts
    lift: float | None  # rate / base rate

    def as_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "accounts": self.accounts,
            "churned": self.churned,
            "churn_rate_pct": None if self.rate is None else round(100 * self.rate, 2),
            "lift": _round(self.lift, 3),
        }


def tier_table(observations: Sequence[Observation], tiers: Sequence[str]) -> list[TierRow]:
    """Churn rate and lift per tier (``tiers`` best first, Insufficient Data last if listed).

    The base rate is over every observation; a tier's lift is its rate over the base rate.
    """
    total = len(observations)
    churned = sum(o.churned for o in observations)
    base = churned / total if total else None
    rows: list[TierRow] = []
    for tier in tiers:
        group = [o for o in observations if o.tier == tier]
        lost = sum(o.churned for o in group)
        rate = lost / len(group) if group else None
        lift = rate / base if rate is not None and base else None
        rows.append(TierRow(tier, len(group), lost, rate, lift))
    return rows


def monotone(rows: Sequence[TierRow]) -> bool:
    """Whether churn rates never fall from a better tier to a worse one (empty tiers skipped)."""
    rates = [r.rate for r in rows if r.rate is not None]
    return all(a <= b for a, b in itertools.pairwise(rates))


@dataclass(frozen=True, slots=True)
class Capture:
    """How the tiers sort churners and the book at lead time."""

    churners: int
    churners_flagged: int  # below the healthiest tiers
    book: int
    book_healthiest: int
    churner_arr: Decimal
    churner_arr_flagged: Decimal
    book_arr: Decimal
    book_arr_healthiest: Decimal

    @staticmethod
    def _pct(part: float | Decimal, whole: float | Decimal) -> float | None:
        return round(100 * float(part) / float(whole), 2) if whole else None

    @property
    def churner_capture_pct(self) -> float | None:
        return self._pct(self.churners_flagged, self.churners)

    @property
    def healthiest_share_pct(self) -> float | None:
        return self._pct(self.book_healthiest, self.book)

    @property
    def churner_arr_capture_pct(self) -> float | None:
        return self._pct(self.churner_arr_flagged, self.churner_arr)

    @property
    def healthiest_arr_share_pct(self) -> float | None:
        return self._pct(self.book_arr_healthiest, self.book_arr)

    def as_dict(self) -> dict[str, object]:
        return {
            "churners": self.churners,
            "churners_below_healthiest": self.churners_flagged,
            "churner_capture_pct": self.churner_capture_pct,
            "book": self.book,
            "book_in_healthiest": self.book_healthiest,
            "healthiest_share_pct": self.healthiest_share_pct,
            "churner_arr_capture_pct": self.churner_arr_capture_pct,
            "healthiest_arr_share_pct": self.healthiest_arr_share_pct,
        }


def capture(observations: Sequence[Observation], healthiest: Sequence[str]) -> Capture:
    """Churners outside the ``healthiest`` tiers (Insufficient Data, scored or not, is not a
    flag), and the
    share of the book (every observation) inside them; by count and by event ARR."""
    top = set(healthiest)
    zero = Decimal(0)
    churners = [o for o in observations if o.churned]
    flagged = [
        o
        for o in churners
        if o.tier not in top and o.tier != INSUFFICIENT_DATA and o.final_score is not None
    ]
    inside = [o for o in observations if o.tier in top]
    return Capture(
        churners=len(churners),
        churners_flagged=len(flagged),
        book=len(observations),
        book_healthiest=len(inside),
        churner_arr=sum((o.arr or zero for o in churners), zero),
        churner_arr_flagged=sum((o.arr or zero for o in flagged), zero),
        book_arr=sum((o.arr or zero for o in observations), zero),
        book_arr_healthiest=sum((o.arr or zero for o in inside), zero),
    )


def roc_points(
    pairs: Sequence[tuple[float | None, bool]],
) -> list[tuple[float, float, float | None]]:
    """The ROC curve of flagging every account whose value is at or below a threshold:
    ``(share of renewers flagged, share of churners flagged, threshold)`` for each distinct
    value, lowest first, after ``(0, 0, None)``. Pairs without a value are left out; empty when
    either side is. The area under it (trapezoids) is :func:`auc` of the same pairs."""
    good = np.sort(np.array([v for v, c in pairs if v is not None and not c], dtype=np.float64))
    bad = np.sort(np.array([v for v, c in pairs if v is not None and c], dtype=np.float64))
    if not len(good) or not len(bad):
        return []
    thresholds = np.unique(np.concatenate([good, bad]))
    false_alarms = np.searchsorted(good, thresholds, side="right") / len(good)
    caught = np.searchsorted(bad, thresholds, side="right") / len(bad)
    points: list[tuple[float, float, float | None]] = [(0.0, 0.0, None)]
    points.extend(zip(false_alarms.tolist(), caught.tolist(), thresholds.tolist(), strict=True))
    return points


def auc_difference_interval(
    first: Sequence[float],
    second: Sequence[float],
    churned: Sequence[bool],
    *,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """AUC of ``second`` minus AUC of ``first``, two scores of the same events, and the
    percentile interval of that difference from a seeded bootstrap that resamples the events
    (churners and renewers apart) and so keeps each event's two scores together."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    bad_mask = np.asarray(churned, dtype=bool)
    good, bad = np.flatnonzero(~bad_mask), np.flatnonzero(bad_mask)
    if not len(good) or not len(bad):
        raise ValueError("a difference of AUCs needs at least one event on each side")

    def auc_of(values: NDArray[np.float64], g: NDArray[np.int64], k: NDArray[np.int64]) -> float:
        ranks = _average_ranks(np.concatenate([values[g], values[k]]))
        n_good = len(g)
        return float((ranks[:n_good].sum() - n_good * (n_good + 1) / 2) / (n_good * len(k)))

    rng = np.random.default_rng(seed)
    value = auc_of(b, good, bad) - auc_of(a, good, bad)
    values = np.empty(resamples, dtype=np.float64)
    for i in range(resamples):
        g = good[rng.integers(0, len(good), size=len(good))]
        k = bad[rng.integers(0, len(bad), size=len(bad))]
        values[i] = auc_of(b, g, k) - auc_of(a, g, k)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return value, float(low), float(high)
