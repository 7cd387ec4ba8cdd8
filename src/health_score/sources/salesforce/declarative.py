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

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

import pydantic

from health_score.numbers import to_decimal
from health_score.records import MetricValue, metric_value
from health_score.sources.salesforce.soql_text import soql_id_list, soql_literal

if TYPE_CHECKING:
    pass


class QueryClient(Protocol):
    """What the declarative metrics need of the Salesforce client (its ``query``); a protocol,
    so this module (imported by the settings) does not import the client."""

    def query(self, soql: str, *, all_rows: bool = False) -> Iterator[Mapping[str, Any]]: ...


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
