"""Benchmark: the cost of ``changes.csv`` in a 10,000- and a 100,000-account ``--from-raw`` run.

For each size, a first month is generated (not timed) with the scoring benchmark's generator,
and two second months: *typical* (the first with 20 % of the metric values moved by up to ±10 %,
1 % of the accounts gone and 1 % new) and *worst* (generated with another seed: every metric of
every account differs, so each account has a part per metric). Then, for each second month,
alternately ``--repeat`` times, as subprocesses:

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
import csv
import random
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


def typical_month(first: Path, second: Path, seed: int = 3) -> None:
    """``first`` with 20 % of the values moved by up to ±10 %, 1 % of accounts gone, 1 % new."""
    rng = random.Random(seed)
    with first.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    metrics = range(3, len(header) - 4)
    out = []
    for index, row in enumerate(body):
        if rng.random() < 0.01:
            continue
        row = list(row)
        for j in metrics:
            if row[j] and rng.random() < 0.2:
                row[j] = f"{float(row[j]) * rng.uniform(0.9, 1.1):.2f}"
        out.append(row)
        if rng.random() < 0.01:
            out.append([f"001New{index:010d}", *row[1:]])
    with second.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *out])


def bench(accounts: int, repeat: int, tmp: Path) -> None:
    september = tmp / f"sep-{accounts}.csv"
    generate(september, accounts, seed=1)
    typical, worst = tmp / f"typical-{accounts}.csv", tmp / f"worst-{accounts}.csv"
    typical_month(september, typical)
    generate(worst, accounts, seed=2)
    for label, october in (("typical month", typical), ("every account changed", worst)):
        compare(accounts, label, september, october, repeat, tmp)


def compare(
    accounts: int, label: str, september: Path, october: Path, repeat: int, tmp: Path
) -> None:
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
    print(f"{accounts:,} accounts ({label}):")
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
