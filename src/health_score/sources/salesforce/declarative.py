"""Declarative Salesforce metrics: ``salesforce.custom_metrics`` in sources.yaml, no code per org.

Each metric is one aggregate over any object the org has, grouped by a lookup to the Account::

    SELECT <account_field>, <AGG>(<field>) FROM <object>
    WHERE <account_field> IN (<ids>) AND CreatedDate < <as_of> AND <filters…>
    GROUP BY <account_field>

- ``count``: rows matching (0 for an account with none); ``sum``, ``min``, ``max`` of a number
  field (``sum`` 0 with no rows, ``min``/``max`` no value);
- ``days_since``: whole days from the latest date (``MAX``) of a date/datetime field to
  ``as_of``; ``days_until``: from ``as_of`` to the earliest (``MIN``) — no value without rows;
- ``latest``: the field's value on the newest row by ``order_by`` (a history object's
  ``NewValue``, say), read as a number — no value without rows.

Filters are ``{field, op, value}``: ``op`` one of ``= != < <= > >= IN NOT IN``; ``value`` a
string, number, boolean or null (``IN``: a list), or a date relative to the run's ``as_of``:
``{as_of_date: -365}`` (a date literal 365 days before) or ``{as_of_datetime: 0}`` (midnight UTC
of that day). Every object and field name is validated as an API name, every literal escaped.

Time: rows are those created before the run's ``as_of`` (``CreatedDate < as_of``, always added),
days are counted at ``as_of`` (a UTC date), and relative dates count from it. A metric whose
filters or field read a *current-state* value (a status, an ``IsClosed``, a field that changes)
cannot be reconstructed for a past period: unless it is declared ``reconstructable: true`` (it
reads only values fixed once written: dates, history rows), a past period leaves it
*unavailable*, as the other current-state metrics are.

An object or field the org lacks or hides from this user makes that metric unavailable for every
account and the run degraded (said in the result's notes and the manifest), never "missing".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic

from health_score.numbers import to_decimal
from health_score.records import MetricValue, metric_value
from health_score.salesforce_ids import salesforce_id18

if TYPE_CHECKING:
    from health_score.sources.base import SourceResult
    from health_score.sources.salesforce.client import SalesforceClient

ApiName = Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")]
MetricName = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Scalar = str | bool | int | Decimal | None

_MODEL = pydantic.ConfigDict(extra="forbid", frozen=True)
#: Error codes of an object this user cannot read, and of a field it cannot.
UNREADABLE = frozenset(
    {"INVALID_TYPE", "INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY", "INVALID_FIELD"}
)


class AsOfDate(pydantic.BaseModel):
    """A date ``as_of_date`` days from the run's ``as_of`` (negative: before)."""

    model_config = _MODEL
    as_of_date: int = pydantic.Field(ge=-3660, le=3660)


class AsOfDatetime(pydantic.BaseModel):
    """Midnight UTC, ``as_of_datetime`` days from the run's ``as_of``."""

    model_config = _MODEL
    as_of_datetime: int = pydantic.Field(ge=-3660, le=3660)


Value = Scalar | AsOfDate | AsOfDatetime


class Filter(pydantic.BaseModel):
    model_config = _MODEL
    field: ApiName
    op: Literal["=", "!=", "<", "<=", ">", ">=", "IN", "NOT IN"]
    value: Value | tuple[Scalar, ...]

    @pydantic.model_validator(mode="after")
    def _shape(self) -> Filter:
        listed = isinstance(self.value, tuple)
        if self.op in ("IN", "NOT IN") and (not listed or not self.value):
            raise ValueError(f"{self.op} needs a non-empty list of values")
        if self.op not in ("IN", "NOT IN") and listed:
            raise ValueError(f"{self.op} takes one value, not a list (use IN)")
        if listed and any(v is None for v in self.value):  # type: ignore[union-attr]
            raise ValueError("null cannot appear in an IN list")
        if self.value is None and self.op not in ("=", "!="):
            raise ValueError("null compares only with = or !=")
        return self

    def soql(self, as_of: datetime) -> str:
        if isinstance(self.value, tuple):
            return f"{self.field} {self.op} ({','.join(literal(v, as_of) for v in self.value)})"
        return f"{self.field} {self.op} {literal(self.value, as_of)}"


def literal(value: Value, as_of: datetime) -> str:
    """A SOQL literal: strings escaped, numbers exact, dates relative to ``as_of``."""
    from health_score.sources.salesforce.metrics import soql_literal

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a number literal must be finite")
        return format(value, "f")
    if isinstance(value, AsOfDate):
        return f"{as_of.date() + timedelta(days=value.as_of_date):%Y-%m-%d}"
    if isinstance(value, AsOfDatetime):
        day = as_of.date() + timedelta(days=value.as_of_datetime)
        return f"{day:%Y-%m-%d}T00:00:00Z"
    return soql_literal(value)


class CustomMetric(pydantic.BaseModel):
    """One declarative metric (see the module docstring)."""

    model_config = _MODEL
    object: ApiName
    #: The lookup to the Account on ``object`` (e.g. ``AccountId``, ``Account__c``).
    account_field: ApiName
    aggregate: Literal["count", "sum", "min", "max", "days_since", "days_until", "latest"]
    field: ApiName | None = None
    order_by: ApiName | None = None  # ``latest`` only: the date/datetime field that orders rows
    filters: tuple[Filter, ...] = ()
    reconstructable: bool = False

    @pydantic.model_validator(mode="after")
    def _fields(self) -> CustomMetric:
        if self.aggregate == "count" and self.field is not None:
            raise ValueError("count takes no field (it counts the matching rows)")
        if self.aggregate != "count" and self.field is None:
            raise ValueError(f"{self.aggregate} needs field")
        if (self.aggregate == "latest") != (self.order_by is not None):
            raise ValueError("order_by goes with aggregate: latest (and latest needs it)")
        return self

    def query(self, ids: Sequence[str], as_of: datetime) -> str:
        from health_score.sources.salesforce.metrics import soql_id_list

        where = [
            f"{self.account_field} IN {soql_id_list(ids)}",
            f"CreatedDate < {as_of:%Y-%m-%dT%H:%M:%SZ}",
            *(f.soql(as_of) for f in self.filters),
        ]
        condition = " AND ".join(where)
        if self.aggregate == "latest":
            columns = f"{self.account_field}, {self.field}, {self.order_by}"
            tail = f"WHERE {condition} ORDER BY {self.order_by} DESC"
            return f"SELECT {columns} FROM {self.object} {tail}"  # noqa: S608 - API names, escaped literals
        function = {
            "count": "COUNT",
            "sum": "SUM",
            "min": "MIN",
            "max": "MAX",
            "days_since": "MAX",
            "days_until": "MIN",
        }[self.aggregate]
        argument = "Id" if self.field is None else self.field
        columns = f"{self.account_field}, {function}({argument}) value"
        tail = f"WHERE {condition} GROUP BY {self.account_field}"
        return f"SELECT {columns} FROM {self.object} {tail}"  # noqa: S608 - API names, escaped literals

    def value(self, raw: Any, as_of: datetime, metric: str) -> MetricValue:
        """One account's aggregate as the metric's value."""
        if raw is None:
            return None
        if self.aggregate in ("days_since", "days_until"):
            day = _day(raw)
            if day is None:
                raise ValueError(f"{metric}: {self.object}.{self.field} is not a date ({raw!r})")
            days = (as_of.date() - day).days
            return Decimal(days if self.aggregate == "days_since" else -days)
        number = to_decimal(raw)
        if number is None:
            raise ValueError(f"{metric}: {self.object}.{self.field} is not a number ({raw!r})")
        return metric_value(number)


class CustomMetrics(pydantic.RootModel[dict[MetricName, CustomMetric]]):
    """``salesforce.custom_metrics``: metric name → its declaration."""

    root: dict[MetricName, CustomMetric] = pydantic.Field(default_factory=dict)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.root)


def _day(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


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
    client: SalesforceClient,
    metrics: CustomMetrics,
    ids: Sequence[str],
    *,
    as_of: datetime,
    past: bool,
    chunk_size: int,
) -> Outcome:
    """Every custom metric over every id list (one query each; a gap loses that metric only)."""
    from health_score.sources.salesforce.client import SalesforceApiError

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
    import dataclasses

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
