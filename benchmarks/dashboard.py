"""Dashboard benchmark: a 10,000-account run, timed through Streamlit's AppTest.

    .venv/bin/python benchmarks/dashboard.py [--accounts 10000]

Builds two runs (two periods) with the real pipeline from synthetic raw files, then measures:
the first render (cold caches), opening the what-if view (reads the raw inputs and scores the
baseline once), and re-computing the what-if after each of several weight changes.
Targets: first render ≤ 3 s, what-if after a weight change ≤ 1 s. Exit status 1 if one is missed.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from health_score.pipeline import RunOptions, run  # noqa: E402 - after making the repo importable
from health_score.records import metric_value  # noqa: E402
from health_score_sandbox.portfolio import build_portfolio, expected_signal_counts  # noqa: E402

FIRST_RENDER_TARGET = 3.0
WHATIF_TARGET = 1.0
SIGNALS = ("critical", "moderate", "watch", "critical_confirmed")


def write_raw(path: Path, accounts: int, drift: float, purpose: str) -> None:
    """A raw-metrics file from the sandbox portfolio's targets (8% of cells missing)."""
    portfolio = build_portfolio(accounts)
    metrics = portfolio.scoring.metric_names
    rng = portfolio.rng(purpose)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            [
                "account_id",
                "account_name",
                "segment",
                *metrics,
                "critical_count",
                "moderate_count",
                "watch_count",
                "critical_confirmed",
            ]
        )
        for profile in portfolio.profiles:
            values = []
            for metric in metrics:
                if rng.random() < 0.08:
                    values.append("")
                    continue
                value = profile.targets[metric] * (1 + rng.gauss(0, drift))
                values.append(format(metric_value(value), "f"))
            counts = expected_signal_counts(profile)
            writer.writerow(
                [
                    profile.account_id,
                    profile.account.account_name,
                    profile.account.segment,
                    *values,
                    *(counts[s] for s in SIGNALS),
                ]
            )


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hsm-bench-dashboard-") as tmp:
        folder = Path(tmp)
        runs_dir = folder / "runs"
        started = time.perf_counter()
        for period, drift in (("2026-09", 0.0), ("2026-10", 0.08)):
            raw = folder / f"raw-{period}.csv"
            write_raw(raw, args.accounts, drift, f"bench-{period}")
            summary = run(
                RunOptions(
                    config_dir=REPO / "config",
                    from_raw=raw,
                    period=period,
                    runs_dir=str(runs_dir),
                    output=folder / f"scores-{period}.csv",
                )
            )
            if summary.run_id is None:
                print("run failed:", summary.messages, file=sys.stderr)
                return 2
        print(f"built 2 runs of {args.accounts:,} accounts in {time.perf_counter() - started:.1f}s")

        os.environ["HSM_RUNS_DIR"] = str(runs_dir)
        os.environ.pop("DASHBOARD_PASSWORD", None)
        from streamlit.testing.v1 import AppTest

        from health_score.dashboard.whatif import shutdown_pool

        try:
            at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=300)
            first = timed(at.run)
            assert not at.exception, at.exception
            views: dict[str, float] = {}
            for view in ("Accounts", "Account drill-down", "Trends", "What-if"):
                at.sidebar.radio(key="view").set_value(view)
                views[view] = timed(at.run)
                assert not at.exception, (view, at.exception)
            changes = [
                ("w|churn_risk|support_health", 0.6),
                ("w|health_score|platform_value_weight", 0.2),
                ("w|adoption_engagement|active_user_pct", 0.9),
                ("w|support_health|p1_p2_volume", 0.05),
                ("w|financial_contract|payment_health", 0.6),
            ]
            whatif: list[float] = []
            for key, value in changes:
                at.slider(key=key).set_value(value)
                whatif.append(timed(at.run))
                assert not at.exception, at.exception
            moved = at.metric[0].value
        finally:
            shutdown_pool()

    print(f"first render (cold, Portfolio view): {first:.2f}s   target ≤ {FIRST_RENDER_TARGET}s")
    for view, seconds in views.items():
        note = " (reads raw inputs, scores the run's weights once)" if view == "What-if" else ""
        print(f"switch to {view}: {seconds:.2f}s{note}")
    print(
        f"what-if after a weight change: median {statistics.median(whatif):.2f}s, "
        f"max {max(whatif):.2f}s over {len(whatif)} changes   target ≤ {WHATIF_TARGET}s"
    )
    print(f"accounts changing tier after the last change: {moved}")
    print(f"cores: {os.cpu_count()}")
    missed = first > FIRST_RENDER_TARGET or statistics.median(whatif) > WHATIF_TARGET
    print("targets missed" if missed else "targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
