"""CSV outputs: the scores file (one row per account) and the metric-level detail file.

Files are written atomically: to a temporary file in the same folder, flushed, then renamed, so a
reader never sees half a file and a failed write leaves the previous file intact.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from health_score.csvsafe import safe_cell
from health_score.records import NO_CONTEXT, AccountContext, AccountInput
from health_score.scoring.composite import (
    MISSING,
    SCORED,
    UNAVAILABLE,
    AccountScore,
    CompactScore,
    Model,
    publish,
)
from health_score.scoring.qualitative import rule_in_words
from health_score.scoring.spec import PLATFORM_VALUE, Band, ScoringConfig

SCORE_COLUMNS_HEAD = (
    "account_id",
    "account_name",
    "segment",
    "quantitative_score",
    "final_score",
    "health_tier",
    "churn_risk_score",
    "platform_value_score",
)
SCORE_COLUMNS_TAIL = (
    "coverage_pct",
    "qualitative_override",  # true/false: the cap lowered the score (as in the original)
    "modifier_applied",  # the matching rule in words (as in the original); empty: none matched
    "cap_value",  # the matching rule's cap; empty: none matched
    "cap_rule",  # the matching rule's condition key
    "critical_count",
    "moderate_count",
    "watch_count",
    "critical_confirmed",
    "low_coverage",
)
#: Context beside the score (from Salesforce, not scored), after every other column: the account
#: owner's name, ARR, the renewal date (YYYY-MM-DD) and the days from the period's end to it;
#: empty when unknown.
CONTEXT_COLUMNS = ("owner", "arr", "renewal_date", "days_to_renewal")
METRIC_COLUMNS = (
    "account_id",
    "dimension",
    "metric",
    "status",
    "raw_value",
    "lower_is_better",
    "green",
    "yellow",
    "red",
    "normalised_score",
    "weight_in_dimension",
    "effective_weight",
    "points",
)


def score_columns(config: ScoringConfig) -> list[str]:
    dims = [d for d in config.dimensions if d != PLATFORM_VALUE]
    return [*SCORE_COLUMNS_HEAD, *dims, *SCORE_COLUMNS_TAIL, *CONTEXT_COLUMNS]


def context_cells(context: AccountContext) -> list[str]:
    """The :data:`CONTEXT_COLUMNS` cells of one account (not yet guarded for spreadsheets)."""
    return [
        context.owner or "",
        "" if context.arr is None else number_text(context.arr),
        "" if context.renewal_date is None else context.renewal_date.isoformat(),
        "" if context.days_to_renewal is None else str(context.days_to_renewal),
    ]


def fmt(value: Decimal | None) -> str:
    """One-decimal published value, or empty for no score."""
    rounded = publish(value)
    return "" if rounded is None else format(rounded, "f")


def score_row(
    score: AccountScore, config: ScoringConfig, context: AccountContext = NO_CONTEXT
) -> list[str]:
    s = score.signals
    dims = [d for d in config.dimensions if d != PLATFORM_VALUE]
    return [
        score.account_id,
        score.account_name,
        score.segment,
        fmt(score.quantitative),
        fmt(score.final),
        score.tier,
        fmt(score.churn_risk),
        fmt(score.platform_value),
        *(fmt(score.dimensions.get(d)) for d in dims),
        fmt(score.coverage_pct),
        "true" if score.cap.applied else "false",
        rule_in_words(score.cap.rule) if score.cap.rule else "",
        "" if score.cap.cap is None else format(score.cap.cap, "f"),
        score.cap.rule.condition if score.cap.rule else "",
        str(s.critical),
        str(s.moderate),
        str(s.watch),
        str(s.critical_confirmed),
        "true" if score.low_coverage else "false",
        *context_cells(context),
    ]


def metric_rows(score: AccountScore) -> Iterable[list[str]]:
    """Detail rows of one account (``METRIC_COLUMNS``), as lists of cells."""
    for m in score.metrics:
        band = m.band
        yield [
            score.account_id,
            m.dimension,
            m.metric,
            m.status,
            "" if m.raw is None else format(m.raw, "f"),
            "true" if m.lower_is_better else "false",
            "" if band is None else format(band.green, "f"),
            "" if band is None else format(band.yellow, "f"),
            "" if band is None else format(band.red, "f"),
            _q(m.score, Q4),
            format(m.weight, "f"),
            _q(m.effective_weight, Q8) if m.score is not None else "0",
            _q(m.points, Q6) if m.score is not None else "",
        ]


Q4 = Decimal("0.0001")
Q6 = Decimal("0.000001")
Q8 = Decimal("0.00000001")


def _q(value: Decimal | None, quantum: Decimal) -> str:
    if value is None:
        return ""
    return format(value.quantize(quantum, rounding=ROUND_HALF_UP), "f")


def csv_cell(text: str) -> str:
    """One CSV cell, quoted only when it must be."""
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def number_text(value: Decimal) -> str:
    """A number as the detail rows show it: ``str`` unless that takes exponent form."""
    text = str(value)
    return format(value, "f") if "E" in text else text


_number = number_text


class DetailLines:
    """Formats an account's detail rows (those of :func:`metric_rows`) straight from a
    :class:`CompactScore`: the fast path for big runs.

    One instance serves one model. Cells that depend only on the metric and segment (names,
    thresholds, weight) are formatted once per segment, and effective weights once per distinct
    dimension multiplier (most accounts share a handful). Only the id and names can need quoting;
    the other cells are numbers and fixed words.
    """

    _MAX_CACHED = 50_000

    def __init__(self, model: Model) -> None:
        self.model = model
        self._static: dict[str, list[list[tuple[str, str, str]]]] = {}
        self._effective: dict[tuple[int, Decimal], tuple[list[Decimal], list[str]]] = {}

    def _static_for(self, segment: str) -> list[list[tuple[str, str, str]]]:
        static = self._static.get(segment)
        if static is None:
            static = self._static[segment] = [
                [
                    _static_cells(
                        dim.name, m.name, m.lower_is_better, m.bands.get(segment), m.weight
                    )
                    for m in dim.metrics
                ]
                for dim in self.model.dimensions
            ]
        return static

    def _effective_for(self, index: int, multiplier: Decimal) -> tuple[list[Decimal], list[str]]:
        key = (index, multiplier)
        cached = self._effective.get(key)
        if cached is None:
            if len(self._effective) >= self._MAX_CACHED:
                self._effective.clear()
            weights = [m.weight * multiplier for m in self.model.dimensions[index].metrics]
            cached = self._effective[key] = (weights, [_q(w, Q8) or "0" for w in weights])
        return cached

    def lines(self, account: AccountInput, compact: CompactScore) -> str:
        """All detail rows of one account, as CSV text."""
        prefix = csv_cell(safe_cell(account.account_id)) + ","
        values = account.metrics
        unavailable = account.unavailable
        out: list[str] = []
        static = self._static_for(account.segment)
        for index, (dim, scores, multiplier) in enumerate(
            zip(self.model.dimensions, compact.metric_scores, compact.multipliers, strict=True)
        ):
            weights, weight_cells = self._effective_for(index, multiplier)
            for position, (metric, metric_score) in enumerate(
                zip(dim.metrics, scores, strict=True)
            ):
                names, thresholds, weight = static[index][position]
                raw = values.get(metric.name)
                raw_cell = "" if raw is None else _number(raw)
                if metric_score is None:
                    status = UNAVAILABLE if metric.name in unavailable else MISSING
                    out.append(f"{prefix}{names},{status},{raw_cell},{thresholds},,{weight},0,\n")
                else:
                    # str() of a value quantized to ≤ 6 places never takes exponent form.
                    score_cell = str(metric_score.quantize(Q4, rounding=ROUND_HALF_UP))
                    points = weights[position] * metric_score
                    out.append(
                        f"{prefix}{names},{SCORED},{raw_cell},{thresholds},{score_cell},{weight},"
                        f"{weight_cells[position]},{points.quantize(Q6, rounding=ROUND_HALF_UP)}\n"
                    )
        return "".join(out)


def _static_cells(
    dimension: str, metric: str, lower_is_better: bool, band: Band | None, weight: Decimal
) -> tuple[str, str, str]:
    """The cells of a detail row that depend only on metric and segment."""
    names = f"{csv_cell(safe_cell(dimension))},{csv_cell(safe_cell(metric))}"
    direction = "true" if lower_is_better else "false"
    if band is None:
        thresholds = f"{direction},,,"
    else:
        thresholds = f"{direction},{_number(band.green)},{_number(band.yellow)},{_number(band.red)}"
    return names, thresholds, _number(weight)


def write_csv_atomic(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    """Write a CSV so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write a file so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_scores(
    path: Path,
    scores: Sequence[AccountScore],
    config: ScoringConfig,
    contexts: Mapping[str, AccountContext] | None = None,
) -> Path:
    """The scores CSV, its cells guarded against formula injection (:mod:`health_score.csvsafe`);
    ``contexts``: account_id → its context columns (none: empty)."""
    known = contexts or {}
    rows = (
        [safe_cell(cell) for cell in score_row(s, config, known.get(s.account_id, NO_CONTEXT))]
        for s in scores
    )
    return write_csv_atomic(path, score_columns(config), rows)
