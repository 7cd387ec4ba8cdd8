"""Running the declarative Salesforce metrics (``salesforce.custom_metrics``; their config is
:mod:`health_score.sources.salesforce.declarative`): one query per metric and id list, results
merged into the extractor's values, a hidden object or field losing that metric only."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from health_score.records import MetricValue
from health_score.salesforce_ids import salesforce_id18
from health_score.sources.salesforce.client import SalesforceApiError
from health_score.sources.salesforce.declarative import (
    UNREADABLE,
    CustomMetric,
    CustomMetrics,
    QueryClient,
)

if TYPE_CHECKING:
    from health_score.sources.base import SourceResult


def _column(row: Mapping[str, Any], name: str) -> Any:
    lowered = name.lower()
    return next((v for k, v in row.items() if k.lower() == lowered), None)


_MISSING = re.compile(r"No such column '([A-Za-z0-9_]+)'")


@dataclass
class Outcome:
    """Per 18-character account id, the custom metrics' values; the metrics lost; what to say."""

    values: dict[str, dict[str, MetricValue]] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)


def run(
    client: QueryClient,
    metrics: CustomMetrics,
    ids: Sequence[str],
    *,
    as_of: datetime,
    past: bool,
    chunk_size: int,
) -> Outcome:
    """Every custom metric over every id list (one query each; a gap loses that metric only)."""
    outcome = Outcome()
    instant = datetime.combine(as_of.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    instant = as_of.astimezone(UTC) if as_of.astimezone(UTC) != instant else instant
    stale = sorted(m for m, spec in metrics.root.items() if past and not spec.reconstructable)
    if stale:
        outcome.lost.update(stale)
        outcome.gaps.append(
            f"not reconstructable for a past period (as_of {as_of:%Y-%m-%d}): custom metrics "
            f"that read current-state values (not declared reconstructable) unavailable: "
            f"{', '.join(stale)}"
        )
    chunks = [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]
    for name, spec in metrics.root.items():
        if name in outcome.lost:
            continue
        try:
            for chunk in chunks:
                rows = list(client.query(spec.query(chunk, instant)))
                _collect(outcome.values, name, spec, rows, instant)
        except SalesforceApiError as exc:
            if exc.error_code not in UNREADABLE:
                raise
            outcome.lost.add(name)
            for values in outcome.values.values():
                values.pop(name, None)
            column = _MISSING.search(exc.api_message)
            what = f"{spec.object}.{column.group(1)}" if column else spec.object
            outcome.gaps.append(
                f"{what} cannot be read ({exc.error_code}: not in the org, or hidden from this "
                f"user): custom metric {name} unavailable"
            )
            continue
        outcome.notes.append(f"custom metric {name}: {_describe(spec)}")
    return outcome


def _describe(spec: CustomMetric) -> str:
    what = "rows" if spec.field is None else spec.field
    where = f" where {len(spec.filters)} filter(s) hold" if spec.filters else ""
    return (
        f"{spec.aggregate} of {spec.object} {what}{where}, created before as_of, "
        f"by {spec.account_field}"
    )


def _collect(
    values: dict[str, dict[str, MetricValue]],
    name: str,
    spec: CustomMetric,
    rows: Sequence[Mapping[str, Any]],
    as_of: datetime,
) -> None:
    for row in rows:
        account = _column(row, spec.account_field)
        if not isinstance(account, str):
            continue
        mine = values.setdefault(salesforce_id18(account), {})
        if spec.aggregate == "latest":
            assert spec.field is not None
            if name not in mine:  # newest first: the first row wins
                mine[name] = spec.value(_column(row, spec.field), as_of, name)
        else:
            mine[name] = spec.value(_column(row, "value"), as_of, name)


def merge(
    result: SourceResult, outcome: Outcome, metrics: CustomMetrics, owners: Mapping[str, str]
) -> SourceResult:
    """``result`` with the custom metrics added: ``owners`` maps account_id → its 18-character
    Salesforce id, for the accounts in the org (the others get no values)."""

    merged: dict[str, dict[str, MetricValue]] = {}
    for account_id, values in result.metrics.items():
        sf_id = owners.get(account_id)
        own = outcome.values.get(sf_id, {}) if sf_id else {}
        in_org = sf_id is not None
        extra: dict[str, MetricValue] = {}
        for name, spec in metrics.root.items():
            if name in outcome.lost or not in_org:
                extra[name] = None
            elif spec.aggregate in ("count", "sum"):
                extra[name] = own.get(name) if own.get(name) is not None else Decimal(0)
            else:
                extra[name] = own.get(name)
        merged[account_id] = {**values, **extra}
    lost = frozenset(outcome.lost)
    unavailable = dict(result.unavailable)
    if lost:
        for account_id in result.metrics:
            unavailable[account_id] = unavailable.get(account_id, frozenset()) | lost
    return dataclasses.replace(
        result,
        metrics=merged,
        missing_metrics=result.missing_metrics | lost,
        notes=(*result.notes, *outcome.notes, *outcome.gaps),
        unavailable=unavailable,
        incomplete=(*result.incomplete, *outcome.gaps),
    )
