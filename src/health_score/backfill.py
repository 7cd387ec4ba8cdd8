"""``health-score backfill``: score a range of past months, one ordinary run per month.

Each month is a normal run of its period (its data windows end at the first instant of the next
month) writing a normal run folder; months are run oldest first, so each run's ``changes.csv``
compares with the month before. A month that already has an ``ok`` run in the runs folder is
skipped unless ``force``: a backfill interrupted half-way is resumed by running it again. Dry by
default (run folders only); Salesforce is written only with ``write``. ``--output`` is left alone
unless asked: a backfill's months are history, not the current scores.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from health_score.loaders.artifacts import MANIFEST, LocalRunStore, RunStore, StoreError
from health_score.loaders.s3_store import S3RunStore
from health_score.loaders.stores import open_store
from health_score.pipeline import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    STATUS_OK,
    DemoUnavailable,
    RunOptions,
    RunSummary,
    UsageError,
    check_period,
    demo_session,
    last_complete_period,
    run,
)

#: The longest range one backfill takes (ten years of months).
MAX_MONTHS = 120
SKIPPED = "skipped"


def months(first: str, last: str) -> list[str]:
    """Every ``YYYY-MM`` from ``first`` to ``last``, inclusive."""
    check_period(first)
    check_period(last)
    if last < first:
        raise UsageError(f"--to {last} is before --from {first}")
    start = int(first[:4]) * 12 + int(first[5:]) - 1
    end = int(last[:4]) * 12 + int(last[5:]) - 1
    if end - start + 1 > MAX_MONTHS:
        raise UsageError(f"--from {first} --to {last} spans more than {MAX_MONTHS} months")
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(start, end + 1)]


@dataclass(frozen=True, slots=True)
class MonthResult:
    """One row of the backfill's table."""

    period: str
    status: str  # ok | degraded | failed | skipped
    run_id: str | None
    accounts_scored: int = 0
    accounts_total: int = 0
    insufficient: int = 0  # accounts with too little data for a score tier
    sources_not_ok: tuple[str, ...] = ()
    seconds: float = 0.0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "status": self.status,
            "run_id": self.run_id,
            "accounts_scored": self.accounts_scored,
            "accounts_total": self.accounts_total,
            "insufficient_data": self.insufficient,
            "sources_not_ok": list(self.sources_not_ok),
            "seconds": round(self.seconds, 3),
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class BackfillOptions:
    first: str
    last: str
    run: RunOptions  # the options every month's run starts from (period replaced)
    write: bool = False
    force: bool = False
    #: Replace ``run.output`` with the newest month's scores (if that run may replace it).
    replace_output: bool = False


def ok_runs(store: RunStore) -> dict[str, str]:
    """period → the latest ``ok`` run of it in ``store`` (by start time)."""
    if not isinstance(store, LocalRunStore | S3RunStore):
        return {}
    found: dict[str, tuple[str, str]] = {}
    for run_id in store.run_ids():
        data = store.read(run_id, MANIFEST)
        if data is None:
            continue  # a run stopped half-way: not done
        try:
            manifest = json.loads(data)
        except ValueError:
            continue
        if not isinstance(manifest, dict) or manifest.get("status") != STATUS_OK:
            continue
        period, started = str(manifest.get("period", "")), str(manifest.get("started_at", ""))
        if period not in found or found[period][0] < started:
            found[period] = (started, run_id)
    return {period: run_id for period, (_, run_id) in found.items()}


def _insufficient(summary: RunSummary) -> int:
    return sum(n for tier, n in summary.tiers.items() if tier.casefold().startswith("insufficient"))


def _result(period: str, summary: RunSummary, seconds: float) -> MonthResult:
    not_ok = tuple(
        f"{name} {report.status}"
        for name, report in summary.sources.items()
        if report.status not in (STATUS_OK, "inactive")
    )
    note = "" if summary.run_id is not None else "; ".join(summary.messages)
    return MonthResult(
        period=period,
        status=summary.status,
        run_id=summary.run_id,
        accounts_scored=summary.accounts_scored,
        accounts_total=summary.accounts_total,
        insufficient=_insufficient(summary),
        sources_not_ok=not_ok,
        seconds=seconds,
        note=note,
    )


def backfill(
    options: BackfillOptions,
    *,
    progress: Callable[[str], None] = lambda _line: None,
    on_month: Callable[[MonthResult], None] = lambda _result: None,
) -> list[MonthResult]:
    """Run every month of the range not already done; the results in month order.

    Raises :class:`UsageError` for a bad range or runs folder and :class:`DemoUnavailable` when
    a demo cannot start. A month that fails does not stop the others.
    """
    base = options.run
    periods = months(options.first, options.last)
    now = (base.now or datetime.now(UTC)).astimezone(UTC)
    newest_complete = last_complete_period(now)
    if periods[-1] > newest_complete:
        raise UsageError(
            f"--to {periods[-1]} has not ended yet; the last complete month is {newest_complete}"
        )
    try:
        store = open_store(base.runs_dir)
        done = {} if options.force else ok_runs(store)
    except StoreError as exc:
        raise UsageError(f"--runs-dir {base.runs_dir}: {exc}") from None
    to_run = [p for p in periods if p not in done]
    results: list[MonthResult] = []
    session: AbstractContextManager[RunOptions] = (
        demo_session(base) if base.demo and to_run else nullcontext(base)
    )
    with session as prepared:
        # A demo's sandbox is started once: every month runs against it.
        prepared = dataclasses.replace(prepared, dry_run=not options.write)
        for index, period in enumerate(periods, start=1):
            if period in done:
                result = MonthResult(period, SKIPPED, done[period], note="an ok run exists")
            else:
                progress(f"[{index}/{len(periods)}] {period}: running…")
                started = time.monotonic()
                summary = run(
                    dataclasses.replace(
                        prepared,
                        period=period,
                        as_of=None,
                        replace_output=options.replace_output and period == periods[-1],
                    ),
                    store=store,
                )
                result = _result(period, summary, time.monotonic() - started)
            results.append(result)
            on_month(result)
    return results


def exit_code(results: Sequence[MonthResult]) -> int:
    """0 when every month is ok or was already done; 1 otherwise."""
    bad = [r for r in results if r.status not in (STATUS_OK, SKIPPED)]
    return EXIT_OK if not bad else EXIT_FAILED


def table(results: Sequence[MonthResult]) -> Iterator[str]:
    """The months as a fixed-width table for a terminal."""
    yield f"{'period':<8} {'status':<9} {'scored':>13} {'insufficient':>12} {'secs':>6}  detail"
    for r in results:
        scored = f"{r.accounts_scored}/{r.accounts_total}" if r.status != SKIPPED else ""
        insufficient = str(r.insufficient) if r.status != SKIPPED else ""
        secs = f"{r.seconds:.1f}" if r.status != SKIPPED else ""
        detail = ", ".join(
            part
            for part in (
                r.run_id or "",
                "; ".join(r.sources_not_ok),
                r.note,
            )
            if part
        )
        yield f"{r.period:<8} {r.status:<9} {scored:>13} {insufficient:>12} {secs:>6}  {detail}"


def totals(results: Sequence[MonthResult]) -> str:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{len(results)} months: {parts}"


def run_backfill(options: BackfillOptions, out: TextIO, err: TextIO, *, live: bool) -> int:
    """The command: progress on ``err`` (when ``live``), the table on ``out``; the exit code."""

    def progress(line: str) -> None:
        if live:
            print(line, file=err, flush=True)

    results: list[MonthResult] = []

    def on_month(result: MonthResult) -> None:
        results.append(result)
        if result.status != SKIPPED:
            progress(f"  {result.period}: {result.status} ({result.seconds:.1f}s)")

    try:
        backfill(options, progress=progress, on_month=on_month)
    except (UsageError, DemoUnavailable) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        for line in table(results):
            print(line, file=out)
        print(
            "interrupted: the months above are kept; run the same command again to resume "
            "(months with an ok run are skipped)",
            file=err,
        )
        return 130
    for line in table(results):
        print(line, file=out)
    print(totals(results), file=out)
    return exit_code(results)
