"""The backtest's figures on small examples worked out by hand, the event-to-run matching, the
outcomes file's errors and the validity gate."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from health_score.backtest import BacktestOptions, backtest, backtest_command
from health_score.backtest.history import HistoryError, parse_outcomes
from health_score.backtest.report import build_report, gate
from health_score.backtest.stats import (
    Observation,
    auc_figure,
    auc_fraction,
    bootstrap_interval,
    capture,
    monotone,
    tier_table,
)
from health_score.config import ConfigError, load_scoring_config
from health_score.scoring.spec import ValidityFloors
from tests.conftest import DEFAULT_CONFIG

TIERS = ("Champion", "Healthy", "At Risk", "Critical", "Insufficient Data")


def obs(tier: str, churned: bool, arr: int = 100, score: float | None = 50.0) -> Observation:
    return Observation(
        account_id=f"{tier}-{churned}-{arr}",
        event="churn" if churned else "renewal",
        day="2026-06-15",
        arr=Decimal(arr),
        run_id="r",
        period="2026-03",
        final_score=score,
        tier=tier,
    )


def test_auc_counts_wins_and_half_ties_exactly() -> None:
    # Renewers 3, 5, 7 against churners 1, 5: of the 6 pairs, (3,1) (5,1) (7,1) (7,5) are won,
    # (5,5) is a tie and (3,5) is lost: (4 + ½) / 6 = 3/4.
    assert auc_fraction([3, 5, 7], [1, 5]) == Fraction(3, 4)
    assert auc_fraction([10, 20], [1, 2, 3]) == 1
    assert auc_fraction([1, 2, 3], [10, 20]) == 0
    assert auc_fraction([4, 4], [4]) == Fraction(1, 2)
    # Ties across both groups: renewers 2, 2, 9 and churners 2, 1: pairs won (2,1) (2,1)
    # (9,2) (9,1) = 4, tied (2,2) (2,2) = 2 × ½: 5/6.
    assert auc_fraction([2, 2, 9], [2, 1]) == Fraction(5, 6)


def test_the_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    good = [float(v) for v in range(40, 80)]
    bad = [float(v) for v in range(20, 60, 2)]
    first = bootstrap_interval(good, bad, resamples=300, seed=1)
    assert first == bootstrap_interval(good, bad, resamples=300, seed=1)
    assert first != bootstrap_interval(good, bad, resamples=300, seed=2)
    value = float(auc_fraction(good, bad))
    assert first[0] < value < first[1]
    # Perfect separation stays perfect in every resample.
    assert bootstrap_interval([9.0, 8.0], [1.0, 2.0], resamples=50) == (1.0, 1.0)


def test_too_few_events_give_no_number() -> None:
    pairs = [(float(i), i % 2 == 0) for i in range(15)]  # 8 churners, 7 renewers
    figure = auc_figure(pairs, min_events=10)
    assert figure.value is None and figure.low is None
    assert (figure.churners, figure.renewers) == (8, 7)
    assert figure.note == "too few events (need 10 churners and 10 renewers with a value)"
    # Accounts with no score are left out of the AUC (they show in the calibration).
    figure = auc_figure([(None, True)] * 20 + [(1.0, False)] * 20, min_events=10)
    assert (figure.churners, figure.renewers, figure.value) == (0, 20, None)


def _book() -> list[Observation]:
    # 12 accounts: Champion 4 (no churn), Healthy 4 (1 churn), At Risk 2 (1), Critical 2 (2).
    return [
        *[obs("Champion", False, 100) for _ in range(4)],
        *[obs("Healthy", False, 100) for _ in range(3)],
        obs("Healthy", True, 100),
        obs("At Risk", False, 50),
        obs("At Risk", True, 50),
        obs("Critical", True, 25),
        obs("Critical", True, 25),
    ]


def test_churn_rate_and_lift_per_tier() -> None:
    rows = tier_table(_book(), TIERS)
    # Base rate 4/12 = 1/3: rates 0, 1/4, 1/2, 1 → lifts 0, 0.75, 1.5, 3.
    assert [(r.tier, r.accounts, r.churned) for r in rows] == [
        ("Champion", 4, 0),
        ("Healthy", 4, 1),
        ("At Risk", 2, 1),
        ("Critical", 2, 2),
        ("Insufficient Data", 0, 0),
    ]
    assert [r.rate for r in rows[:4]] == [0.0, 0.25, 0.5, 1.0]
    assert [round(r.lift or 0, 9) for r in rows[:4]] == [0.0, 0.75, 1.5, 3.0]
    assert rows[4].rate is None and rows[4].lift is None
    assert monotone(rows[:4])
    assert not monotone(tier_table([*_book(), *[obs("Champion", True)] * 4], TIERS)[:4])


def test_churner_capture_and_the_green_share_by_count_and_arr() -> None:
    c = capture(_book(), ("Champion", "Healthy"))
    # Churners: Healthy 1, At Risk 1, Critical 2 → 3 of 4 below the two healthiest tiers.
    assert (c.churners, c.churners_flagged, c.churner_capture_pct) == (4, 3, 75.0)
    # Book: 8 of 12 in Champion + Healthy.
    assert (c.book, c.book_healthiest, c.healthiest_share_pct) == (12, 8, 66.67)
    # ARR: churners 100 + 50 + 25 + 25 = 200, flagged 100 → 50 %; book 400 + 400 + 100 + 50
    # = 950, of which 800 in the healthiest tiers → 84.21 %.
    assert (c.churner_arr, c.churner_arr_flagged) == (Decimal(200), Decimal(100))
    assert c.churner_arr_capture_pct == 50.0
    assert (c.book_arr, c.book_arr_healthiest) == (Decimal(950), Decimal(800))
    assert c.healthiest_arr_share_pct == 84.21
    # A churner without a score, or with one too thin for a tier, was not flagged by it.
    unscored = capture(
        [obs("Insufficient Data", True, score=None), obs("Insufficient Data", True, score=30.0)],
        ("Champion", "Healthy"),
    )
    assert (unscored.churners, unscored.churners_flagged) == (2, 0)


def test_the_gate_misses_a_floor_and_never_passes_without_evidence() -> None:
    # 10 churners at scores 0..9 and 10 renewers at 5..14, 100 pairs: a renewer 5+k is below
    # the churners above it (4 + 3 + 2 + 1 = 10 pairs lost) and ties one churner for k < 5
    # (5 ties, ½ each): AUC = (100 − 10 − 5 + 2.5) / 100 = 0.875.
    found = [
        Observation(f"c{i}", "churn", "2026-06-15", Decimal(1), "r", "p", float(i), "Critical")
        for i in range(10)
    ] + [
        Observation(f"r{i}", "renewal", "2026-06-15", Decimal(1), "r", "p", float(5 + i), "Healthy")
        for i in range(10)
    ]
    assert auc_fraction([5 + i for i in range(10)], list(range(10))) == Fraction(7, 8)
    floors = ValidityFloors(min_auc=0.9, min_red_lift=1.5)
    report = build_report(
        found,
        tiers=TIERS,
        input_names=[],
        floors=floors,
        lead_days=60,
        horizon_days=90,
        runs=1,
        periods=("p", "p"),
        outcomes_source="test",
        outcomes={"churn": 10, "renewal": 10},
        unmatched=0,
        resamples=200,
    )
    assert report.score.value == 0.875
    checks = {c.floor: c for c in report.gate}
    assert not checks["min_auc"].met and checks["min_auc"].actual == 0.875
    # Critical: 10 of 10 churned against a base rate of 1/2 → lift 2.
    assert checks["min_red_lift"].met and checks["min_red_lift"].actual == 2.0
    assert not report.gate_met
    few = build_report(
        found[:5] + found[10:15],
        tiers=TIERS,
        input_names=[],
        floors=floors,
        lead_days=60,
        horizon_days=90,
        runs=1,
        periods=("p", "p"),
        outcomes_source="test",
        outcomes={},
        unmatched=0,
    )
    assert [c.met for c in gate(few, floors)] == [False, False]
    assert gate(few, floors)[0].note.startswith("cannot be judged: too few events")


def test_outcomes_errors_name_the_file_line_and_column() -> None:
    header = b"account_id,event,date,arr\n"
    cases = {
        b"account_id,date\n": "x.csv: missing column(s) event",
        header + b"A,churned,2026-01-02,5\n": "x.csv: line 2: event 'churned' is not churn or",
        header + b"A,churn,02/01/2026,5\n": "x.csv: line 2: date '02/01/2026' is not YYYY-MM-DD",
        header + b"A,churn,2026-01-02,lots\n": "x.csv: line 2: arr 'lots' is not a number",
        header + b"A,renewal,2026-01-02,1\n,churn,2026-01-02,1\n": "x.csv: line 3: account_id",
    }
    for data, message in cases.items():
        with pytest.raises(HistoryError) as exc:
            parse_outcomes(data, "x.csv")
        assert str(exc.value).startswith(message), str(exc.value)
    rows = parse_outcomes(header + b"'=A,Churn,2026-01-02T00:00:00,\n", "x.csv")
    assert rows[0].account_id == "=A" and rows[0].event == "churn" and rows[0].arr is None


def _run(
    folder: Path, run_id: str, period: str, as_of: str, scores: str, status: str = "ok"
) -> None:
    run = folder / run_id
    (run / "config").mkdir(parents=True)
    for name in ("weights.yaml", "thresholds.yaml"):
        (run / "config" / name).write_bytes((DEFAULT_CONFIG / name).read_bytes())
    (run / "manifest.json").write_text(
        json.dumps({"status": status, "period": period, "as_of": as_of, "started_at": f"{as_of}-x"})
    )
    header = "account_id,final_score,health_tier,low_coverage,qualitative_override,cap_value\n"
    (run / "scores.csv").write_text(header + scores)


def test_each_event_takes_the_run_60_to_90_days_before_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # An event on 2026-06-15 looks at runs with as_of in [2026-03-17, 2026-04-16]: the run of
    # 2026-03 (as_of 2026-04-01), not 2026-02 (too early) nor 2026-04 (too late).
    _run(runs, "feb", "2026-02", "2026-03-01T00:00:00+00:00", "A,10,Critical,false,false,\n")
    _run(
        runs,
        "mar",
        "2026-03",
        "2026-04-01T00:00:00+00:00",
        "A,70,At Risk,true,true,65\nB,40,Insufficient Data,true,false,\n",
    )
    _run(runs, "apr", "2026-04", "2026-05-01T00:00:00+00:00", "A,90,Champion,false,false,\n")
    _run(
        runs,
        "bad",
        "2026-03",
        "2026-04-01T00:00:00+00:00",
        "A,1,Critical,false,false,\n",
        "degraded",
    )
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text(
        "account_id,event,date,arr\nA,churn,2026-06-15,1200\nB,renewal,2026-06-15,10\n"
        "A,renewal,2026-02-01,5\n"
    )
    out, err = io.StringIO(), io.StringIO()
    json_path = tmp_path / "report.json"
    options = BacktestOptions(runs_dir=str(runs), outcomes_path=outcomes, json_path=json_path)
    assert backtest_command(options, out, err) == 0, err.getvalue()
    report = json.loads(json_path.read_text())
    # A's churn and B's renewal matched the March run; A's renewal has no run before it.
    assert report["events_matched"] == 2
    assert report["events_without_a_run"] == 1
    assert report["runs"] == 3
    # Base rate 1 of 2: A (At Risk, churned) has rate 1 → lift 2.
    assert report["tiers"][2] == {
        "tier": "At Risk",
        "accounts": 1,
        "churned": 1,
        "churn_rate_pct": 100.0,
        "lift": 2.0,
    }
    # B scored 40 but too thinly for a tier: Insufficient Data in the calibration, not flagged.
    assert report["calibration"] == [
        {
            "tier": "Insufficient Data",
            "accounts": 1,
            "churned": 0,
            "churn_rate_pct": 0.0,
            "lift": 0.0,
        },
        {"tier": "low coverage", "accounts": 2, "churned": 1, "churn_rate_pct": 50.0, "lift": 1.0},
        {
            "tier": "capped by signals",
            "accounts": 1,
            "churned": 1,
            "churn_rate_pct": 100.0,
            "lift": 2.0,
        },
    ]
    assert report["capture"]["churners_below_healthiest"] == 1
    assert report["score"]["auc"] is None
    assert "Not enough history to judge the score yet" in report["verdict"]
    assert "AUC of the final score: — (too few events" in out.getvalue()


def test_bad_history_is_a_usage_error_without_a_traceback(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = backtest_command(BacktestOptions(runs_dir=str(tmp_path / "none")), out, err)
    assert code == 2
    assert (
        err.getvalue()
        == f"error: --runs-dir {tmp_path / 'none'}: no such folder (no runs to backtest)\n"
    )
    runs = tmp_path / "runs"
    _run(runs, "mar", "2026-03", "2026-04-01T00:00:00+00:00", "A,70,At Risk,false,false,\n")
    err = io.StringIO()
    assert backtest_command(BacktestOptions(runs_dir=str(runs)), out, err) == 2
    assert "no run has an outcomes.csv; give one with --outcomes FILE" in err.getvalue()
    with pytest.raises(Exception, match="must be greater than --lead-days"):
        backtest(BacktestOptions(runs_dir=str(runs), lead_days=90, horizon_days=60))


def test_validity_floors_are_validated_in_thresholds_yaml(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "weights.yaml").write_bytes((DEFAULT_CONFIG / "weights.yaml").read_bytes())
    text = (DEFAULT_CONFIG / "thresholds.yaml").read_text()
    (folder / "thresholds.yaml").write_text(
        text + "\nvalidity:\n  min_auc: 1.5\n  min_lift: 2\n  min_events: 1\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_scoring_config(folder)
    message = str(exc.value)
    assert "validity.min_auc: expected a number in 0–1, got 1.5" in message
    assert "validity.min_lift: unknown floor" in message
    assert "validity.min_events: expected a whole number ≥ 2, got 1" in message
    (folder / "thresholds.yaml").write_text(
        text + "\nvalidity:\n  min_auc: 0.65\n  min_red_lift: 2\n"
    )
    floors = load_scoring_config(folder).validity
    assert (floors.min_auc, floors.min_red_lift, floors.min_events) == (0.65, 2.0, None)


def test_candidate_weights_keep_the_validity_floors(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "weights.yaml").write_bytes((DEFAULT_CONFIG / "weights.yaml").read_bytes())
    text = (DEFAULT_CONFIG / "thresholds.yaml").read_text()
    (folder / "thresholds.yaml").write_text(text + "\nvalidity:\n  min_auc: 0.7\n  min_events: 5\n")
    config = load_scoring_config(folder)
    candidate = config.with_weights(churn_risk_weights=dict(config.churn_risk_weights))
    assert candidate.validity == ValidityFloors(min_auc=0.7, min_events=5)
