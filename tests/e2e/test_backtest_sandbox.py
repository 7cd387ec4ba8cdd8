"""The backtest against the sandbox's ground truth: a history backfilled from a sandbox whose
churn depends on latent health must show signal, and the metrics that drive that health must
rank above the sandbox's noise metrics; with churn independent of health, the AUC's interval
must contain 0.5. Each history is the real pipeline's runs (backfill) and the real pipeline's
outcomes.csv."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from health_score.backfill import BackfillOptions, backfill
from health_score.backtest import BacktestOptions, backtest_command
from health_score.pipeline import RunOptions
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.timeline import NOISE_METRICS
from tests.conftest import REPO, sandbox_config

# One worker builds this module's sandbox history (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_backtest_sandbox")

SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)
ACCOUNTS = 160


def history(tmp: Path, churn_model: str, seed: int) -> tuple[Path, Sandbox]:
    sandbox = Sandbox(ACCOUNTS, seed=seed, history_months=24, churn_model=churn_model)
    with sandbox:
        config = sandbox_config(tmp / "config", sandbox)
        results = backfill(
            BackfillOptions(
                first="2025-05",  # the oldest month within 18 months of field history
                last="2026-10",
                run=RunOptions(
                    config_dir=config,
                    env=sandbox.env(),
                    output=tmp / "scores.csv",
                    runs_dir=str(tmp / "runs"),
                    now=SANDBOX_DATE,
                ),
            )
        )
    assert {r.status for r in results} == {"ok"}, [(r.period, r.sources_not_ok) for r in results]
    return tmp / "runs", sandbox


def report(runs: Path, tmp: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    path = tmp / "report.json"
    code = backtest_command(BacktestOptions(runs_dir=str(runs), json_path=path), out, err)
    assert err.getvalue() == "" or code == 1, err.getvalue()
    return code, json.loads(path.read_text()), out.getvalue()


@pytest.fixture(scope="module")
def health_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Sandbox]]:
    yield history(tmp_path_factory.mktemp("health"), "health", seed=21)


def test_churn_driven_by_health_is_found(
    health_history: tuple[Path, Sandbox], tmp_path: Path
) -> None:
    runs, sandbox = health_history
    code, data, text = report(runs, tmp_path)
    assert code == 0
    score = data["score"]
    assert score["churners"] >= 15 and score["renewers"] >= 60, score
    assert score["auc"] > 0.7, score
    assert score["interval_95"][0] > 0.55, score
    assert data["verdict"].startswith("The score separates churners from renewers")
    # The outcomes are the timeline's churns of the accounts the Salesforce org holds.
    assert sandbox.timeline is not None
    in_org = {  # a churned account is inactive at the end: its months before say it
        p.account_id
        for month in sandbox.slices
        for p in month.profiles
        if p.account.sf_account_id is not None and p.has("salesforce")
    }
    churned = {a: day for a, day in sandbox.timeline.churned().items() if a in in_org}
    assert data["outcomes"]["churn"] == sum(
        1 for day in churned.values() if day < SANDBOX_DATE.date()
    )
    # The worst tier churns more than the base rate.
    critical = next(r for r in data["tiers"] if r["tier"] == "Critical")
    assert critical["lift"] > 1.5, data["tiers"]
    assert "AUC of the final score:" in text


def test_metrics_that_drive_health_rank_above_the_noise_metrics(
    health_history: tuple[Path, Sandbox], tmp_path: Path
) -> None:
    runs, _ = health_history
    _, data, _ = report(runs, tmp_path)
    metrics = {s["name"]: s for s in data["inputs"] if s["kind"] == "metric" and s["auc"]}
    noise = [metrics[name]["auc"] for name in NOISE_METRICS if name in metrics]
    drivers = [s["auc"] for name, s in metrics.items() if name not in NOISE_METRICS]
    assert len(noise) >= 3 and len(drivers) >= 15
    # The median driver carries more signal than the best noise metric, and no noise metric is
    # clearly informative.
    drivers.sort()
    assert drivers[len(drivers) // 2] > max(noise), (drivers, noise)
    for name in NOISE_METRICS & metrics.keys():
        low = metrics[name]["interval_95"][0]
        assert low < 0.62, (name, metrics[name])


def test_churn_independent_of_health_shows_no_signal(tmp_path: Path) -> None:
    runs, _ = history(tmp_path / "random", "random", seed=21)
    _, data, _ = report(runs, tmp_path)
    low, high = data["score"]["interval_95"]
    assert low < 0.5 < high, data["score"]
    assert "no better than chance" in data["verdict"]


def test_a_closed_pipe_ends_the_report_quietly(health_history: tuple[Path, Sandbox]) -> None:
    runs, _ = health_history
    read, write = os.pipe()
    os.close(read)  # the reader has gone before anything is written (`| head` finished)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "health_score", "backtest", "--runs-dir", str(runs)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
    finally:
        os.close(write)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr
