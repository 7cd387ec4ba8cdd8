"""The raw-metrics file (``--from-raw``, and ``raw.csv`` in every run folder).

Columns: ``account_id``, optional ``account_name`` and ``segment``, one column per metric name,
and the signal columns ``critical_count``, ``moderate_count``, ``watch_count``,
``critical_confirmed`` (0/1; optionally ``moderate_confirmed``, ``watch_confirmed``).
An empty cell (or null / NA / None / -) is missing data. A number must be finite, below 1e15 in
magnitude and of at most 30 significant digits (:func:`health_score.numbers.bounds_problem`):
``NaN``, ``inf`` or ``1e999`` in a metrics file is a broken export, not "no data".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from health_score.config import ConfigError, ConfigProblem, Problems, csv_records, shown
from health_score.numbers import BOUNDS_EXPECTED, bounds_problem, parse_decimal
from health_score.records import NO_SIGNALS, AccountInput, SignalCounts
from health_score.scoring.spec import ScoringConfig

SIGNAL_COLUMNS = ("critical_count", "moderate_count", "watch_count", "critical_confirmed")
OPTIONAL_SIGNAL_COLUMNS = ("moderate_confirmed", "watch_confirmed")
MISSING_TOKENS = frozenset({"", "null", "none", "na", "n/a", "-"})
DEFAULT_SEGMENT = "standard"


class RawFileError(ConfigError):
    """Problems in a raw-metrics file; each names the file, line and column."""


@dataclass(frozen=True, slots=True)
class RawFile:
    accounts: tuple[AccountInput, ...]
    warnings: tuple[str, ...]
    source_bytes: bytes = b""


class OutOfBounds(InvalidOperation):
    """A number, but not one a metrics file may hold; the message says why."""


def parse_cell(text: str) -> Decimal | None:
    """A metric cell: Decimal from the literal as written, or None when missing.

    InvalidOperation when it is no number; OutOfBounds when it is one out of bounds.
    """
    if not text:
        return None
    value = parse_decimal(text)  # the common case first: a plain number
    if value is None:
        if text.strip().lower() in MISSING_TOKENS:
            return None
        raise InvalidOperation(text)
    problem = bounds_problem(value)
    if problem is not None:
        raise OutOfBounds(problem)
    return value


def _count(text: str) -> int:
    value = parse_cell(text)
    if value is None:
        return 0
    if value != value.to_integral_value() or value < 0:
        raise InvalidOperation(text)
    return int(value)


def read_raw(path: Path, config: ScoringConfig) -> RawFile:
    """Read and validate a raw-metrics file; every problem is reported at once."""
    problems: list[ConfigProblem] = []
    rp = Problems(str(path), problems)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise RawFileError([ConfigProblem(str(path), "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RawFileError([ConfigProblem(str(path), "", f"cannot read: {exc}")]) from None
    records = csv_records(text, rp)
    header = [h.strip() for h in next(records, (1, []))[1]]
    metrics = config.metric_names
    known = {
        "account_id",
        "account_name",
        "segment",
        "period",
        *metrics,
        *SIGNAL_COLUMNS,
        *OPTIONAL_SIGNAL_COLUMNS,
    }
    warnings = [
        f"{path}: column {shown(c)} is not a metric of the config; ignored"
        for c in header
        if c and c not in known
    ]
    if header and not any(m in header for m in metrics):
        rp.add("line 1", f"no metric columns (expected some of {list(metrics)})")
    has_segment = "segment" in header
    if header and not has_segment:
        warnings.append(
            f"{path}: no segment column; every account is scored as {DEFAULT_SEGMENT!r}"
        )
    if header and "account_id" not in header:
        rp.add("line 1", f"missing required column(s) ['account_id'] (header is {shown(header)})")
        raise RawFileError(problems)
    # Plain lists and column indices rather than a dict per row: a file can hold 100,000 rows.
    index = {name: i for i, name in enumerate(header)}
    width = len(header)
    id_at, name_at, segment_at = (
        index.get("account_id"),
        index.get("account_name"),
        index.get("segment"),
    )
    metric_at = [(metric, index.get(metric)) for metric in metrics]
    count_at = [
        (column, index.get(column)) for column in (*SIGNAL_COLUMNS, *OPTIONAL_SIGNAL_COLUMNS)
    ]
    accounts: list[AccountInput] = []
    seen: dict[str, int] = {}
    parsed: dict[str, Decimal | None] = {}  # literal → value: one Decimal per distinct literal
    whole: dict[str, int] = {}
    for line, row in records:
        if not any(cell.strip() for cell in row):
            continue  # blank line
        if len(row) < width:
            row = row + [""] * (width - len(row))
        loc = f"line {line}"
        account_id = row[id_at].strip() if id_at is not None else ""
        if not account_id:
            rp.add(loc, "account_id is empty")
            continue
        if account_id in seen:
            rp.add(loc, f"account_id {shown(account_id)} duplicates line {seen[account_id]}")
            continue
        seen[account_id] = line
        segment = row[segment_at].strip() if segment_at is not None else DEFAULT_SEGMENT
        if segment not in config.segments:
            rp.add(
                f"{loc}, column segment",
                f"unknown segment {shown(segment)} (expected one of {sorted(config.segments)})",
            )
            continue
        values: dict[str, Decimal | None] = {}
        ok = True
        for metric, at in metric_at:
            cell = row[at] if at is not None else ""
            if cell in parsed:
                values[metric] = parsed[cell]
                continue
            try:
                values[metric] = parsed[cell] = parse_cell(cell.strip())
            except OutOfBounds as exc:
                rp.add(
                    f"{loc}, column {metric}",
                    f"expected {BOUNDS_EXPECTED}, or an empty cell; got {shown(cell)} ({exc})",
                )
                ok = False
            except InvalidOperation:
                rp.add(
                    f"{loc}, column {metric}",
                    f"expected a number or an empty cell, got {shown(cell)}",
                )
                ok = False
        counts: dict[str, int] = {}
        for column, at in count_at:
            cell = row[at] if at is not None else ""
            if cell not in whole:
                try:
                    whole[cell] = _count(cell.strip())
                except InvalidOperation:
                    rp.add(
                        f"{loc}, column {column}",
                        f"expected a whole number ≥ 0 below 1e15, got {shown(cell)}",
                    )
                    ok = False
                    continue
            counts[column] = whole[cell]
        if not ok:
            continue
        confirmed = counts["critical_confirmed"]
        signals = (
            SignalCounts(
                critical=max(counts["critical_count"], confirmed),
                moderate=max(counts["moderate_count"], counts["moderate_confirmed"]),
                watch=max(counts["watch_count"], counts["watch_confirmed"]),
                critical_confirmed=confirmed,
                moderate_confirmed=counts["moderate_confirmed"],
                watch_confirmed=counts["watch_confirmed"],
            )
            if any(counts.values())
            else NO_SIGNALS
        )
        name = row[name_at].strip() if name_at is not None else ""
        accounts.append(AccountInput(account_id, name or account_id, segment, values, signals))
    if problems:
        raise RawFileError(problems)
    if not accounts:
        raise RawFileError([ConfigProblem(str(path), "", "no account rows")])
    return RawFile(tuple(accounts), tuple(warnings), data)


def raw_header(metrics: Sequence[str]) -> list[str]:
    return [
        "account_id",
        "account_name",
        "segment",
        *metrics,
        *SIGNAL_COLUMNS,
        *OPTIONAL_SIGNAL_COLUMNS,
    ]


def _fmt(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def raw_rows(accounts: Iterable[AccountInput], metrics: Sequence[str]) -> Iterable[list[str]]:
    """Rows in the raw-file format (what ``--from-raw`` reads back)."""
    for a in accounts:
        s = a.signals
        yield [
            a.account_id,
            a.account_name,
            a.segment,
            *(_fmt(a.metrics.get(m)) for m in metrics),
            str(s.critical),
            str(s.moderate),
            str(s.watch),
            str(s.critical_confirmed),
            str(s.moderate_confirmed),
            str(s.watch_confirmed),
        ]
