"""The Validity page and the what-if judged on outcomes, driven by AppTest over real runs.

The history is the one of ``tests/unit/test_validity_whatif.py`` with ten accounts per group
(the default config: a figure needs 10 churners and 10 renewers): groups A (Support Health on
red), B (Financial & Contract on red) and C (all green) score 82, 82 and 100 with the run's
weights; A churns after the January run and renews after February, B the other way round, C
always renews.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.e2e.test_dashboard import DASHBOARD, TIMEOUT, open_view, table, texts
from tests.unit.test_validity_whatif import write_history


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs, _ = write_history(tmp_path_factory.mktemp("validity-e2e"), copies=10, min_events=None)
    return runs


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHBOARD_PASSWORD", raising=False)


def app(runs: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("HSM_RUNS_DIR", str(runs))
    return AppTest.from_file(str(DASHBOARD), default_timeout=TIMEOUT)


def test_the_validity_page_shows_the_verdict_and_the_tables(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(history, monkeypatch), "Validity")
    assert at.header[0].value == "Validity: does the score predict churn?"
    assert not at.error
    # 20 churners at 82; renewers 20 at 82 (ties, ½) and 20 at 100: (400 + 200) / 800 = 0.75.
    verdict = at.info[0].value
    assert verdict.startswith("The score separates churners from renewers well: AUC 0.75 ")
    assert "from 20 churns and 40 renewals." in verdict
    assert verdict.endswith(
        "0 % of churners were below Champion and Healthy 60–90 days before they churned."
    )
    assert at.metric[0].value == "0.750"
    assert at.metric[2].value == "20 / 40"
    assert at.metric[3].value == "33.3 %"
    tiers = table(at, "tier", "events", "churned")
    assert tiers.to_dict("records")[:2] == [
        {"tier": "Champion", "events": 20, "churned": 0, "churn_rate_pct": 0.0, "lift": 0.0},
        {"tier": "Healthy", "events": 40, "churned": 20, "churn_rate_pct": 50.0, "lift": 1.5},
    ]
    leads = table(at, "lead time").set_index("lead time")
    assert leads.loc["60–90 days", "churners"] == 20
    assert leads.loc["60–90 days", "capture_pct"] == 0.0
    assert leads.loc["0–30 days", "note"] == "too few events (0 churners; need 10)"
    signals = table(at, "input", "kind", "coverage")
    rows = signals.to_dict("records")
    # Churn Risk: churners all 70, renewers 20 at 70 and 20 at 100: 0.75. Support Health and
    # Financial & Contract: renewers 30 at 100 and 10 at 0, churners 10 at 0 and 10 at 100:
    # (300 + 150 + 50) / 800 = 0.625. Platform Value is 100 for everyone: 0.5.
    assert rows[0]["input"] == "Churn risk" and rows[0]["AUC"] == "0.750"
    assert rows[0]["kind"] == "dimension" and rows[0]["coverage"] == "100 %"
    assert [(r["input"], r["AUC"]) for r in rows[1:3]] == [
        ("Financial contract", "0.625"),
        ("Support health", "0.625"),
    ]
    platform = next(r for r in rows if r["input"] == "Platform value")
    assert platform["AUC"] == "0.500" and platform["events"] == "20 churners, 40 renewers"


def test_the_whatif_judges_candidate_weights_on_the_holdout(
    history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(history, monkeypatch), "What-if")
    at.number_input(key="holdout-months").set_value(1).run()
    for key, value in (
        ("support_health", 0.7),
        ("financial_contract", 0.1),
        ("adoption_engagement", 0.1),
        ("relationship_expansion", 0.1),
    ):
        at.slider(key=f"w|churn_risk|{key}").set_value(value)
    at.run()
    assert not at.exception, at.exception
    assert "Weights are never chosen on the hold-out" in texts(at.caption)
    figures = table(at, "events", "figure", "current weights")
    rows = {(r["events"], r["figure"]): r for r in figures.to_dict("records")}
    # Hold-out = the February run's events: churners B, renewers A and C. Candidate A 58,
    # B 94, C 100: only C beats B → 0.5 (current 0.75). Earlier (January): churners A → 1.0.
    auc = rows[("hold-out", "AUC (95 % interval)")]
    assert auc["current weights"].startswith("0.750 (")
    assert auc["candidate weights"].startswith("0.500 (")
    assert rows[("earlier", "AUC (95 % interval)")]["candidate weights"].startswith("1.000 (")
    assert rows[("hold-out", "red-tier lift")]["candidate weights"] == "0.00×"
    assert rows[("earlier", "red-tier lift")]["candidate weights"] == "3.00×"
    assert rows[("earlier", "churners below the healthiest tiers")] == {
        "events": "earlier",
        "figure": "churners below the healthiest tiers",
        "current weights": "0.0 %",
        "candidate weights": "100.0 %",
    }
    assert rows[("hold-out", "events in the healthiest tiers")]["candidate weights"] == "66.7 %"


def test_a_short_history_says_too_few_events(
    tmp_path: Path, history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(history, runs)
    newest = sorted(p for p in runs.iterdir() if (p / "outcomes.csv").exists())[-1]
    (newest / "outcomes.csv").write_text(
        "account_id,event,date,arr\nA1,churn,2026-04-15,10\nC1,renewal,2026-04-15,10\n",
        encoding="utf-8",
    )
    at = open_view(app(runs, monkeypatch), "Validity")
    assert not at.error
    shown = texts(at.info)
    assert shown.startswith(
        "Not enough history to judge the score yet: 1 churn and 1 renewal events had a run "
        "60–90 days before them (too few events (need 10 churners and 10 renewers with a value))."
    )
    assert "No ROC curve: too few events" in shown
    assert "Too few events in every lead window" in shown
    assert at.metric[0].value == "—"
    signals = table(at, "input", "kind", "coverage")
    assert set(signals["95 % interval"]) == {"too few events"}
    # And the what-if says there is nothing to judge rather than showing numbers.
    at.sidebar.radio(key="view").set_value("What-if").run()
    assert not at.exception, at.exception
    figures = table(at, "events", "figure", "current weights")
    assert figures["current weights"].iloc[0] == "too few events (1 churners, 1 renewers)"


def test_no_outcomes_yet_is_a_state_not_an_error(
    tmp_path: Path, history: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(history, runs)
    for outcomes in runs.glob("*/outcomes.csv"):
        outcomes.unlink()
    at = open_view(app(runs, monkeypatch), "Validity")
    assert not at.error and not at.exception
    assert at.info[0].value.startswith("No run has an outcomes.csv yet")
    manifest = json.loads(next(runs.glob("*/manifest.json")).read_text())
    assert manifest["status"] == "ok"
