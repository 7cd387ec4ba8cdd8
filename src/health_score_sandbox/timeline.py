"""The sandbox through time: latent health month by month, renewals, churn and new accounts.

A :class:`Timeline` is drawn once per sandbox (deterministic by seed) over ``months`` complete
months ending at the sandbox date. For each account it holds:

- its latent health per month: a mean-reverting walk around the account's own long-run level
  (drift), with occasional shocks (a sudden drop of 12–30 points) that the walk then recovers from;
- the month it joined (most accounts were customers before the history starts; about one in seven
  joins during it) and its yearly contract anniversary;
- at each anniversary inside the history: renewed or churned. The churn probability depends on the
  latent health ``CHURN_LEAD_MONTHS`` months before the renewal (a logistic curve, plus noise), or,
  with ``churn_model="random"``, on nothing at all (the control a backtest must not find signal in).
  A churned account produces no activity from the month of its churn on.

Each month is then generated as a *slice*: a :class:`~health_score_sandbox.portfolio.Portfolio`
whose ``as_of`` is the first instant of the next month and whose profiles carry that month's
health and metric targets (an account's metric sits at a fixed offset from its health plus a small
monthly wobble, so metrics move with health rather than jumping). The vendor modules draw each
slice's records with their ordinary generators and keep the records dated inside the slice's month
(``generate_history``), so a window ending at any month boundary holds that period's records only.

The metrics in :data:`NOISE_METRICS` follow no health at all in a timeline (a steady level per
account plus the wobble): the sandbox's churn is driven by the other metrics, which is what the
backtest's per-metric signal table must find.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

from health_score_sandbox.portfolio import (
    AccountProfile,
    Portfolio,
    target_raw,
)

#: Months of history a timeline sandbox lives through by default (the demo's year of runs needs
#: the year before it too: Salesforce looks back 12 months).
DEFAULT_HISTORY_MONTHS = 24
#: The churn decision at a renewal reads the latent health this many months before it.
CHURN_LEAD_MONTHS = 3
#: Metrics unrelated to health in a timeline sandbox (the backtest's negative controls).
NOISE_METRICS = frozenset(
    {"reopen_rate_pct", "sessions_per_user_trend_pct", "responsiveness", "scheduled_reports"}
)
#: Metrics a timeline sets from the account's calendar, not from its health.
CALENDAR_METRICS = frozenset({"days_to_renewal"})
CHURN_MODELS = ("health", "random")

_JOIN_SHARE = 0.15  # accounts that join during the history
_SHOCK_CHANCE = 0.03  # per account and month
_REVERSION = 0.15  # share of the gap to the long-run level closed each month
_DRIFT_SD = 3.0
_METRIC_OFFSET_SD = 9.0
_METRIC_WOBBLE_SD = 4.0
_RANDOM_CHURN = 0.15


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after ``day``'s month (negative: before)."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def churn_probability(health: float) -> float:
    """The chance that an account of latent ``health`` (months before its renewal) churns.

    About 60 % at health 35, 30 % at 55, 8 % at 70 and 3 % for the healthiest.
    """
    return 0.02 + 0.78 / (1.0 + math.exp((health - 50.0) / 7.0))


@dataclass(frozen=True, slots=True)
class Renewal:
    """One contract anniversary inside the history and what happened at it."""

    account_id: str
    day: date
    outcome: str  # "renewed" | "churned"
    health_at_decision: float  # the latent health CHURN_LEAD_MONTHS months before ``day``


@dataclass(frozen=True, slots=True)
class AccountLife:
    """One account through the history (month index 0 is the oldest month)."""

    account_id: str
    joined: date  # the first day of its first customer month (before the history: the start)
    anniversary: date  # its contract's yearly renewal day (any year)
    since: date  # the contract's first day (before the history for most accounts)
    health: tuple[float, ...]  # latent health per month of the timeline
    renewals: tuple[Renewal, ...]
    churned_on: date | None

    def active(self, month_start: date) -> bool:
        """Whether the account is a customer producing activity during that month."""
        if month_start < self.joined:
            return False
        return self.churned_on is None or add_months(month_start, 1) <= self.churned_on

    def next_renewal(self, at: date) -> date:
        """The first anniversary on or after ``at``."""
        day = _anniversary_in(self.anniversary, at.year)
        return day if day >= at else _anniversary_in(self.anniversary, at.year + 1)


def _anniversary_in(anniversary: date, year: int) -> date:
    day = min(anniversary.day, 28)
    return date(year, anniversary.month, day)


@dataclass(frozen=True)
class Timeline:
    """Latent health, renewals and churn of every account, month by month.

    ``month_starts[k]`` is the first day of month ``k``; its period ends at ``as_ofs[k]`` (the first
    day of the next month). The last ``as_ofs`` entry is the sandbox date.
    """

    seed: int
    month_starts: tuple[date, ...]
    churn_model: str
    lives: dict[str, AccountLife]

    @property
    def as_ofs(self) -> tuple[date, ...]:
        return tuple(add_months(m, 1) for m in self.month_starts)

    @property
    def periods(self) -> tuple[str, ...]:
        """The months as ``YYYY-MM`` (what ``--period`` takes)."""
        return tuple(f"{m.year:04d}-{m.month:02d}" for m in self.month_starts)

    def index_of(self, period: str | date) -> int:
        key = period if isinstance(period, str) else f"{period.year:04d}-{period.month:02d}"
        return self.periods.index(key)

    def health_in(self, period: str | date) -> dict[str, float]:
        """account_id → latent health during that month (active accounts only)."""
        k = self.index_of(period)
        start = self.month_starts[k]
        return {a: life.health[k] for a, life in self.lives.items() if life.active(start)}

    def renewals(self) -> Iterator[Renewal]:
        for life in self.lives.values():
            yield from life.renewals

    def churned(self) -> dict[str, date]:
        """account_id → churn date, for the accounts that churned inside the history."""
        return {a: life.churned_on for a, life in self.lives.items() if life.churned_on}


def _rng(seed: int, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:timeline:{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def build_timeline(
    base: Portfolio, months: int = DEFAULT_HISTORY_MONTHS, *, churn_model: str = "health"
) -> Timeline:
    """The history of ``base``'s accounts over the ``months`` months before ``base.as_of``.

    ``base``'s latent health of an account is its long-run level; the walk starts near it.
    """
    if months < 1:
        raise ValueError("a timeline needs at least one month")
    if churn_model not in CHURN_MODELS:
        raise ValueError(f"churn_model must be one of {', '.join(CHURN_MODELS)}")
    end = date(base.as_of.year, base.as_of.month, 1)
    starts = tuple(add_months(end, k - months) for k in range(months))
    lives: dict[str, AccountLife] = {}
    for number, profile in enumerate(base.profiles):
        rng = _rng(base.seed, profile.account_id)
        level = profile.health
        health: list[float] = []
        current = min(99.0, max(5.0, level + rng.gauss(0, 4)))
        for _ in starts:
            health.append(round(current, 3))
            step = _REVERSION * (level - current) + rng.gauss(0, _DRIFT_SD)
            if rng.random() < _SHOCK_CHANCE:
                step -= rng.uniform(12, 30)
            current = min(99.0, max(5.0, current + step))
        # The first accounts (each tier's representative) are customers throughout.
        joins = number >= 4 and rng.random() < _JOIN_SHARE
        joined = starts[rng.randrange(1, months)] if joins and months > 1 else starts[0]
        anniversary = date(2020, rng.randint(1, 12), rng.randint(1, 28))
        # The contract's first day: a customer from before the history signed one to three years
        # before it; a new customer on the day it joined. The first renewal is a year later.
        since = _anniversary_in(anniversary, starts[0].year - rng.randint(1, 3))
        if joins:
            anniversary = date(2020, joined.month, rng.randint(1, 28))
            since = _anniversary_in(anniversary, joined.year)
        renewals: list[Renewal] = []
        churned_on: date | None = None
        for year in range(starts[0].year, end.year + 1):
            day = _anniversary_in(anniversary, year)
            if not (starts[0] <= day < end) or day <= since:
                continue
            k = max(0, starts.index(date(day.year, day.month, 1)) - CHURN_LEAD_MONTHS)
            decisive = health[k]
            chance = _RANDOM_CHURN if churn_model == "random" else churn_probability(decisive)
            churns = number >= 4 and rng.random() < chance
            renewals.append(
                Renewal(profile.account_id, day, "churned" if churns else "renewed", decisive)
            )
            if churns:
                churned_on = day
                break
        lives[profile.account_id] = AccountLife(
            profile.account_id,
            joined,
            anniversary,
            since,
            tuple(health),
            tuple(renewals),
            churned_on,
        )
    return Timeline(base.seed, starts, churn_model, lives)


def slices(base: Portfolio, timeline: Timeline) -> list[Portfolio]:
    """One portfolio per month of ``timeline``: its ``as_of`` the month's end, its profiles the
    month's latent health and metric targets; inactive accounts hold no data in any source."""
    metrics = base.scoring.metrics
    offsets: dict[str, dict[str, float]] = {}
    for profile in base.profiles:
        rng = _rng(base.seed, f"offsets:{profile.account_id}")
        offsets[profile.account_id] = {
            name: (rng.gauss(70, 15) if name in NOISE_METRICS else rng.gauss(0, _METRIC_OFFSET_SD))
            for name in sorted(metrics)
        }
    out: list[Portfolio] = []
    for k, (start, as_of) in enumerate(zip(timeline.month_starts, timeline.as_ofs, strict=True)):
        profiles: list[AccountProfile] = []
        for profile in base.profiles:
            life = timeline.lives[profile.account_id]
            rng = _rng(base.seed, f"month:{k}:{profile.account_id}")
            health = life.health[k]
            targets: dict[str, float] = {}
            for name in sorted(metrics):
                metric = metrics[name]
                band = metric.bands[profile.account.segment]
                if name in CALENDAR_METRICS:
                    targets[name] = float((life.next_renewal(as_of) - as_of).days)
                    continue
                offset = offsets[profile.account_id][name]
                level = offset if name in NOISE_METRICS else health + offset
                score = level + rng.gauss(0, _METRIC_WOBBLE_SD)
                targets[name] = target_raw(band, metric.lower_is_better, score)
            present = profile.present if life.active(start) else frozenset()
            profiles.append(
                dataclasses.replace(profile, health=health, present=present, targets=targets)
            )
        out.append(
            dataclasses.replace(
                base,
                as_of=as_of,
                profiles=tuple(profiles),
                extra={**base.extra, "slice": k, "month_start": start},
            )
        )
    return out


def month_of(slices_: Sequence[Portfolio], k: int) -> tuple[date, date]:
    """Slice ``k``'s month as ``[start, end)``."""
    extra = slices_[k].extra
    start = extra["month_start"]
    assert isinstance(start, date)
    return start, slices_[k].as_of
