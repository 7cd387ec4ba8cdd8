"""``health-score backtest``: does the score predict churn? (see :mod:`.stats`, :mod:`.report`).

Reads the run history (``ok`` runs; degraded ones only when asked) and the outcomes (the latest
run's ``outcomes.csv``, or a file given with ``--outcomes``), matches each churn or renewal event
with the account's run ``lead_days``–``horizon_days`` before it, and reports the AUC with its
interval, churn by tier, churner capture, per-input signal and calibration. With ``validity:``
floors in ``thresholds.yaml`` it is a gate: exit 1 when one is missed or cannot be judged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from health_score.backtest.history import (
    HistoryError,
    Outcome,
    RunInfo,
    Store,
    input_names,
    latest_outcomes,
    list_runs,
    observations,
    parse_outcomes,
)
from health_score.backtest.report import Report, build_report, report_lines
from health_score.backtest.stats import DEFAULT_BOOTSTRAP, DEFAULT_SEED
from health_score.config import (
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    ConfigError,
    ConfigFiles,
    load_scoring_config,
    scoring_from,
)
from health_score.loaders.artifacts import LocalRunStore, StoreError
from health_score.loaders.s3_store import S3RunStore
from health_score.scoring.spec import ScoringConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_LEAD_DAYS = 60
DEFAULT_HORIZON_DAYS = 90


class BacktestError(Exception):
    """Bad usage or input (exit 2); the message names the file, run or row."""


@dataclass(frozen=True, slots=True)
class BacktestOptions:
    runs_dir: str
    lead_days: int = DEFAULT_LEAD_DAYS
    horizon_days: int = DEFAULT_HORIZON_DAYS
    first: str | None = None  # YYYY-MM: runs of this period or later
    last: str | None = None
    outcomes_path: Path | None = None
    include_degraded: bool = False
    #: Tiers and validity floors from here; None: the newest run's own copy of its config.
    config_dir: Path | None = None
    json_path: Path | None = None
    resamples: int = DEFAULT_BOOTSTRAP
    seed: int = DEFAULT_SEED


def open_history(runs_dir: str) -> Store:
    if runs_dir.startswith("s3://"):
        return S3RunStore.from_url(runs_dir)
    folder = Path(runs_dir)
    if not folder.is_dir():
        raise BacktestError(f"--runs-dir {runs_dir}: no such folder (no runs to backtest)")
    return LocalRunStore(folder)


def _config(store: Store, options: BacktestOptions, runs: list[RunInfo]) -> ScoringConfig:
    try:
        if options.config_dir is not None:
            return load_scoring_config(options.config_dir)
        newest = runs[-1].run_id
        contents: dict[str, bytes] = {}
        for name in (WEIGHTS_FILE, THRESHOLDS_FILE):
            data = store.read(newest, f"config/{name}")
            if data is not None:
                contents[name] = data
        folder = Path(store.location) / newest / "config"
        return scoring_from(ConfigFiles(folder, (WEIGHTS_FILE, THRESHOLDS_FILE), contents, {}))
    except ConfigError as exc:
        raise BacktestError(str(exc)) from None
    except StoreError as exc:
        raise BacktestError(f"run {runs[-1].run_id}: {exc}") from None


def backtest(options: BacktestOptions) -> Report:
    if options.lead_days < 0 or options.horizon_days <= options.lead_days:
        raise BacktestError(
            f"--horizon-days ({options.horizon_days}) must be greater than --lead-days "
            f"({options.lead_days}) ≥ 0"
        )
    try:
        store = open_history(options.runs_dir)
        statuses = ("ok", "degraded") if options.include_degraded else ("ok",)
        runs = [
            r
            for r in list_runs(store, statuses=statuses)
            if (options.first is None or r.period >= options.first)
            and (options.last is None or r.period <= options.last)
        ]
        if not runs:
            raise BacktestError(
                f"--runs-dir {options.runs_dir}: no {' or '.join(statuses)} runs"
                + (" in the periods asked" if options.first or options.last else "")
            )
        config = _config(store, options, runs)
        if options.outcomes_path is not None:
            try:
                data = options.outcomes_path.read_bytes()
            except OSError as exc:
                raise BacktestError(f"--outcomes {options.outcomes_path}: {exc.strerror}") from None
            source = str(options.outcomes_path)
        else:
            # Outcomes are known at a run's as_of: the newest run of all (any status) knows most.
            every = list_runs(store, statuses=("ok", "degraded", "failed"))
            latest = latest_outcomes(store, every)
            if latest is None:
                raise BacktestError(
                    f"--runs-dir {options.runs_dir}: no run has an outcomes.csv; give one with "
                    "--outcomes FILE (columns account_id, event, date, arr)"
                )
            source = f"run {latest[0]}"
            data = latest[1]
        outcomes = parse_outcomes(data, source)
        found, unmatched = observations(
            store,
            runs,
            outcomes,
            lead_days=options.lead_days,
            horizon_days=options.horizon_days,
        )
    except HistoryError as exc:
        raise BacktestError(str(exc)) from None
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.event] = counts.get(outcome.event, 0) + 1
    return build_report(
        found,
        tiers=config.tier_labels,
        input_names=input_names(found),
        floors=config.validity,
        lead_days=options.lead_days,
        horizon_days=options.horizon_days,
        runs=len(runs),
        periods=(runs[0].period, runs[-1].period),
        outcomes_source=source,
        outcomes=counts,
        unmatched=unmatched,
        resamples=options.resamples,
        seed=options.seed,
    )


def validity_summary(
    store: object,
    outcomes: Sequence[Outcome],
    config: ScoringConfig,
    *,
    lead_days: int = DEFAULT_LEAD_DAYS,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> dict[str, Any]:
    """The compact validity figures a monthly run's manifest carries: the backtest of the ``ok``
    runs already in ``store`` against this run's outcomes (no per-metric table). Never raises:
    a history that cannot be read is reported in the summary."""
    if not isinstance(store, LocalRunStore | S3RunStore):
        return {"status": "skipped", "reason": "the runs folder cannot be listed"}
    try:
        runs = list_runs(store)
        if not runs or not outcomes:
            return {
                "status": "skipped",
                "reason": "no earlier ok runs" if not runs else "no churn or renewal events",
            }
        found, unmatched = observations(
            store,
            runs,
            outcomes,
            lead_days=lead_days,
            horizon_days=horizon_days,
            with_metrics=False,
        )
    except HistoryError as exc:
        return {"status": "failed", "error": str(exc)}
    report = build_report(
        found,
        tiers=config.tier_labels,
        input_names=[],
        floors=config.validity,
        lead_days=lead_days,
        horizon_days=horizon_days,
        runs=len(runs),
        periods=(runs[0].period, runs[-1].period),
        outcomes_source="this run",
        outcomes={},
        unmatched=unmatched,
    )
    return {
        "status": "ok",
        "lead_days": lead_days,
        "horizon_days": horizon_days,
        **report.summary(),
    }


def backtest_command(options: BacktestOptions, out: TextIO, err: TextIO) -> int:
    try:
        report = backtest(options)
    except BacktestError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    for line in report_lines(report):
        print(line, file=out)
    if options.json_path is not None:
        try:
            options.json_path.parent.mkdir(parents=True, exist_ok=True)
            options.json_path.write_text(
                json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            print(f"error: --json {options.json_path}: {exc.strerror}", file=err)
            return EXIT_USAGE
    if report.gate and not report.gate_met:
        missed = ", ".join(c.floor for c in report.gate if not c.met)
        print(f"validity gate missed: {missed}", file=err)
        return EXIT_FAILED
    return EXIT_OK
