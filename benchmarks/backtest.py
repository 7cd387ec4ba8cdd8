"""Benchmark: ``health-score backtest`` over 24 months × 10,000 accounts.

Setup (not timed): 24 monthly ``--from-raw`` runs into one runs folder, each month the first
with 20 % of its values moved (the changes benchmark's ``typical_month``), and an
``outcomes.csv`` with one yearly renewal event per account per year (churn for about 15 %, more
often the accounts whose raw values sit low — enough structure for a non-trivial AUC; the figure
itself is not the point here). Then ``health-score backtest`` as a subprocess, ``--repeat``
times: wall time, CPU seconds and peak RSS. Target: ≤ 10 s on the 2-core machine.

    python benchmarks/backtest.py [--accounts 10000] [--months 24] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "src"))

from changes import typical_month  # noqa: E402
from scoring import generate, timed  # noqa: E402

from health_score.pipeline import RunOptions, run  # noqa: E402


def period_of(index: int) -> str:
    """Month ``index`` of the history (0 = 2024-11)."""
    month = 2024 * 12 + 10 + index
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def outcomes(raw: Path, path: Path, months: int, seed: int = 5) -> int:
    """One renewal per account per year, churn more likely for low first-metric values."""
    rng = random.Random(seed)
    with raw.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["account_id", "account_name", "event", "date", "arr", "evidence"])
        for row in rows[1:]:
            anniversary = rng.randrange(12)
            for month in range(anniversary, months, 12):
                first = int(period_of(month)[:4]), int(period_of(month)[5:])
                day = date(first[0], first[1], rng.randint(1, 28))
                value = float(row[3]) if row[3] else 50.0
                churn = rng.random() < (0.25 if value > 2 else 0.08)
                writer.writerow(
                    [
                        row[0],
                        row[1],
                        "churn" if churn else "renewal",
                        day.isoformat(),
                        f"{rng.uniform(5_000, 90_000):.2f}",
                        "benchmark",
                    ]
                )
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hsm-backtest-bench-") as folder:
        tmp = Path(folder)
        runs = tmp / "runs"
        first = raw = tmp / "month-0.csv"
        started = time.perf_counter()
        generate(first, args.accounts, seed=1)
        for index in range(args.months):
            if index:  # the first month with 20 % of its values moved, accounts gone and new
                raw = tmp / f"month-{index}.csv"
                typical_month(first, raw, seed=index)
            summary = run(
                RunOptions(
                    config_dir=REPO / "config",
                    from_raw=raw,
                    period=period_of(index),
                    output=tmp / "scores.csv",
                    runs_dir=str(runs),
                )
            )
            assert summary.status == "ok", summary.messages
        events = outcomes(tmp / "month-0.csv", tmp / "outcomes.csv", args.months)
        print(
            f"setup: {args.months} runs × {args.accounts:,} accounts, {events:,} events "
            f"in {time.perf_counter() - started:.0f}s"
        )
        timings = [
            timed(
                [
                    sys.executable,
                    "-m",
                    "health_score",
                    "backtest",
                    "--runs-dir",
                    str(runs),
                    "--outcomes",
                    str(tmp / "outcomes.csv"),
                    "--config-dir",
                    str(REPO / "config"),
                    "--json",
                    str(tmp / "report.json"),
                ]
            )
            for _ in range(args.repeat)
        ]
        best = min(timings, key=lambda t: t.wall)
        print(
            f"backtest: {best.wall:.2f}s wall (best of {args.repeat}; all "
            + ", ".join(f"{t.wall:.2f}" for t in timings)
            + f"), {best.cpu:.2f} CPU s, peak RSS {max(t.rss_mb for t in timings):.0f} MB"
        )
        report = (tmp / "report.json").read_text()
        print(f"report: {len(report):,} bytes of JSON")


if __name__ == "__main__":
    main()
