"""The backtest report: every figure from the observations, the validity gate and a verdict.

:func:`build_report` turns observations into a :class:`Report` (JSON-ready with
:meth:`Report.as_dict`, readable with :func:`report_lines`). The gate compares the report with
the ``validity:`` floors of ``thresholds.yaml``; a floor that cannot be judged (too few events)
is not met — a gate never passes on missing evidence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from health_score.backtest.stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_MIN_EVENTS,
    DEFAULT_SEED,
    AucFigure,
    Capture,
    Observation,
    TierRow,
    auc_figure,
    capture,
    monotone,
    tier_table,
)
from health_score.scoring.spec import INSUFFICIENT_DATA, ValidityFloors

#: How many of the best tiers count as "healthy" for capture and the green share.
HEALTHIEST_TIERS = 2


@dataclass(frozen=True, slots=True)
class InputSignal:
    """One dimension or metric judged alone."""

    name: str
    kind: str  # dimension | metric
    coverage_pct: float | None
    figure: AucFigure

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "coverage_pct": self.coverage_pct,
            **self.figure.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class GateCheck:
    floor: str
    required: float
    actual: float | None
    met: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "floor": self.floor,
            "required": self.required,
            "actual": self.actual,
            "met": self.met,
            "note": self.note,
        }


@dataclass(frozen=True)
class Report:
    lead_days: int
    horizon_days: int
    runs: int
    periods: tuple[str, str] | None
    outcomes_source: str
    outcomes: dict[str, int]
    matched: int
    unmatched: int
    score: AucFigure
    tiers: list[TierRow]
    tiers_monotone: bool
    base_rate_pct: float | None
    capture: Capture
    healthiest: tuple[str, ...]
    inputs: list[InputSignal]
    calibration: list[TierRow]
    gate: list[GateCheck] = field(default_factory=list)

    @property
    def gate_met(self) -> bool:
        return all(check.met for check in self.gate)

    def red_lift(self) -> float | None:
        scored = [r for r in self.tiers if r.tier != INSUFFICIENT_DATA]
        return scored[-1].lift if scored else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "lead_days": self.lead_days,
            "horizon_days": self.horizon_days,
            "runs": self.runs,
            "periods": None if self.periods is None else list(self.periods),
            "outcomes_source": self.outcomes_source,
            "outcomes": self.outcomes,
            "events_matched": self.matched,
            "events_without_a_run": self.unmatched,
            "score": self.score.as_dict(),
            "base_rate_pct": self.base_rate_pct,
            "tiers": [r.as_dict() for r in self.tiers],
            "tiers_monotone": self.tiers_monotone,
            "capture": {"healthiest_tiers": list(self.healthiest), **self.capture.as_dict()},
            "inputs": [s.as_dict() for s in self.inputs],
            "calibration": [r.as_dict() for r in self.calibration],
            "gate": [c.as_dict() for c in self.gate],
            "gate_met": self.gate_met,
            "verdict": verdict(self),
        }

    def summary(self) -> dict[str, Any]:
        """The compact validity summary a monthly run's manifest carries."""
        return {
            "auc": self.score.as_dict()["auc"],
            "interval_95": self.score.as_dict()["interval_95"],
            "churners": self.score.churners,
            "renewers": self.score.renewers,
            "red_lift": None if self.red_lift() is None else round(float(self.red_lift() or 0), 3),
            "churner_capture_pct": self.capture.churner_capture_pct,
            "healthiest_share_pct": self.capture.healthiest_share_pct,
            "tiers_monotone": self.tiers_monotone,
            "gate_met": self.gate_met if self.gate else None,
            "verdict": verdict(self),
        }


def build_report(
    found: Sequence[Observation],
    *,
    tiers: Sequence[str],
    input_names: Sequence[str],
    floors: ValidityFloors,
    lead_days: int,
    horizon_days: int,
    runs: int,
    periods: tuple[str, str] | None,
    outcomes_source: str,
    outcomes: dict[str, int],
    unmatched: int,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
) -> Report:
    min_events = floors.min_events or DEFAULT_MIN_EVENTS
    scored_tiers = [t for t in tiers if t != INSUFFICIENT_DATA]
    healthiest = tuple(scored_tiers[:HEALTHIEST_TIERS])
    score = auc_figure(
        [(o.final_score, o.churned) for o in found],
        min_events=min_events,
        resamples=resamples,
        seed=seed,
    )
    table = tier_table(found, tiers)
    churned = sum(o.churned for o in found)
    base = round(100 * churned / len(found), 2) if found else None
    signals: list[InputSignal] = []
    for name in input_names:
        pairs = [(o.inputs.get(name), o.churned) for o in found]
        have = sum(value is not None for value, _ in pairs)
        kind = "metric" if name.startswith("metric:") else "dimension"
        signals.append(
            InputSignal(
                name.removeprefix("metric:"),
                kind,
                round(100 * have / len(found), 1) if found else None,
                auc_figure(pairs, min_events=min_events, bootstrap=False),
            )
        )
    # Strongest signal first; inputs with too few events last, by name.
    signals.sort(
        key=lambda s: (
            s.figure.value is None,
            -(s.figure.value or 0.0),
            s.kind,
            s.name,
        )
    )
    groups = {
        INSUFFICIENT_DATA: [
            o for o in found if o.tier == INSUFFICIENT_DATA or o.final_score is None
        ],
        "low coverage": [o for o in found if o.low_coverage],
        "capped by signals": [o for o in found if o.capped],
    }
    calibration = []
    for label, group in groups.items():
        lost = sum(o.churned for o in group)
        rate = lost / len(group) if group else None
        lift = rate / (churned / len(found)) if rate is not None and churned else None
        calibration.append(TierRow(label, len(group), lost, rate, lift))
    report = Report(
        lead_days=lead_days,
        horizon_days=horizon_days,
        runs=runs,
        periods=periods,
        outcomes_source=outcomes_source,
        outcomes=outcomes,
        matched=len(found),
        unmatched=unmatched,
        score=score,
        tiers=table,
        tiers_monotone=monotone([r for r in table if r.tier != INSUFFICIENT_DATA]),
        base_rate_pct=base,
        capture=capture(found, healthiest),
        healthiest=healthiest,
        inputs=signals,
        calibration=calibration,
    )
    return Report(**{**_fields(report), "gate": gate(report, floors)})


def _fields(report: Report) -> dict[str, Any]:
    return {name: getattr(report, name) for name in Report.__dataclass_fields__}


def gate(report: Report, floors: ValidityFloors) -> list[GateCheck]:
    """Each configured floor against the report (too few events: not met)."""
    checks: list[GateCheck] = []
    too_few = report.score.value is None

    def check(name: str, required: float | None, actual: float | None, at_least: bool) -> None:
        if required is None:
            return
        if actual is None or too_few:
            note = report.score.note if too_few else "no value (no events in the tiers it needs)"
            checks.append(GateCheck(name, required, actual, False, f"cannot be judged: {note}"))
            return
        met = actual >= required if at_least else actual <= required
        checks.append(GateCheck(name, required, round(actual, 4), met))

    check("min_auc", floors.min_auc, report.score.value, True)
    check("min_red_lift", floors.min_red_lift, report.red_lift(), True)
    check(
        "min_churner_capture_pct",
        floors.min_churner_capture_pct,
        report.capture.churner_capture_pct,
        True,
    )
    check(
        "max_green_share_pct",
        floors.max_green_share_pct,
        report.capture.healthiest_share_pct,
        False,
    )
    return checks


def verdict(report: Report) -> str:
    """The report in a few plain sentences."""
    s = report.score
    if s.value is None or s.low is None or s.high is None:
        return (
            f"Not enough history to judge the score yet: {s.churners} churn and {s.renewers} "
            f"renewal events had a run {report.lead_days}–{report.horizon_days} days before them "
            f"({s.note})."
        )
    if s.low > 0.5:
        strength = "strongly" if s.value >= 0.8 else ("well" if s.value >= 0.7 else "somewhat")
        first = (
            f"The score separates churners from renewers {strength}: AUC {s.value:.2f} "
            f"(95 % interval {s.low:.2f}–{s.high:.2f}; 0.5 is a coin toss), from {s.churners} "
            f"churns and {s.renewers} renewals."
        )
    elif s.high < 0.5:
        first = (
            f"The score points the wrong way: renewers scored lower than churners (AUC "
            f"{s.value:.2f}, interval {s.low:.2f}–{s.high:.2f}). Review the weights."
        )
    else:
        first = (
            f"The score is no better than chance at telling churners from renewers: AUC "
            f"{s.value:.2f} with an interval ({s.low:.2f}–{s.high:.2f}) that contains 0.5."
        )
    parts = [first]
    lift = report.red_lift()
    scored = [r for r in report.tiers if r.tier != INSUFFICIENT_DATA]
    if lift is not None and scored:
        parts.append(
            f"{scored[-1].tier} accounts churned at {lift:.1f}× the base rate "
            f"({report.base_rate_pct:.1f} %); the tiers are "
            + (
                "monotone."
                if report.tiers_monotone
                else "NOT monotone (a better tier churned more)."
            )
        )
    capture_pct = report.capture.churner_capture_pct
    if capture_pct is not None:
        parts.append(
            f"{capture_pct:.0f} % of churners were below {' and '.join(report.healthiest)} "
            f"{report.lead_days}–{report.horizon_days} days before they churned."
        )
    if report.gate:
        missed = [c.floor for c in report.gate if not c.met]
        parts.append(
            "Validity floors: all met."
            if not missed
            else f"Validity floors missed: {', '.join(missed)}."
        )
    return " ".join(parts)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def report_lines(report: Report) -> Iterator[str]:
    """The report for a terminal."""
    s = report.score
    span = f"{report.periods[0]} … {report.periods[1]}" if report.periods else "no runs"
    yield f"Backtest over {report.runs} ok runs ({span}); outcomes from {report.outcomes_source}"
    yield (
        f"Events: {report.outcomes.get('churn', 0)} churn, {report.outcomes.get('renewal', 0)} "
        f"renewal; {report.matched} with a run {report.lead_days}–{report.horizon_days} days "
        f"before, {report.unmatched} without"
    )
    yield ""
    if s.value is None:
        yield f"AUC of the final score: — ({s.note})"
    else:
        yield (
            f"AUC of the final score: {s.value:.3f}  (95 % interval {s.low:.3f}–{s.high:.3f}; "
            f"{s.churners} churners, {s.renewers} renewers)"
        )
    yield ""
    yield f"{'tier':<20} {'accounts':>8} {'churned':>8} {'rate':>8} {'lift':>6}"
    for row in report.tiers:
        lift = "—" if row.lift is None else f"{row.lift:.2f}"
        rate = "—" if row.rate is None else f"{100 * row.rate:.1f} %"
        yield f"{row.tier:<20} {row.accounts:>8} {row.churned:>8} {rate:>8} {lift:>6}"
    yield f"base rate {_pct(report.base_rate_pct)}; tiers monotone: {report.tiers_monotone}"
    yield ""
    c = report.capture
    top = " + ".join(report.healthiest)
    yield (
        f"Churners below {top}: {_pct(c.churner_capture_pct)} of churners "
        f"({_pct(c.churner_arr_capture_pct)} of their ARR)"
    )
    yield (
        f"Book in {top}: {_pct(c.healthiest_share_pct)} of accounts "
        f"({_pct(c.healthiest_arr_share_pct)} of ARR)"
    )
    yield ""
    yield f"{'input':<34} {'kind':<9} {'coverage':>9} {'AUC':>6}  interval"
    for signal in report.inputs:
        f = signal.figure
        value = "—" if f.value is None else f"{f.value:.3f}"
        interval = "too few events" if f.low is None else f"{f.low:.3f}–{f.high:.3f}"
        yield (
            f"{signal.name:<34} {signal.kind:<9} {_pct(signal.coverage_pct):>9} {value:>6}  "
            f"{interval}"
        )
    yield ""
    yield f"{'calibration':<20} {'accounts':>8} {'churned':>8} {'rate':>8} {'lift':>6}"
    for row in report.calibration:
        lift = "—" if row.lift is None else f"{row.lift:.2f}"
        rate = "—" if row.rate is None else f"{100 * row.rate:.1f} %"
        yield f"{row.tier:<20} {row.accounts:>8} {row.churned:>8} {rate:>8} {lift:>6}"
    if report.gate:
        yield ""
        for check in report.gate:
            actual = "—" if check.actual is None else f"{check.actual:g}"
            status = "met" if check.met else "MISSED"
            note = f" — {check.note}" if check.note else ""
            yield (
                f"validity {check.floor}: {status} (required {check.required:g}, got {actual})"
                f"{note}"
            )
    yield ""
    yield verdict(report)
