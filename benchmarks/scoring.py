"""Benchmark: score a 100,000-account raw file with the default config (``--from-raw``).

Generates the file first (not timed), then runs the real command in a subprocess and reports
wall seconds, accounts per second and the child's peak memory (ru_maxrss).
Target on the 2-core reference machine: ≤ 5 s wall for scoring and ≤ 500 MB peak.

    python benchmarks/scoring.py [--accounts 100000]
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from health_score.config import load_scoring_config  # noqa: E402
from health_score.rawfile import SIGNAL_COLUMNS  # noqa: E402
from health_score_sandbox.portfolio import target_raw  # noqa: E402


def generate(path: Path, accounts: int, seed: int = 1) -> None:
    config = load_scoring_config(REPO / "config")
    rng = random.Random(seed)
    metrics = config.metric_names
    bands = {}
    for dim in config.dimensions.values():
        for metric in dim.metrics:
            bands.setdefault(metric.name, metric)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["account_id", "account_name", "segment", *metrics, *SIGNAL_COLUMNS])
        for index in range(accounts):
            segment = "paid" if rng.random() < 0.4 else "standard"
            health = rng.uniform(20, 99)
            row = [f"001Bench{index:010d}", f"Account {index}", segment]
            for name in metrics:
                if rng.random() < 0.08:
                    row.append("")
                    continue
                spec = bands[name]
                value = target_raw(
                    spec.bands[segment], spec.lower_is_better, health + rng.gauss(0, 12)
                )
                row.append(f"{value:.2f}")
            critical = 1 if rng.random() < 0.05 else 0
            row += [
                str(critical),
                str(int(rng.random() < 0.05)),
                "0",
                str(int(critical and rng.random() < 0.5)),
            ]
            writer.writerow(row)


def tree_pss_kb(pid: int) -> int:
    """Proportional set size of a process and its children (shared pages counted once)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
        pending.extend(int(c) for c in children)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.csv"
        started = time.perf_counter()
        generate(raw, args.accounts)
        print(
            f"generated {args.accounts:,} accounts in {time.perf_counter() - started:.1f}s "
            f"({raw.stat().st_size / 1e6:.1f} MB)"
        )
        command = [
            sys.executable,
            "-m",
            "health_score.pipeline",
            "--dry-run",
            "--from-raw",
            str(raw),
            "--output",
            str(Path(tmp) / "scores.csv"),
            "--runs-dir",
            str(Path(tmp) / "runs"),
            "--period",
            "2026-11",
        ]
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        tree_peak = 0
        while process.poll() is None:
            tree_peak = max(tree_peak, tree_pss_kb(process.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        stdout, stderr = process.communicate()
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        if result.returncode != 0:
            print(result.stdout, result.stderr, sep="\n")
            raise SystemExit(result.returncode)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"scored {args.accounts:,} accounts in {wall:.2f}s wall "
            f"({args.accounts / wall:,.0f} accounts/s); peak memory {peak_mb:.0f} MB in the "
            f"largest process, {tree_peak / 1024:.0f} MB for all its processes together (PSS)"
        )
        print("targets: ≤ 5 s wall, ≤ 500 MB peak")


if __name__ == "__main__":
    main()
