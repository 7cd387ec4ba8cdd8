"""Write-back benchmark: 10,000 Health_Score__c records into the stand-in Salesforce.

    .venv/bin/python benchmarks/writeback.py [--accounts 10000] [--latency-ms 50]

Scores the synthetic portfolio (not timed), then writes it twice into a fresh stand-in org served
on loopback with the given latency on every request: once through sObject Collections upserts
(200 records a call) and once through one Bulk API 2.0 ingest job. Prints the requests, wall
seconds and records per second of each path. Target for the bulk path: ≤ 30 s and ≤ 50 requests
for 10,000 records. Exit status 1 if the bulk path misses it or any record was not written.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import requests  # noqa: E402 - after making the repo importable

from health_score.config import load_scoring_config  # noqa: E402
from health_score.loaders.salesforce import LoadResult, SalesforceLoader  # noqa: E402
from health_score.loaders.salesforce_settings import WritebackSettings  # noqa: E402
from health_score.records import Account, AccountInput, SignalCounts, metric_value  # noqa: E402
from health_score.scoring.composite import AccountScore, score_accounts  # noqa: E402
from health_score_sandbox.portfolio import build_portfolio, expected_signal_counts  # noqa: E402
from health_score_sandbox.salesforce import (  # noqa: E402
    App,
    generate,
    login,
)
from health_score_sandbox.sandbox import load_source_settings  # noqa: E402
from health_score_sandbox.server import Knobs, VendorServer  # noqa: E402

TARGET_SECONDS = 30.0
TARGET_REQUESTS = 50
PERIOD = "2026-11"


def scored_portfolio(count: int) -> tuple[list[AccountScore], list[Account]]:
    portfolio = build_portfolio(count)
    config = load_scoring_config(REPO / "config")
    inputs = [
        AccountInput(
            account_id=p.account.account_id,
            account_name=p.account.account_name,
            segment=p.account.segment,
            metrics={name: metric_value(value) for name, value in p.targets.items()},
            signals=SignalCounts(**expected_signal_counts(p)),
        )
        for p in portfolio.profiles
    ]
    return score_accounts(inputs, config), [p.account for p in portfolio.profiles]


def write(
    path: str, scores: list[AccountScore], accounts: list[Account], latency_ms: float
) -> tuple[LoadResult, int, float]:
    """One load into a fresh org: (result, requests the server saw on write routes, wall s)."""
    settings = load_source_settings(only=("salesforce",))["salesforce"]
    app = App(generate(build_portfolio(4), settings), settings)
    threshold = len(scores) + 1 if path == "composite" else 200
    writeback = WritebackSettings.model_validate({"bulk_threshold": threshold})
    with (
        VendorServer(app, knobs=Knobs(latency_ms=latency_ms)) as server,
        requests.Session() as session,
    ):
        loader = SalesforceLoader(
            writeback, authenticate=lambda: login(session, server.url), session=session
        )
        started = time.perf_counter()
        result = loader.load(
            scores,
            accounts,
            period=PERIOD,
            scoring_date=date(2026, 11, 1),
            run_id="benchmark",
            config_hash="benchmark",
        )
        seconds = time.perf_counter() - started
        seen = sum(
            count
            for label, count in server.stats.items()
            if "/jobs/ingest" in label or "/composite/" in label
        )
    return result, seen, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    scores, accounts = scored_portfolio(args.accounts)
    with_id = sum(1 for a in accounts if a.sf_account_id)
    print(
        f"{len(scores)} accounts scored, {with_id} with a Salesforce id; "
        f"{args.latency_ms:.0f} ms latency per request"
    )
    print(f"{'path':<10} {'records':>8} {'requests':>9} {'seconds':>8} {'records/s':>10}")
    ok = True
    for path in ("composite", "bulk"):
        result, seen, seconds = write(path, scores, accounts, args.latency_ms)
        rate = result.written / seconds if seconds else float("inf")
        print(f"{result.path:<10} {result.written:>8} {seen:>9} {seconds:>8.2f} {rate:>10.0f}")
        if not result.ok or result.written != with_id:
            print(f"  {path}: not every record was written: {result.as_dict()['failed']} failed")
            ok = False
        if path == "bulk" and (seconds > TARGET_SECONDS or seen > TARGET_REQUESTS):
            print(
                f"  bulk misses the target (≤ {TARGET_SECONDS:.0f} s, ≤ {TARGET_REQUESTS} requests)"
            )
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
