"""Benchmark: the whole pipeline against the sandbox, with latency, at 1,000 and 10,000 accounts.

For each size the sandbox runs in its own process (``python -m health_score_sandbox serve``,
50 ms latency per request), as the vendors would; the pipeline runs as the real command in
another process (``python -m health_score run --dry-run``). Printed per source: requests,
requests per account, the sandbox's minimum for this portfolio, the ratio, seconds; then totals,
the command's wall time and its peak memory (the pipeline alone, not the sandbox).

Targets: total requests ≤ 1.2 × minimum; ≤ 0.1 requests per account at 10,000;
10,000 accounts end to end ≤ 60 s; peak ≤ 500 MB.

    python benchmarks/extraction.py [--sizes 1000 10000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("intercom", "jira", "looker", "salesforce")


def start_sandbox(
    folder: Path, accounts: int, latency_ms: float
) -> tuple[subprocess.Popen[str], dict[str, str], dict[str, int]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "health_score_sandbox",
            "serve",
            "--accounts",
            str(accounts),
            "--latency-ms",
            str(latency_ms),
            "--mapping-dir",
            str(folder),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env: dict[str, str] = {}
    minimum: dict[str, int] = {}
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.match(r"export (\w+)=(.*)", line.strip()):
            env[match[1]] = match[2].strip("'")
        if line.startswith("# minimum requests"):
            minimum = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        if line.startswith("# then:"):
            return process, env, minimum
    raise SystemExit("the sandbox did not start")


def one(accounts: int, latency_ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "config"
        sandbox, env, minimum = start_sandbox(folder, accounts, latency_ms)
        try:
            runs = Path(tmp) / "runs"
            command = [
                sys.executable,
                "-m",
                "health_score",
                "run",
                "--dry-run",
                "--config-dir",
                str(folder),
                "--output",
                str(Path(tmp) / "scores.csv"),
                "--runs-dir",
                str(runs),
                "--period",
                "2026-11",
            ]
            child_env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("INTERCOM_", "JIRA_", "LOOKER_", "SF_"))
            }
            child_env.pop("REQUESTS_CA_BUNDLE", None)
            started = time.perf_counter()
            result = subprocess.run(
                command,
                cwd=REPO,
                env={**child_env, **env},
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - started
            # Only the pipeline has been waited for so far: this is its peak, not the sandbox's.
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
        if result.returncode != 0:
            print(result.stdout, result.stderr[-3000:], sep="\n")
            raise SystemExit(result.returncode)
        (run,) = runs.iterdir()
        manifest = json.loads((run / "manifest.json").read_text())
    sources = manifest["sources"]
    print(
        f"\n{accounts:,} accounts — status {manifest['status']}, {wall:.1f}s end to end, "
        f"peak {peak_mb:.0f} MB"
    )
    print(
        f"  {'source':<11} {'requests':>9} {'per acct':>9} {'minimum':>8} {'ratio':>6} "
        f"{'seconds':>8}"
    )
    total = sum(sources[n]["requests"] for n in SOURCES)
    for name in SOURCES:
        s = sources[name]
        print(
            f"  {name:<11} {s['requests']:>9} {s['requests'] / accounts:>9.3f} "
            f"{minimum[name]:>8} {s['requests'] / minimum[name]:>6.2f} {s['seconds']:>8.1f}"
        )
    total_min = sum(minimum.values())
    print(
        f"  {'total':<11} {total:>9} {total / accounts:>9.3f} {total_min:>8} "
        f"{total / total_min:>6.2f}   (minimum per account {total_min / accounts:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    print(
        f"latency {args.latency_ms:.0f} ms per request; targets: ≤ 1.2 × minimum requests, "
        "≤ 0.1 requests/account at 10,000, ≤ 60 s and ≤ 500 MB at 10,000"
    )
    for size in args.sizes:
        # Each size in a fresh interpreter so RUSAGE_CHILDREN holds that size's pipeline only.
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "import sys; sys.path.insert(0, 'benchmarks'); import extraction; "
                    f"extraction.one({size}, {args.latency_ms})"
                ),
            ],
            cwd=REPO,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(child.returncode)


if __name__ == "__main__":
    main()
