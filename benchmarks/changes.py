"""Benchmark: the cost of ``changes.csv`` in a 10,000- and a 100,000-account ``--from-raw`` run.

For each size, two raw files are generated (not timed) with the scoring benchmark's generator and
different seeds, so every account's metrics differ between the months (the worst case: every
account has a part per metric). Then, alternately ``--repeat`` times, as subprocesses:

- *alone*: the second month's run into an empty runs folder (no previous run: each account is
  one ``appeared`` row), i.e. scoring with all its run files;
- *compared*: the same run into a runs folder holding the first month's ``ok`` run, so the run
  reads that run's ``metrics.npz``/``scores.csv`` and writes the full attribution.

Reports the best wall time and CPU seconds of each, the extra time, the peak RSS, and the size
and row count of ``changes.csv``. Target at 100,000 accounts: compared ≤ 1.5 × alone.

    python benchmarks/changes.py [--accounts 10000 100000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from scoring import Timing, generate, timed  # noqa: E402


def run(raw: Path, runs: Path, period: str, out: Path) -> Timing:
    return timed(
        [
            sys.executable,
            "-m",
            "health_score",
            "run",
            "--dry-run",
            "--from-raw",
            str(raw),
            "--output",
            str(out),
            "--runs-dir",
            str(runs),
            "--period",
            period,
        ]
    )


def bench(accounts: int, repeat: int, tmp: Path) -> None:
    september, october = tmp / f"sep-{accounts}.csv", tmp / f"oct-{accounts}.csv"
    generate(september, accounts, seed=1)
    generate(october, accounts, seed=2)
    alone: list[Timing] = []
    compared: list[Timing] = []
    rows = size = 0
    for attempt in range(repeat):
        empty = tmp / f"alone-{accounts}-{attempt}"
        alone.append(run(october, empty, "2026-10", tmp / "out.csv"))
        shutil.rmtree(empty)
        history = tmp / f"compared-{accounts}-{attempt}"
        run(september, history, "2026-09", tmp / "out.csv")
        compared.append(run(october, history, "2026-10", tmp / "out.csv"))
        latest = max(history.glob("2026-10_*"))
        changes = latest / "changes.csv"
        size = changes.stat().st_size
        with changes.open("rb") as handle:
            rows = sum(1 for _ in handle) - 1
        shutil.rmtree(history)
    a = min(t.wall for t in alone)
    c = min(t.wall for t in compared)
    a_cpu = min(t.cpu for t in alone)
    c_cpu = min(t.cpu for t in compared)
    print(f"{accounts:,} accounts (every account changed):")
    print(
        f"  alone    {a:6.2f}s wall, {a_cpu:.2f} CPU s; all: "
        + ", ".join(f"{t.wall:.2f}" for t in alone)
    )
    print(
        f"  compared {c:6.2f}s wall, {c_cpu:.2f} CPU s; all: "
        + ", ".join(f"{t.wall:.2f}" for t in compared)
    )
    print(
        f"  extra {c - a:+.2f}s wall ({(c / a - 1) * 100:+.0f} %), {c_cpu - a_cpu:+.2f} CPU s "
        f"({(c_cpu / a_cpu - 1) * 100:+.0f} %)"
    )
    print(
        f"  peak RSS alone {max(t.rss_mb for t in alone):.0f} MB, compared "
        f"{max(t.rss_mb for t in compared):.0f} MB"
    )
    print(f"  changes.csv {rows:,} rows, {size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hsm-changes-bench-") as folder:
        for accounts in args.accounts:
            bench(accounts, args.repeat, Path(folder))


if __name__ == "__main__":
    main()
