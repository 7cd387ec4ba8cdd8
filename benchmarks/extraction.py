"""Benchmark: the whole pipeline against the sandbox, with latency, at 1,000 and 10,000 accounts.

For each size, a child process starts the sandbox (50 ms latency per request), runs the real
extractors and scoring as a dry run, and prints per source: requests, requests per account, the
sandbox's minimum for this portfolio, the ratio, wall seconds; then the totals and the child's
peak memory (which includes the sandbox's own data, served from the same process).

Targets: total requests ≤ 1.2 × minimum; ≤ 0.1 requests per account at 10,000;
10,000 accounts end to end ≤ 60 s; peak ≤ 500 MB.

    python benchmarks/extraction.py [--sizes 1000 10000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one(accounts: int, latency_ms: float) -> dict[str, object]:
    from src.main import RunOptions, run
    from src.sandbox.sandbox import Sandbox

    with tempfile.TemporaryDirectory() as tmp, Sandbox(accounts, latency_ms=latency_ms) as sb:
        config = Path(tmp) / "config"
        config.mkdir()
        for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
            shutil.copy(REPO / "config" / name, config / name)
        sb.write_mapping(config / "account_mapping.csv")
        as_of = sb.portfolio.as_of
        started = time.perf_counter()
        summary = run(
            RunOptions(
                config_dir=config,
                env=sb.env(),
                output=Path(tmp) / "scores.csv",
                runs_dir=str(Path(tmp) / "runs"),
                period="2026-11",
                as_of=datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),
            )
        )
        wall = time.perf_counter() - started
        minimum = sb.minimum_requests()
        served = {name: sb.requests(name) for name in minimum}
    return {
        "accounts": accounts,
        "status": summary.status,
        "wall": wall,
        "sources": {
            name: {
                "requests": served[name],
                "minimum": minimum[name],
                "seconds": summary.sources[name].seconds,
            }
            for name in minimum
        },
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def report(result: dict[str, object]) -> None:
    accounts = int(result["accounts"])  # type: ignore[call-overload]
    sources: dict[str, dict[str, float]] = result["sources"]  # type: ignore[assignment]
    print(
        f"\n{accounts:,} accounts — status {result['status']}, "
        f"{result['wall']:.1f}s end to end, peak {result['peak_mb']:.0f} MB"
    )
    print(
        f"  {'source':<11} {'requests':>9} {'per acct':>9} {'minimum':>8} {'ratio':>6} "
        f"{'seconds':>8}"
    )
    total = total_min = 0
    for name, s in sources.items():
        total += int(s["requests"])
        total_min += int(s["minimum"])
        ratio = s["requests"] / s["minimum"] if s["minimum"] else float("nan")
        print(
            f"  {name:<11} {int(s['requests']):>9} {s['requests'] / accounts:>9.3f} "
            f"{int(s['minimum']):>8} {ratio:>6.2f} {s['seconds']:>8.1f}"
        )
    print(
        f"  {'total':<11} {total:>9} {total / accounts:>9.3f} {total_min:>8} "
        f"{total / total_min:>6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.latency_ms)))
        return
    print(
        f"latency {args.latency_ms:.0f} ms per request; targets: ≤ 1.2 × minimum requests, "
        "≤ 0.1 requests/account at 10,000, ≤ 60 s and ≤ 500 MB at 10,000"
    )
    for size in args.sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(size), "--latency-ms", str(args.latency_ms)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            print(child.stderr[-3000:])
            raise SystemExit(child.returncode)
        report(json.loads(child.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
