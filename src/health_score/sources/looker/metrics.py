"""Turning a Look's rows into metric values (pure: nothing here makes a request).

Per metric, a transform turns the customer's rows into one raw value (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from health_score.numbers import to_fraction
from health_score.records import MetricValue, metric_value
from health_score.sources.looker.settings import (
    ChangeTransform,
    FieldTransform,
    LookSettings,
    PercentTransform,
    PresenceTransform,
    Ratio,
    RatioTransform,
    SumTransform,
    Transform,
)

# --------------------------------------------------------------------------------------------
# Turning rows into metric values (pure)

Row = Mapping[str, Any]


def exact_number(value: object) -> Fraction | None:
    """A JSON cell as an exact number (floats by their shortest repr); None if not numeric."""
    return to_fraction(value)


def to_metric(value: Fraction | None) -> MetricValue:
    """One exact division, then the project's rounding convention."""
    if value is None:
        return None
    return metric_value(Decimal(value.numerator) / Decimal(value.denominator))


def _ratio(numerator: object, denominator: object) -> Fraction | None:
    top, bottom = exact_number(numerator), exact_number(denominator)
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def _operand(row: Row, operand: str | Ratio) -> Fraction | None:
    if isinstance(operand, Ratio):
        return _ratio(row.get(operand.numerator), row.get(operand.denominator))
    return exact_number(row.get(operand))


def row_value(transform: Transform, row: Row) -> Fraction | None:
    """The value of a one-row transform (field, ratio, percent, change_pct) for one row."""
    if isinstance(transform, FieldTransform):
        return exact_number(row.get(transform.field))
    if isinstance(transform, RatioTransform):
        return _ratio(row.get(transform.numerator), row.get(transform.denominator))
    if isinstance(transform, PercentTransform):
        if transform.field is not None:
            fraction = exact_number(row.get(transform.field))
        else:
            assert transform.numerator is not None and transform.denominator is not None
            fraction = _ratio(row.get(transform.numerator), row.get(transform.denominator))
        return None if fraction is None else fraction * 100
    if isinstance(transform, ChangeTransform):
        current, previous = _operand(row, transform.current), _operand(row, transform.previous)
        if current is None or previous is None or previous == 0:
            return None
        return (current - previous) / previous * 100
    raise TypeError(f"{transform.transform} is not a one-row transform")


def customer_value(
    transform: Transform, rows: Sequence[Row], *, known: bool, complete: bool
) -> Fraction | None:
    """A metric for one customer from its rows in one Look.

    ``known``: the customer appears in some Look; ``complete``: this Look was not truncated, so a
    customer without rows in it really has none.
    """
    if isinstance(transform, PresenceTransform | SumTransform):
        if not known or (not rows and not complete):
            return None
        values = [exact_number(row.get(transform.field)) for row in rows]
        if isinstance(transform, PresenceTransform):
            return Fraction(1 if any(v is not None and v > 0 for v in values) else 0)
        numbers = [v for v in values if v is not None]
        if rows and not numbers:
            return None
        return sum(numbers, Fraction(0))
    if not rows:
        return None
    return row_value(transform, rows[0])


def transform_fields(transform: Transform) -> set[str]:
    """The row fields a transform reads."""
    fields: set[str] = set()
    for name in ("field", "numerator", "denominator", "current", "previous"):
        value = getattr(transform, name, None)
        if isinstance(value, Ratio):
            fields.update((value.numerator, value.denominator))
        elif isinstance(value, str):
            fields.add(value)
    return fields


def is_multi_row(transform: Transform) -> bool:
    return isinstance(transform, PresenceTransform | SumTransform)


@dataclass(frozen=True, slots=True)
class IndexedLook:
    look: LookSettings
    by_customer: Mapping[str, Sequence[Row]]
    complete: bool  # not truncated: a known customer without rows here really has none


def account_metrics(
    customer: str | None, indexed: Sequence[IndexedLook], known: set[str]
) -> dict[str, MetricValue]:
    """One account's metrics from every Look (all None when it has no Looker id)."""
    values: dict[str, MetricValue] = {}
    for entry in indexed:
        rows = entry.by_customer.get(customer, ()) if customer else ()
        for metric, transform in entry.look.metrics.items():
            values[metric] = (
                to_metric(
                    customer_value(
                        transform, rows, known=customer in known, complete=entry.complete
                    )
                )
                if customer
                else None
            )
    return values
