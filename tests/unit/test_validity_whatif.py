"""The what-if judged on outcomes, on a tiny history worked out by hand; the ROC points.

Six accounts (two per group) × two monthly runs made by the real pipeline from raw files whose
every metric sits exactly on its green (score 100) or red (score 0) threshold, so each final
score is a one-line sum of weights:

* A1, A2: Support Health all red, the rest green → 100 − 60 × w(support);
* B1, B2: Financial & Contract all red, the rest green → 100 − 60 × w(financial);
* C1, C2: all green → 100 whatever the weights.

(60 = the Health Score's churn-risk weight 0.6 × 100; a red dimension takes its whole share.)
Current weights: support 0.30, financial 0.30 → A 82, B 82, C 100. Candidate: support 0.7,
financial 0.1, adoption 0.1, relationship 0.1 → A 58 (Critical), B 94, C 100.
"""

from __future__ import annotations

import csv
import itertools
import re
import shutil
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from health_score.backtest.stats import auc_fraction, roc_points
from health_score.cli import main
from health_score.config import load_scoring_config
from health_score.dashboard.validity import (
    EventTable,
    History,
    figure_rows,
    load_validity,
    open_history,
    shift_period,
)
from health_score.dashboard.whatif import WhatIf, apply_weights, score_outcomes, weight_sections
from health_score.pipeline import RunOptions, run
from health_score.rawfile import SIGNAL_COLUMNS
from tests.conftest import DEFAULT_CONFIG

#: Account group → the dimension whose metrics sit on red (None: all green).
GROUPS = {"A": "support_health", "B": "financial_contract", "C": None}
#: Run of January (as_of 2026-02-01): events on 2026-04-15, 73 days later (the February run,
#: 45 days before, is too recent). Run of February (as_of 2026-03-01): events on 2026-05-15.
EVENTS = {
    "2026-04-15": {"A": "churn", "B": "renewal", "C": "renewal"},
    "2026-05-15": {"A": "renewal", "B": "churn", "C": "renewal"},
}


def _config(folder: Path, min_events: int | None) -> Path:
    shutil.copytree(DEFAULT_CONFIG, folder)
    if min_events is not None:
        with (folder / "thresholds.yaml").open("a", encoding="utf-8") as handle:
            handle.write(f"\nvalidity:\n  min_events: {min_events}\n")
    return folder


def _raw(path: Path, config_dir: Path, copies: int) -> Path:
    config = load_scoring_config(config_dir)
    metrics = config.metric_names
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["account_id", "account_name", "segment", *metrics, *SIGNAL_COLUMNS])
        for group, red in GROUPS.items():
            cells = []
            for name in metrics:
                dims = [
                    d
                    for d, dim in config.dimensions.items()
                    if any(m.name == name for m in dim.metrics)
                ]
                spec = next(
                    m for dim in config.dimensions.values() for m in dim.metrics if m.name == name
                )
                band = spec.bands["standard"]
                cells.append(str(band.red if red in dims else band.green))
            for copy in range(1, copies + 1):
                account = f"{group}{copy}"
                writer.writerow([account, f"Account {account}", "standard", *cells, 0, 0, 0, 0])
    return path


def write_history(
    base: Path,
    *,
    copies: int = 2,
    min_events: int | None = 2,
    events: dict[str, dict[str, str]] = EVENTS,
) -> tuple[Path, Path]:
    """Runs of 2026-01 and 2026-02 with ``copies`` accounts per group and the outcomes (in
    the February run's outcomes.csv); returns (runs folder, config folder)."""
    config_dir = _config(base / "config", min_events)
    runs = base / "runs"
    ids = []
    for period in ("2026-01", "2026-02"):
        summary = run(
            RunOptions(
                config_dir=config_dir,
                from_raw=_raw(base / f"raw-{period}.csv", config_dir, copies),
                period=period,
                runs_dir=str(runs),
                output=base / f"scores-{period}.csv",
            )
        )
        assert summary.run_id is not None, summary.messages
        ids.append(summary.run_id)
    lines = ["account_id,event,date,arr"]
    for day, happened in events.items():
        for group, event in happened.items():
            lines += [f"{group}{copy},{event},{day},1000" for copy in range(1, copies + 1)]
    (runs / ids[-1] / "outcomes.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return runs, config_dir


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_history(tmp_path_factory.mktemp("validity"))


def _candidate(config_dir: Path):  # type: ignore[no-untyped-def]
    config = load_scoring_config(config_dir)
    weights = dict(weight_sections(config))
    weights["churn_risk"] = (
        ("support_health", Decimal("0.7")),
        ("financial_contract", Decimal("0.1")),
        ("adoption_engagement", Decimal("0.1")),
        ("relationship_expansion", Decimal("0.1")),
    )
    return config, apply_weights(config, tuple(weights.items()))


def _table(runs: Path, config_dir: Path, holdout_months: int) -> EventTable:
    found = open_history(str(runs))
    assert isinstance(found, History)
    config = load_scoring_config(config_dir)
    return EventTable.build(
        found,
        config,
        lambda run_id: runs / run_id / "raw.csv",
        holdout_months=holdout_months,
    )


def test_the_hand_computed_scores_come_out(history: tuple[Path, Path]) -> None:
    runs, _ = history
    text = (sorted(runs.iterdir())[0] / "scores.csv").read_text(encoding="utf-8")
    scores = {
        row["account_id"]: (row["final_score"], row["health_tier"])
        for row in csv.DictReader(text.splitlines())
    }
    assert scores["A1"] == ("82.0", "Healthy")
    assert scores["B1"] == ("82.0", "Healthy")
    assert scores["C1"] == ("100.0", "Champion")


def test_whatif_figures_on_the_holdout_and_the_earlier_events(history: tuple[Path, Path]) -> None:
    runs, config_dir = history
    table = _table(runs, config_dir, holdout_months=1)
    assert table.size == 12 and table.holdout_events == 6
    assert table.holdout_from == "2026-02"
    current, candidate = _candidate(config_dir)
    judged = table.judge(current, candidate)
    now, new = judged.holdout
    # Hold-out (February run): renewers A (82) and C (100), churners B (82). Current: A–B
    # ties (4 pairs × ½) and C beats B (4): 6/8. Candidate A 58, B 94: only C beats B: 4/8.
    assert now.score.value == 0.75 and new.score.value == 0.5
    assert (now.score.churners, now.score.renewers) == (2, 4)
    assert now.red_lift is None  # no account is Critical with the current weights
    assert new.red_lift == 0.0  # A (Critical) renewed
    assert (
        now.churner_capture_pct == 0.0 and new.churner_capture_pct == 0.0
    )  # B is Healthy/Champion
    assert now.green_share_pct == 100.0 and new.green_share_pct == 66.67  # A drops to Critical
    now, new = judged.earlier
    # Earlier (January run): churners A, renewers B and C. Current 6/8; candidate: all 8 won.
    assert now.score.value == 0.75 and new.score.value == 1.0
    assert new.red_lift == 3.0  # Critical: 2 of 2 churned, base rate 2/6
    assert now.churner_capture_pct == 0.0 and new.churner_capture_pct == 100.0
    assert new.green_share_pct == 66.67
    rows = figure_rows(judged)
    assert rows[1] == {
        "events": "hold-out",
        "figure": "red-tier lift",
        "current weights": "—",
        "candidate weights": "0.00×",
    }
    assert rows[0]["current weights"].startswith("0.750 (")


def test_too_few_events_in_the_holdout_give_no_auc(history: tuple[Path, Path]) -> None:
    runs, config_dir = history
    # Hold-out from 2026-01: every event is in it and none is earlier.
    table = _table(runs, config_dir, holdout_months=2)
    current, candidate = _candidate(config_dir)
    judged = table.judge(current, candidate)
    assert judged.holdout[0].score.value == 0.75
    assert judged.earlier[0].events == 0 and judged.earlier[0].score.value is None
    assert figure_rows(judged)[4]["current weights"] == "too few events (0 churners, 0 renewers)"


def test_the_validity_page_data_and_lead_windows(history: tuple[Path, Path]) -> None:
    runs, config_dir = history
    found = open_history(str(runs))
    assert isinstance(found, History)
    validity = load_validity(found, load_scoring_config(config_dir), resamples=200)
    # 60–90 days: all 12 events matched; recorded scores A/B 82, C 100; churners A (Jan) and
    # B (Feb) at 82, renewers B, C (Jan) and A, C (Feb): 8 renewers × 4 churners = 32 pairs,
    # 4 renewers at 100 win 16, 4 at 82 tie 16 → (16 + 8) / 32 = 3/4.
    assert validity.report.score.value == 0.75
    assert validity.roc == [(0.0, 0.0, None), (0.5, 1.0, 82.0), (1.0, 1.0, 100.0)]
    by_window = {(c.lead_days, c.horizon_days): c for c in validity.leads}
    assert by_window[(60, 90)].churners == 4 and by_window[(60, 90)].capture_pct == 0.0
    # 30–60 days: the January events (2026-04-15) are 45 days after the February run.
    assert by_window[(30, 60)].churners == 2 and by_window[(30, 60)].events == 6
    # 0–30 days: no run within 30 days of an event: too few events, not 0 %.
    assert by_window[(0, 30)].capture_pct is None
    assert by_window[(0, 30)].note == "too few events (0 churners; need 2)"


def test_no_outcomes_and_no_runs_are_states(tmp_path: Path, history: tuple[Path, Path]) -> None:
    runs, _ = history
    empty = tmp_path / "runs"
    empty.mkdir()
    assert "No ok runs" in str(open_history(str(empty)))
    copy = tmp_path / "copy"
    shutil.copytree(runs, copy)
    for outcomes in copy.glob("*/outcomes.csv"):
        outcomes.unlink()
    assert str(open_history(str(copy))).startswith("No run has an outcomes.csv yet")
    for manifest in copy.glob("*/manifest.json"):
        manifest.write_text(manifest.read_text().replace('"status": "ok"', '"status": "degraded"'))
    assert str(open_history(str(copy))) == (
        "No ok runs placed in time (with an as_of) in this runs folder yet. There are degraded "
        "runs: include them to backtest those."
    )


def test_roc_points_follow_the_thresholds_and_enclose_the_auc() -> None:
    # Renewers 3, 5, 7; churners 1, 5 (the backtest test's example, AUC 3/4).
    pairs = [(3.0, False), (5.0, False), (7.0, False), (1.0, True), (5.0, True), (None, True)]
    points = roc_points(pairs)
    third = 1 / 3
    assert points == [
        (0.0, 0.0, None),
        (0.0, 0.5, 1.0),
        (third, 0.5, 3.0),
        (2 * third, 1.0, 5.0),
        (1.0, 1.0, 7.0),
    ]
    area = sum(
        Fraction(x2 - x1) * Fraction(y1 + y2) / 2
        for (x1, y1, _), (x2, y2, _) in itertools.pairwise(points)
    )
    assert abs(float(area) - float(auc_fraction([3, 5, 7], [1, 5]))) < 1e-12
    assert roc_points([(1.0, True)]) == []


def test_shift_period() -> None:
    assert shift_period("2026-02", -5) == "2025-09"
    assert shift_period("2025-12", 1) == "2026-01"


def test_the_array_scored_whatif_equals_the_exact_rule(tmp_path: Path) -> None:
    """The What-if engine's default (array) path gives the exact rule's numbers, account by
    account, for the run's weights and for candidate weights."""
    example = Path(__file__).resolve().parents[2] / "examples" / "raw_metrics.csv"
    engine = WhatIf(example, DEFAULT_CONFIG)
    assert engine.table is not None
    weights = dict(engine.weights)
    weights["churn_risk"] = (
        ("support_health", Decimal("0.7")),
        ("financial_contract", Decimal("0.1")),
        ("adoption_engagement", Decimal("0.1")),
        ("relationship_expansion", Decimal("0.1")),
    )
    for candidate in (engine.weights, tuple(weights.items())):
        exact = score_outcomes(engine.accounts, apply_weights(engine.config, candidate))
        assert engine.outcome(candidate) == exact
    moved = engine.migration(tuple(weights.items()))
    assert any(b[1] != a[1] for b, a in zip(moved.before, moved.after, strict=True))


def test_suggest_weights_refuses_a_change_that_does_worse_on_the_holdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs, _ = write_history(tmp_path, copies=10, min_events=None)
    written = tmp_path / "suggested.yaml"
    code = main(
        [
            "suggest-weights",
            "--runs-dir",
            str(runs),
            "--holdout-months",
            "1",
            "--write",
            str(written),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    # On the earlier (January) events A churns: Support Health up one step (0.35, the group
    # re-normalised: 0.35/1.05 = 0.3333) ranks every renewer above A (AUC 1.0). On the
    # hold-out B churns: B 100 − 60 × 0.2857 = 82.9, A 80.0, C 100: AUC 0.5 against 0.75.
    assert "on the 30 events before 2026-02" in out
    assert re.search(r"churn_risk +support_health +0\.30 +0\.3333", out)
    assert re.search(r"churn_risk +financial_contract +0\.30 +0\.2857", out)
    assert "No change recommended: on the hold-out the AUC falls by -0.250" in out
    assert not written.exists()


def test_suggest_weights_recommends_a_gain_outside_the_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A churns after both runs: the same change helps the hold-out too (0.75 → 1.0).
    same = {"2026-04-15": EVENTS["2026-04-15"], "2026-05-15": EVENTS["2026-04-15"]}
    runs, config_dir = write_history(tmp_path, copies=10, min_events=None, events=same)
    written = tmp_path / "suggested.yaml"
    code = main(
        [
            "suggest-weights",
            "--runs-dir",
            str(runs),
            "--holdout-months",
            "1",
            "--write",
            str(written),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Recommended: on the hold-out the AUC rises by +0.250" in out
    folder = tmp_path / "suggested-config"
    shutil.copytree(config_dir, folder)
    shutil.copy(written, folder / "weights.yaml")
    weights = load_scoring_config(folder).churn_risk_weights
    assert weights["support_health"] == Decimal("0.3333")
    assert weights["financial_contract"] == Decimal("0.2857")
