"""Benchmark: score 10,000 and 100,000-account raw files end to end, against a float reference.

For each size: generate a raw file (not timed), then run, as subprocesses in the same benchmark
run, the real command ``health-score run --dry-run --from-raw`` (all run files included) and the
plain-float reference scorer (``benchmarks/reference_scorer.py``, scores CSV only), alternating
them ``--repeat`` times and keeping each one's best wall time. Reports both, their ratio (also in
CPU seconds, which a busy shared machine disturbs less than wall time), our peak memory (largest
RSS and the process tree's PSS) and the run folder's size.
Targets at 100,000 accounts on the 2-core reference machine: ≤ 3 s, ≤ 0.5 × the reference,
≤ 300 MB peak, run files ≤ half of the first exact version's (357 MB → ≤ 178 MB).

    python benchmarks/scoring.py [--accounts 10000 100000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import compileall
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

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


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float
    cpu: float  # user + system seconds of the process (less sensitive to a busy machine)
    rss_mb: float  # the largest process's peak resident set
    pss_mb: float  # all its processes together, sampled


def timed(command: list[str]) -> Timing:
    """Run ``command`` (time -v style: wall, peak RSS via wait4, PSS sampled every 20 ms)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    tree_peak = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        tree_peak = max(tree_peak, tree_pss_kb(process.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    out = process.stdout.read() if process.stdout else b""
    err = process.stderr.read() if process.stderr else b""
    if process.returncode != 0:
        print(out.decode(), err.decode(), sep="\n")
        raise SystemExit(f"{command[:4]} failed with exit code {process.returncode}")
    return Timing(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, tree_peak / 1024)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def bench(accounts: int, repeat: int, tmp: Path) -> None:
    raw = tmp / f"raw-{accounts}.csv"
    started = time.perf_counter()
    generate(raw, accounts)
    print(
        f"{accounts:,} accounts: generated in {time.perf_counter() - started:.1f}s "
        f"({raw.stat().st_size / 1e6:.1f} MB raw file)"
    )
    ours: list[Timing] = []
    reference: list[Timing] = []
    run_size = 0
    for attempt in range(repeat):
        runs = tmp / f"runs-{accounts}-{attempt}"
        ours.append(
            timed(
                [
                    sys.executable,
                    "-m",
                    "health_score",
                    "run",
                    "--dry-run",
                    "--from-raw",
                    str(raw),
                    "--output",
                    str(tmp / "scores.csv"),
                    "--runs-dir",
                    str(runs),
                    "--period",
                    "2026-11",
                ]
            )
        )
        run_size = folder_size(runs)
        (tmp / "scores.csv").unlink()
        reference.append(
            timed(
                [
                    sys.executable,
                    str(REPO / "benchmarks" / "reference_scorer.py"),
                    str(raw),
                    str(tmp / "reference.csv"),
                ]
            )
        )
    best = min(t.wall for t in ours)
    best_reference = min(t.wall for t in reference)
    print(
        f"  ours      {best:6.2f}s wall ({accounts / best:,.0f} accounts/s), all runs: "
        + ", ".join(f"{t.wall:.2f}" for t in ours)
    )
    print(
        f"  reference {best_reference:6.2f}s wall ({accounts / best_reference:,.0f} accounts/s),"
        " all runs: " + ", ".join(f"{t.wall:.2f}" for t in reference)
    )
    ratios = ", ".join(f"{o.wall / r.wall:.2f}" for o, r in zip(ours, reference, strict=True))
    print(f"  ratio ours / reference {best / best_reference:.2f} (pairwise: {ratios})")
    cpu, cpu_reference = min(t.cpu for t in ours), min(t.cpu for t in reference)
    print(
        f"  CPU seconds: ours {cpu:.2f}, reference {cpu_reference:.2f}, "
        f"ratio {cpu / cpu_reference:.2f} (best of each)"
    )
    print(
        f"  peak memory {max(t.rss_mb for t in ours):.0f} MB RSS, "
        f"{max(t.pss_mb for t in ours):.0f} MB PSS for all processes; "
        f"reference {max(t.rss_mb for t in reference):.0f} MB RSS"
    )
    print(f"  run files {run_size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    # Byte-compile the package first, as an installed one (or the Lambda bundle) is: otherwise,
    # under PYTHONDONTWRITEBYTECODE, every timed start would compile it again (about 0.12 s).
    compileall.compile_dir(REPO / "src", quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        for accounts in args.accounts:
            bench(accounts, args.repeat, Path(tmp))
    print("targets at 100,000: ≤ 3 s, ratio ≤ 0.5, ≤ 300 MB, run files ≤ 178 MB")


if __name__ == "__main__":
    main()
