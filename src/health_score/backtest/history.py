"""Reading the run history and the outcomes a backtest judges the score against.

Runs come from a run store (local folder or S3): each run's ``manifest.json`` (status, period,
``as_of``), ``scores.csv`` (final score, tier, dimension scores, coverage and cap flags) and,
for the per-metric signal table, ``metrics.npz`` (normalised metric scores). Outcomes come from
``outcomes.csv`` (of the latest run that has one, or a file a team imports): one row per churn or
renewal event with ``account_id, event, date`` and optionally ``arr``.

For each event the backtest takes the account's row in the latest run whose ``as_of`` lies at
least ``lead_days`` and at most ``horizon_days`` before the event: what the score said early
enough to act on.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from health_score.backtest.stats import EVENTS, Observation
from health_score.csvsafe import unescape_cell
from health_score.loaders.artifacts import MANIFEST, LocalRunStore, StoreError
from health_score.loaders.explanation import EXPLANATION, load_explanation
from health_score.loaders.s3_store import S3RunStore

SCORES = "scores.csv"
OUTCOMES = "outcomes.csv"
#: Dimension columns of scores.csv that the per-input signal table reads.
#: A store whose runs can be listed and read.
Store = LocalRunStore | S3RunStore
DIMENSION_COLUMNS = (
    "churn_risk_score",
    "platform_value_score",
    "support_health",
    "financial_contract",
    "adoption_engagement",
    "relationship_expansion",
)


class HistoryError(Exception):
    """The history or the outcomes cannot be read; the message names the file and row."""


@dataclass(frozen=True, slots=True)
class Outcome:
    account_id: str
    event: str  # churn | renewal
    day: date
    arr: Decimal | None


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    period: str
    status: str
    as_of: datetime
    started_at: str


def list_runs(store: Store, *, statuses: Iterable[str] = ("ok",)) -> list[RunInfo]:
    """The finished runs of ``statuses`` in the store, oldest ``as_of`` first."""
    wanted = set(statuses)
    out: list[RunInfo] = []
    try:
        run_ids = store.run_ids()
    except StoreError as exc:
        raise HistoryError(f"cannot list the runs in {store.location}: {exc}") from None
    for run_id in run_ids:
        manifest = _manifest(store, run_id)
        if manifest is None or manifest.get("status") not in wanted:
            continue
        try:
            as_of = datetime.fromisoformat(str(manifest["as_of"]))
        except (KeyError, ValueError):
            continue  # a run from before periods had an as_of: not placed in time
        out.append(
            RunInfo(
                run_id,
                str(manifest.get("period", "")),
                str(manifest["status"]),
                as_of,
                str(manifest.get("started_at", "")),
            )
        )
    # One run per period: the latest started (a re-run replaces the earlier one).
    latest: dict[str, RunInfo] = {}
    for info in out:
        if info.period not in latest or latest[info.period].started_at < info.started_at:
            latest[info.period] = info
    return sorted(latest.values(), key=lambda r: (r.as_of, r.started_at))


def _manifest(store: Store, run_id: str) -> dict[str, Any] | None:
    data = _read(store, run_id, MANIFEST)
    if data is None:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def _read(store: Store, run_id: str, name: str) -> bytes | None:
    try:
        return store.read(run_id, name)
    except StoreError as exc:
        raise HistoryError(f"run {run_id}: {exc}") from None


def latest_outcomes(store: Store, runs: Sequence[RunInfo]) -> tuple[str, bytes] | None:
    """``(run_id, outcomes.csv)`` of the newest run that has the file."""
    for info in sorted(runs, key=lambda r: (r.as_of, r.started_at), reverse=True):
        data = _read(store, info.run_id, OUTCOMES)
        if data is not None:
            return info.run_id, data
    return None


def parse_outcomes(data: bytes, where: str) -> list[Outcome]:
    """``outcomes.csv`` rows; a bad row is an error naming ``where``, the line and the column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HistoryError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in ("account_id", "event", "date") if c not in header]
    if missing:
        raise HistoryError(
            f"{where}: missing column(s) {', '.join(missing)} (expected at least account_id, "
            f"event, date; optional arr)"
        )
    out: list[Outcome] = []
    for row in reader:
        line = reader.line_num
        account = unescape_cell(row.get("account_id") or "").strip()
        event = (row.get("event") or "").strip().casefold()
        if not account:
            raise HistoryError(f"{where}: line {line}: account_id is empty")
        if event not in EVENTS:
            raise HistoryError(
                f"{where}: line {line}: event {row.get('event')!r} is not churn or renewal"
            )
        try:
            day = date.fromisoformat((row.get("date") or "").strip()[:10])
        except ValueError:
            raise HistoryError(
                f"{where}: line {line}: date {row.get('date')!r} is not YYYY-MM-DD"
            ) from None
        arr_text = (row.get("arr") or "").strip()
        arr: Decimal | None = None
        if arr_text:
            try:
                arr = Decimal(arr_text)
            except InvalidOperation:
                raise HistoryError(
                    f"{where}: line {line}: arr {arr_text!r} is not a number"
                ) from None
            if not arr.is_finite() or arr < 0:
                raise HistoryError(f"{where}: line {line}: arr {arr_text!r} must be ≥ 0")
        out.append(Outcome(account, event, day, arr))
    return out


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _truth(text: str | None) -> bool:
    return (text or "").strip().casefold() == "true"


def _run_rows(
    store: Store, info: RunInfo, accounts: set[str], with_metrics: bool
) -> dict[str, dict[str, Any]]:
    """The rows of ``accounts`` in one run: scores (and metric scores from metrics.npz)."""
    data = _read(store, info.run_id, SCORES)
    if data is None:
        raise HistoryError(f"run {info.run_id}: {SCORES} is missing")
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    header = next(reader, [])
    at = {name: i for i, name in enumerate(header)}
    if "final_score" not in at or "account_id" not in at:
        raise HistoryError(f"run {info.run_id}: {SCORES} has no account_id/final_score")
    # Since the cap value got its own column, qualitative_override is the "cap lowered" flag.
    capped_at = at.get("qualitative_override" if "cap_value" in at else "modifier_applied")
    dims = [(name, at[name]) for name in DIMENSION_COLUMNS if name in at]
    tier_at, coverage_at = at.get("health_tier"), at.get("low_coverage")
    rows: dict[str, dict[str, Any]] = {}
    for cells in reader:
        account = unescape_cell(cells[at["account_id"]])
        if account not in accounts:
            continue
        rows[account] = {
            "final_score": _number(cells[at["final_score"]]),
            "tier": cells[tier_at] if tier_at is not None else "",
            "low_coverage": coverage_at is not None and _truth(cells[coverage_at]),
            "capped": capped_at is not None and _truth(cells[capped_at]),
            "inputs": {name: _number(cells[i]) for name, i in dims},
        }
    if with_metrics and rows:
        _add_metrics(store, info, rows)
    return rows


def _add_metrics(store: Store, info: RunInfo, rows: dict[str, dict[str, Any]]) -> None:
    data = _read(store, info.run_id, EXPLANATION)
    if data is None:
        return
    arrays = load_explanation(data)
    names = [str(m) for m in arrays["metric"]]
    # A metric in two dimensions has one normalised score: its first slot is kept.
    first_slot: dict[str, int] = {}
    for j, name in enumerate(names):
        first_slot.setdefault(name, j)
    slots = list(first_slot.values())
    index = {str(a): i for i, a in enumerate(arrays["account_id"])}
    wanted = [(account, index[account]) for account in rows if account in index]
    if not wanted:
        return
    scores = np.asarray(arrays["normalised_score"])[[i for _, i in wanted]][:, slots]
    labels = [f"metric:{name}" for name in first_slot]
    for (account, _), values in zip(wanted, scores.tolist(), strict=True):
        inputs = rows[account]["inputs"]
        for label, value in zip(labels, values, strict=True):
            inputs[label] = None if value < 0 else value / 1e4


def match_events(
    runs: Sequence[RunInfo],
    outcomes: Sequence[Outcome],
    *,
    lead_days: int,
    horizon_days: int,
) -> tuple[list[tuple[Outcome, RunInfo]], int]:
    """Each outcome (by date) with the latest run whose ``as_of`` lies ``lead_days`` to
    ``horizon_days`` before it; and how many outcomes had no run in that window. Nothing is
    read: whether the run has a row for the account is the caller's to check."""
    ordered = sorted(runs, key=lambda r: r.as_of)
    days = [r.as_of.date() for r in ordered]
    chosen: list[tuple[Outcome, RunInfo]] = []
    unmatched = 0
    for outcome in sorted(outcomes, key=lambda o: (o.day, o.account_id, o.event)):
        latest_as_of = outcome.day - timedelta(days=lead_days)
        earliest_as_of = outcome.day - timedelta(days=horizon_days)
        # The latest run with earliest ≤ as_of ≤ latest (runs are sorted by as_of).
        position = bisect.bisect_right(days, latest_as_of) - 1
        if position < 0 or days[position] < earliest_as_of:
            unmatched += 1
            continue
        chosen.append((outcome, ordered[position]))
    return chosen, unmatched


def observations(
    store: Store,
    runs: Sequence[RunInfo],
    outcomes: Sequence[Outcome],
    *,
    lead_days: int,
    horizon_days: int,
    with_metrics: bool = True,
) -> tuple[list[Observation], int]:
    """Each outcome with its account's row in the run before it; and how many outcomes had no
    run in their window (or no row for the account in it)."""
    ordered = sorted(runs, key=lambda r: r.as_of)
    chosen, unmatched = match_events(
        ordered, outcomes, lead_days=lead_days, horizon_days=horizon_days
    )
    needed: dict[str, set[str]] = {}
    for outcome, info in chosen:
        needed.setdefault(info.run_id, set()).add(outcome.account_id)
    by_run = {
        info.run_id: _run_rows(store, info, needed[info.run_id], with_metrics)
        for info in ordered
        if info.run_id in needed
    }
    found: list[Observation] = []
    for outcome, info in chosen:
        row = by_run[info.run_id].get(outcome.account_id)
        if row is None:
            unmatched += 1
            continue
        found.append(
            Observation(
                account_id=outcome.account_id,
                event=outcome.event,
                day=outcome.day.isoformat(),
                arr=outcome.arr,
                run_id=info.run_id,
                period=info.period,
                final_score=row["final_score"],
                tier=row["tier"],
                low_coverage=row["low_coverage"],
                capped=row["capped"],
                inputs=dict(row["inputs"]),
            )
        )
    return found, unmatched


def input_names(found: Sequence[Observation]) -> list[str]:
    seen: dict[str, None] = {}
    for o in found:
        for name in o.inputs:
            seen.setdefault(name, None)
    return list(seen)


def as_mapping(outcomes: Sequence[Outcome]) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.event] = counts.get(o.event, 0) + 1
    return counts
