"""Validity: does the score predict churn? The dashboard's view of the backtest.

Two things, both over the same runs folder as the other pages:

* :func:`load_validity` — the backtest (:mod:`health_score.backtest`) of the history: the report
  (AUC, churn by tier, capture, per-input signal, verdict), the ROC curve of the final score and
  the churner capture for several lead windows. A short history is a state, not an error: the
  result says what is missing (no runs, no outcomes, too few events).
* :class:`EventTable` — the what-if judged on outcomes. Built once: every churn or renewal event
  matched with its account's run ``lead_days``–``horizon_days`` before it, with that run's raw
  inputs (``raw.csv``), in one table. A weight change re-scores only these rows with the
  vectorised scorer (:mod:`health_score.scoring.vector`) and recomputes the backtest figures.
  Events whose run is in the last ``holdout_months`` months of the history are the hold-out:
  the figures are given for it and for the earlier events apart.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TextIO

import numpy as np

from health_score.backtest import DEFAULT_HORIZON_DAYS, DEFAULT_LEAD_DAYS, BacktestError
from health_score.backtest import open_history as open_store
from health_score.backtest.history import (
    HistoryError,
    Outcome,
    RunInfo,
    Store,
    input_names,
    latest_outcomes,
    list_runs,
    match_events,
    observations,
    parse_outcomes,
)
from health_score.backtest.report import HEALTHIEST_TIERS, Report, build_report
from health_score.backtest.stats import (
    DEFAULT_MIN_EVENTS,
    AucFigure,
    Observation,
    auc,
    auc_difference_interval,
    auc_figure,
    capture,
    roc_points,
    tier_table,
)
from health_score.columns import AccountTable, read_raw_table
from health_score.config import ConfigError
from health_score.dashboard.whatif import (
    WeightError,
    WeightSet,
    apply_weights,
    normalise_group,
    score_table,
    weight_sections,
    with_places,
)
from health_score.loaders.artifacts import StoreError
from health_score.rawfile import RawFileError
from health_score.records import AccountInput
from health_score.scoring.spec import INSUFFICIENT_DATA, ScoringConfig

#: The lead windows of "capture over lead time": (lead_days, horizon_days).
LEAD_WINDOWS = ((0, 30), (30, 60), (60, 90), (90, 120))
DEFAULT_HOLDOUT_MONTHS = 6
#: Bootstrap resamples of suggest-weights' interval of the hold-out AUC gain.
SUGGEST_RESAMPLES = 1000


class ValidityError(Exception):
    """The history cannot be read; the message names the run or file."""


# --------------------------------------------------------------------------------------------
# The history


@dataclass(frozen=True, slots=True)
class History:
    """The runs a backtest reads and the outcomes it judges them against."""

    store: Store
    runs: list[RunInfo]
    outcomes: list[Outcome]
    source: str  # where the outcomes came from ("run <id>")


def open_history(location: str, *, include_degraded: bool = False) -> History | str:
    """The history in ``location``; or, when there is nothing to backtest yet, why (a
    sentence for the page). A history that is there but cannot be read raises
    :class:`ValidityError`."""
    try:
        store = open_store(location)
        statuses = ("ok", "degraded") if include_degraded else ("ok",)
        runs = list_runs(store, statuses=statuses)
        if not runs:
            kinds = " or ".join(statuses)
            hint = ""
            if not include_degraded and list_runs(store, statuses=("degraded",)):
                hint = " There are degraded runs: include them to backtest those."
            return f"No {kinds} runs placed in time (with an as_of) in this runs folder yet.{hint}"
        every = list_runs(store, statuses=("ok", "degraded", "failed"))
        latest = latest_outcomes(store, every)
        if latest is None:
            return (
                "No run has an outcomes.csv yet: the backtest needs the churn and renewal "
                "events (Salesforce opportunities) that the monthly run records."
            )
        outcomes = parse_outcomes(latest[1], f"run {latest[0]} outcomes.csv")
    except (BacktestError, HistoryError) as exc:
        raise ValidityError(str(exc)) from None
    return History(store, runs, outcomes, f"run {latest[0]}")


def newest_run_id(runs: Sequence[RunInfo]) -> str:
    return runs[-1].run_id if runs else ""


# --------------------------------------------------------------------------------------------
# The Validity page


@dataclass(frozen=True, slots=True)
class LeadCapture:
    """Churner capture for one lead window (events with a run ``lead``–``horizon`` days before)."""

    lead_days: int
    horizon_days: int
    churners: int
    flagged: int
    events: int
    capture_pct: float | None  # None: too few churners
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.lead_days}–{self.horizon_days} days"


@dataclass(frozen=True)
class Validity:
    report: Report
    roc: list[tuple[float, float, float | None]]
    leads: list[LeadCapture]
    min_events: int


def load_validity(
    history: History,
    config: ScoringConfig,
    *,
    lead_days: int = DEFAULT_LEAD_DAYS,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    windows: Sequence[tuple[int, int]] = LEAD_WINDOWS,
    resamples: int = 1000,
) -> Validity:
    """The backtest report, ROC points and capture over lead time of ``history``."""
    min_events = config.validity.min_events or DEFAULT_MIN_EVENTS
    try:
        found, unmatched = observations(
            history.store,
            history.runs,
            history.outcomes,
            lead_days=lead_days,
            horizon_days=horizon_days,
        )
        counts: dict[str, int] = {}
        for outcome in history.outcomes:
            counts[outcome.event] = counts.get(outcome.event, 0) + 1
        report = build_report(
            found,
            tiers=config.tier_labels,
            input_names=input_names(found),
            floors=config.validity,
            lead_days=lead_days,
            horizon_days=horizon_days,
            runs=len(history.runs),
            periods=(history.runs[0].period, history.runs[-1].period),
            outcomes_source=history.source,
            outcomes=counts,
            unmatched=unmatched,
            resamples=resamples,
        )
        roc = (
            roc_points([(o.final_score, o.churned) for o in found])
            if report.score.value is not None
            else []
        )
        leads = []
        for lead, horizon in windows:
            window, _ = observations(
                history.store,
                history.runs,
                history.outcomes,
                lead_days=lead,
                horizon_days=horizon,
                with_metrics=False,
            )
            leads.append(_lead_capture(window, lead, horizon, report.healthiest, min_events))
    except HistoryError as exc:
        raise ValidityError(str(exc)) from None
    return Validity(report, roc, leads, min_events)


def _lead_capture(
    found: Sequence[Observation],
    lead: int,
    horizon: int,
    healthiest: Sequence[str],
    min_events: int,
) -> LeadCapture:
    c = capture(found, healthiest)
    if c.churners < min_events:
        return LeadCapture(
            lead,
            horizon,
            c.churners,
            c.churners_flagged,
            c.book,
            None,
            f"too few events ({c.churners} churners; need {min_events})",
        )
    return LeadCapture(lead, horizon, c.churners, c.churners_flagged, c.book, c.churner_capture_pct)


# --------------------------------------------------------------------------------------------
# What-if judged on outcomes


@dataclass(frozen=True, slots=True)
class Figures:
    """The backtest figures of one weight set on one group of events."""

    events: int
    score: AucFigure
    red_lift: float | None
    churner_capture_pct: float | None
    green_share_pct: float | None


@dataclass(frozen=True, slots=True)
class Judgement:
    """Current weights against candidate weights, on the hold-out and on the earlier events."""

    holdout: tuple[Figures, Figures]  # (current, candidate)
    earlier: tuple[Figures, Figures]


def shift_period(period: str, months: int) -> str:
    """``YYYY-MM`` moved by ``months`` (negative: back)."""
    index = int(period[:4]) * 12 + int(period[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


class EventTable:
    """The matched events' raw inputs in one table, re-scored per weight set (memoised)."""

    def __init__(
        self,
        config: ScoringConfig,
        accounts: Sequence[AccountInput],
        outcomes: Sequence[Outcome],
        runs: Sequence[RunInfo],
        *,
        holdout_from: str,
        skipped: Sequence[str] = (),
        unmatched: int = 0,
    ) -> None:
        if not len(accounts) == len(outcomes) == len(runs):
            raise ValueError("one account row, outcome and run per event")
        self.config = config
        self.table = with_places(AccountTable.from_accounts(accounts, config))
        self.outcomes = list(outcomes)
        self.runs = list(runs)
        self.holdout_from = holdout_from
        self.holdout = np.array([r.period >= holdout_from for r in runs], dtype=bool)
        self.skipped = list(skipped)
        self.unmatched = unmatched
        self.min_events = config.validity.min_events or DEFAULT_MIN_EVENTS
        scored = [t for t in config.tier_labels if t != INSUFFICIENT_DATA]
        self.healthiest = tuple(scored[:HEALTHIEST_TIERS])
        self._memo: OrderedDict[object, tuple[Figures, Figures]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.table.size

    @property
    def holdout_events(self) -> int:
        return int(self.holdout.sum())

    @classmethod
    def build(
        cls,
        history: History,
        config: ScoringConfig,
        raw_path: Callable[[str], Path | None],
        *,
        lead_days: int = DEFAULT_LEAD_DAYS,
        horizon_days: int = DEFAULT_HORIZON_DAYS,
        holdout_months: int = DEFAULT_HOLDOUT_MONTHS,
    ) -> EventTable:
        """Match the events with their runs and read those runs' ``raw.csv`` (``raw_path``
        gives a local copy, or None when the run has none: its events are left out)."""
        if holdout_months < 1:
            raise ValueError("holdout_months must be at least 1")
        chosen, unmatched = match_events(
            history.runs, history.outcomes, lead_days=lead_days, horizon_days=horizon_days
        )
        needed: dict[str, list[tuple[Outcome, RunInfo]]] = {}
        for outcome, info in chosen:
            needed.setdefault(info.run_id, []).append((outcome, info))
        accounts: list[AccountInput] = []
        outcomes: list[Outcome] = []
        runs: list[RunInfo] = []
        skipped: list[str] = []
        for info in history.runs:
            events = needed.get(info.run_id)
            if not events:
                continue
            path = raw_path(info.run_id)
            if path is None:
                skipped.append(f"run {info.run_id}: no raw.csv ({len(events)} events left out)")
                continue
            try:
                raw = read_raw_table(path, config).accounts
            except (RawFileError, ConfigError, OSError) as exc:
                skipped.append(f"run {info.run_id}: raw.csv cannot be read ({exc})")
                continue
            index = {account: i for i, account in enumerate(raw.ids)}
            for outcome, run in events:
                at = index.get(outcome.account_id)
                if at is None:
                    unmatched += 1
                    continue
                accounts.append(raw.account(at))
                outcomes.append(outcome)
                runs.append(run)
        newest = history.runs[-1].period
        return cls(
            config,
            accounts,
            outcomes,
            runs,
            holdout_from=shift_period(newest, -(holdout_months - 1)),
            skipped=skipped,
            unmatched=unmatched,
        )

    def judge(self, current: ScoringConfig, candidate: ScoringConfig) -> Judgement:
        """The figures of both configs (same thresholds, other weights) on both groups."""
        now, new = self.figures(current), self.figures(candidate)
        return Judgement(holdout=(now[0], new[0]), earlier=(now[1], new[1]))

    def figures(self, config: ScoringConfig) -> tuple[Figures, Figures]:
        """``(hold-out, earlier)`` figures of ``config``'s weights."""
        key = _weights_key(config)
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        final, tier, ok = score_table(self.table, config)
        labels = config.tier_labels
        found = [
            Observation(
                account_id=o.account_id,
                event=o.event,
                day=o.day.isoformat(),
                arr=o.arr,
                run_id=r.run_id,
                period=r.period,
                final_score=None if f < 0 else f / 10,
                tier=labels[t],
            )
            for o, r, f, t in zip(
                self.outcomes, self.runs, final.tolist(), tier.tolist(), strict=True
            )
        ]
        holdout = [o for o, h, k in zip(found, self.holdout, ok, strict=True) if h and k]
        earlier = [o for o, h, k in zip(found, self.holdout, ok, strict=True) if not h and k]
        result = (self._figures(holdout), self._figures(earlier))
        with self._lock:
            self._memo[key] = result
            while len(self._memo) > 16:
                self._memo.popitem(last=False)
        return result

    def _figures(self, found: Sequence[Observation]) -> Figures:
        """The backtest's figures (AUC with DeLong's interval: cheap enough for every weight
        change; tiers and floors of the table's config, which a candidate shares)."""
        score = auc_figure(
            [(o.final_score, o.churned) for o in found],
            min_events=self.min_events,
            bootstrap=False,
        )
        rows = [
            r for r in tier_table(found, self.config.tier_labels) if r.tier != INSUFFICIENT_DATA
        ]
        caught = capture(found, self.healthiest)
        return Figures(
            events=len(found),
            score=score,
            red_lift=rows[-1].lift if rows else None,
            churner_capture_pct=caught.churner_capture_pct,
            green_share_pct=caught.healthiest_share_pct,
        )


def _weights_key(config: ScoringConfig) -> object:
    return (
        tuple(config.component_weights.items()),
        tuple(config.churn_risk_weights.items()),
        tuple(
            (name, tuple((m.name, m.weight) for m in dim.metrics))
            for name, dim in config.dimensions.items()
        ),
    )


def figure_rows(judgement: Judgement) -> list[dict[str, str]]:
    """The comparison as table rows: figure, current, candidate (hold-out first)."""
    rows: list[dict[str, str]] = []
    for group, (now, new) in (("hold-out", judgement.holdout), ("earlier", judgement.earlier)):
        rows.extend(
            [
                {
                    "events": group,
                    "figure": "AUC (95 % interval)",
                    "current weights": auc_text(now.score),
                    "candidate weights": auc_text(new.score),
                },
                {
                    "events": group,
                    "figure": "red-tier lift",
                    "current weights": _times(now.red_lift),
                    "candidate weights": _times(new.red_lift),
                },
                {
                    "events": group,
                    "figure": "churners below the healthiest tiers",
                    "current weights": _pct(now.churner_capture_pct),
                    "candidate weights": _pct(new.churner_capture_pct),
                },
                {
                    "events": group,
                    "figure": "events in the healthiest tiers",
                    "current weights": _pct(now.green_share_pct),
                    "candidate weights": _pct(new.green_share_pct),
                },
            ]
        )
    return rows


def auc_text(figure: AucFigure) -> str:
    if figure.value is None or figure.low is None or figure.high is None:
        return f"too few events ({figure.churners} churners, {figure.renewers} renewers)"
    return f"{figure.value:.3f} ({figure.low:.3f}–{figure.high:.3f})"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


# --------------------------------------------------------------------------------------------
# suggest-weights: search on the earlier events, judge on the hold-out only

#: The weight groups searched by default: the Health Score's components and the Churn Risk
#: dimensions (few weights, each moving many accounts).
DEFAULT_SEARCH_GROUPS = ("health_score", "churn_risk")
DEFAULT_MAX_CHANGE = Decimal("0.15")
DEFAULT_STEP = Decimal("0.05")


@dataclass(frozen=True)
class Suggestion:
    """What the search found on the earlier events and how it did on the hold-out."""

    current: WeightSet
    suggested: WeightSet
    searched: tuple[str, ...]
    earlier_events: int
    evaluations: int
    holdout: tuple[Figures, Figures]  # (current, suggested)
    #: Hold-out AUC of the suggestion minus the current one, and its 95 % interval.
    difference: tuple[float, float, float] | None
    recommended: bool
    reason: str

    def changes(self) -> list[tuple[str, str, Decimal, Decimal]]:
        before = {(s, k): w for s, items in self.current for k, w in items}
        return [
            (s, k, before[(s, k)], w)
            for s, items in self.suggested
            for k, w in items
            if before[(s, k)] != w
        ]


def suggest_weights(
    table: EventTable,
    *,
    groups: Sequence[str] = DEFAULT_SEARCH_GROUPS,
    max_change: Decimal = DEFAULT_MAX_CHANGE,
    step: Decimal = DEFAULT_STEP,
    passes: int = 4,
    resamples: int = SUGGEST_RESAMPLES,
) -> Suggestion:
    """Coordinate search over the weights of ``groups``: each weight moved by ``step`` up or
    down, its group re-normalised, kept when every weight of the group stays within
    ``max_change`` of the current one and the AUC of the *earlier* events rises. The hold-out
    is scored only at the end, once, for the suggestion and the current weights; a change is
    recommended only when the hold-out AUC gain's 95 % interval lies above 0."""
    config = table.config
    current = weight_sections(config)
    unknown = [g for g in groups if g not in dict(current)]
    if unknown:
        names = ", ".join(s for s, _ in current)
        raise ValueError(f"unknown weight group(s) {', '.join(unknown)} (one of {names})")
    earlier = ~table.holdout

    def objective(weights: WeightSet) -> float | None:
        final, _, ok = score_table(table.table, apply_weights(config, weights))
        use = earlier & ok & (final >= 0)
        churned = np.array([o.event == "churn" for o in table.outcomes], dtype=bool)
        good = (final[use & ~churned] / 10).tolist()
        bad = (final[use & churned] / 10).tolist()
        if len(good) < table.min_events or len(bad) < table.min_events:
            return None
        return auc(good, bad)

    best = current
    best_value = objective(current)
    evaluations = 1
    n_earlier = int(earlier.sum())
    if best_value is None:
        figures = table.figures(config)[0]
        return Suggestion(
            current,
            current,
            tuple(groups),
            n_earlier,
            evaluations,
            (figures, figures),
            None,
            False,
            f"Too few earlier events to search on ({n_earlier} events before "
            f"{table.holdout_from}; need {table.min_events} churners and renewers).",
        )
    original = {(s, k): w for s, items in current for k, w in items}
    for _ in range(passes):
        improved = False
        for group in groups:
            for position in range(len(dict(best)[group])):
                for delta in (step, -step):
                    items = list(dict(best)[group])
                    key, weight = items[position]
                    if weight + delta < 0:
                        continue
                    items[position] = (key, weight + delta)
                    try:
                        moved = normalise_group(items)
                    except WeightError:
                        continue
                    if any(abs(w - original[(group, k)]) > max_change for k, w in moved):
                        continue
                    candidate = tuple((s, moved if s == group else i) for s, i in best)
                    value = objective(candidate)
                    evaluations += 1
                    if value is not None and value > best_value + 1e-12:
                        best, best_value, improved = candidate, value, True
        if not improved:
            break
    now = table.figures(config)[0]
    new = table.figures(apply_weights(config, best))[0]
    if best == current:
        return Suggestion(
            current,
            best,
            tuple(groups),
            n_earlier,
            evaluations,
            (now, new),
            None,
            False,
            "No change recommended: no weights within the bounds score the earlier events "
            "better than the current ones.",
        )
    difference = _holdout_difference(table, config, best, resamples)
    if difference is None:
        reason = (
            "No change recommended: too few hold-out events to judge the suggestion "
            f"(need {table.min_events} churners and {table.min_events} renewers)."
        )
        return Suggestion(
            current, best, tuple(groups), n_earlier, evaluations, (now, new), None, False, reason
        )
    gain, low, high = difference
    text = f"{gain:+.3f} (95 % interval {low:+.3f} to {high:+.3f})"
    if low > 0:
        reason = f"Recommended: on the hold-out the AUC rises by {text}."
    elif high < 0:
        reason = f"No change recommended: on the hold-out the AUC falls by {text}."
    else:
        reason = (
            f"No change recommended: on the hold-out the AUC moves by {text}; the interval "
            "contains 0, so the gain cannot be told from chance."
        )
    return Suggestion(
        current,
        best,
        tuple(groups),
        n_earlier,
        evaluations,
        (now, new),
        difference,
        low > 0,
        reason,
    )


def _holdout_difference(
    table: EventTable, config: ScoringConfig, weights: WeightSet, resamples: int
) -> tuple[float, float, float] | None:
    first, _, ok_first = score_table(table.table, config)
    second, _, ok_second = score_table(table.table, apply_weights(config, weights))
    use = table.holdout & ok_first & ok_second & (first >= 0) & (second >= 0)
    churned = np.array([o.event == "churn" for o in table.outcomes], dtype=bool)[use]
    if int(churned.sum()) < table.min_events or int((~churned).sum()) < table.min_events:
        return None
    return auc_difference_interval(
        (first[use] / 10).tolist(),
        (second[use] / 10).tolist(),
        churned.tolist(),
        resamples=resamples,
    )


def suggest_command(
    runs_dir: str,
    *,
    config_dir: Path | None,
    holdout_months: int,
    include_degraded: bool,
    groups: Sequence[str],
    max_change: Decimal,
    write: Path | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """``health-score suggest-weights``: exit 0 (a suggestion or none), 2 on bad usage/input."""
    from health_score.config import WEIGHTS_FILE, load_scoring_config
    from health_score.dashboard.whatif import rewrite_weights_yaml

    try:
        history = open_history(runs_dir, include_degraded=include_degraded)
    except ValidityError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if isinstance(history, str):
        print(f"error: --runs-dir {runs_dir}: {history}", file=err)
        return 2
    with tempfile.TemporaryDirectory(prefix="hsm-suggest-") as scratch:
        folder = Path(scratch)
        try:
            if config_dir is None:
                newest = history.runs[-1].run_id
                config_dir = folder / "config"
                config_dir.mkdir()
                for name in ("weights.yaml", "thresholds.yaml"):
                    data = history.store.read(newest, f"config/{name}")
                    if data is None:
                        print(f"error: run {newest} has no config/{name}", file=err)
                        return 2
                    (config_dir / name).write_bytes(data)
            config = load_scoring_config(config_dir)
            original_yaml = (config_dir / WEIGHTS_FILE).read_text(encoding="utf-8-sig")
        except (ConfigError, OSError, StoreError) as exc:
            print(f"error: {exc}", file=err)
            return 2

        def raw_path(run_id: str) -> Path | None:
            data = history.store.read(run_id, "raw.csv")
            if data is None:
                return None
            path = folder / f"{run_id}.csv"
            path.write_bytes(data)
            return path

        try:
            table = EventTable.build(history, config, raw_path, holdout_months=holdout_months)
            found = suggest_weights(table, groups=groups, max_change=max_change)
        except (ValueError, StoreError) as exc:
            print(f"error: {exc}", file=err)
            return 2
    print(
        f"Searched {', '.join(found.searched)} (each weight within ±{max_change} of the "
        f"current one) on the {found.earlier_events:,} events before {table.holdout_from}; "
        f"{found.evaluations} weight sets tried. Hold-out: {table.holdout_events:,} events "
        f"(runs of {table.holdout_from} or later), never used by the search.",
        file=out,
    )
    changes = found.changes()
    if changes:
        print("", file=out)
        print(f"{'group':<24} {'weight':<28} {'current':>8} {'suggested':>9}", file=out)
        for section, key, before, after in changes:
            print(f"{section:<24} {key:<28} {before:>8} {after:>9}", file=out)
    print("", file=out)
    judged = Judgement(found.holdout, found.holdout)
    print(f"{'hold-out figure':<40} {'current':>24} {'suggested':>24}", file=out)
    for row in figure_rows(judged)[:4]:
        print(
            f"{row['figure']:<40} {row['current weights']:>24} {row['candidate weights']:>24}",
            file=out,
        )
    print("", file=out)
    print(found.reason, file=out)
    if write is not None:
        if not found.recommended:
            print(f"{write} not written: no change is recommended.", file=out)
        else:
            try:
                write.parent.mkdir(parents=True, exist_ok=True)
                write.write_text(rewrite_weights_yaml(original_yaml, found.suggested), "utf-8")
            except OSError as exc:
                print(f"error: --write {write}: {exc.strerror}", file=err)
                return 2
            print(f"wrote the suggested weights to {write}", file=out)
    return 0
