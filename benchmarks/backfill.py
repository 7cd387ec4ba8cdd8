"""Benchmark: ``health-score backfill`` of 12 months × 1,000 accounts on the sandbox.

One sandbox that has lived through 24 months (built first, timed apart), then the backfill of
its last 12 complete months into an empty runs folder, in this process like ``backfill --demo``:
each month a full dry run against the stand-ins over loopback (extraction of the four sources,
scoring, every run file, changes.csv against the month before, outcomes.csv). Reports the
sandbox's build time, the backfill's wall and CPU time, seconds per month, each source's
requests per month and the months' statuses; then the same backfill again (every month skipped:
the resume path).

    python benchmarks/backfill.py [--accounts 1000] [--months 12]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from health_score.backfill import BackfillOptions, backfill  # noqa: E402
from health_score.pipeline import RunOptions  # noqa: E402
from health_score_sandbox.sandbox import Sandbox  # noqa: E402

logging.disable(logging.WARNING)  # the months' notes are in their manifests

SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    started, started_cpu = time.perf_counter(), cpu()
    sandbox = Sandbox(args.accounts, history_months=24)
    print(
        f"sandbox: {args.accounts:,} accounts × 24 months built in "
        f"{time.perf_counter() - started:.1f}s ({cpu() - started_cpu:.1f} CPU s)"
    )
    last = "2026-10"
    index = 2026 * 12 + 9 - (args.months - 1)
    first = f"{index // 12:04d}-{index % 12 + 1:02d}"
    with sandbox, tempfile.TemporaryDirectory(prefix="hsm-backfill-bench-") as folder:
        # The default config, with field history on (the sandbox's org tracks it), as the demo.
        config = sandbox.write_config(Path(folder) / "config", REPO / "config")
        options = BackfillOptions(
            first=first,
            last=last,
            run=RunOptions(
                config_dir=config,
                env=sandbox.env(),
                output=Path(folder) / "scores.csv",
                runs_dir=str(Path(folder) / "runs"),
                now=SANDBOX_DATE,
            ),
        )
        sandbox.reset_stats()
        started, started_cpu = time.perf_counter(), cpu()
        results = backfill(options)
        wall, used = time.perf_counter() - started, cpu() - started_cpu
        statuses: dict[str, int] = {}
        for r in results:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        print(
            f"backfill {first} … {last}: {wall:.1f}s wall, {used:.1f} CPU s, "
            f"{wall / len(results):.2f}s per month; "
            + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        )
        for r in results:
            if r.status != "ok":
                print(f"  {r.period} {r.status}: {'; '.join(r.sources_not_ok)} {r.note}")
        requests = {name: sandbox.requests(name) for name in sandbox.servers}
        print(
            "requests per month: "
            + ", ".join(f"{name} {n / len(results):.0f}" for name, n in requests.items())
        )
        started = time.perf_counter()
        again = backfill(options)
        print(
            f"again (resume, every month done): {time.perf_counter() - started:.2f}s, "
            f"{sum(r.status == 'skipped' for r in again)} of {len(again)} skipped"
        )


if __name__ == "__main__":
    main()
