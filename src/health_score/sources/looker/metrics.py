"""Turning a Look's rows into metric values (pure: nothing here makes a request).

Per metric, a transform turns the customer's rows into one raw value (see the package docstring).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from health_score.numbers import to_fraction
from health_score.records import MetricValue, metric_value
from health_score.sources.looker.settings import (
    AcrossLooks,
    ChangeTransform,
    FieldTransform,
    LookField,
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
        if current is None or previous is None:
            return None
        if previous == 0:
            limit = transform.when_previous_zero
            if limit is None:
                return None
            sign = (current > 0) - (current < 0)
            return Fraction(limit) * sign
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
        if isinstance(transform, PresenceTransform):
            if transform.counts == "any_value":
                return Fraction(
                    1 if any(has_value(row.get(transform.field)) for row in rows) else 0
                )
            values = [exact_number(row.get(transform.field)) for row in rows]
            return Fraction(1 if any(v is not None and v > 0 for v in values) else 0)
        numbers = [
            v
            for row in rows
            for f in transform.summed
            if (v := exact_number(row.get(f))) is not None
        ]
        if rows and not numbers:
            return None
        return sum(numbers, Fraction(0))
    if not rows:
        return None
    return row_value(transform, rows[0])


def has_value(cell: object) -> bool:
    """A cell holds something: not null, not empty or blank text (0 and false are values)."""
    if cell is None:
        return False
    return not (isinstance(cell, str) and not cell.strip())


def transform_fields(transform: Transform) -> set[str]:
    """The row fields a transform reads."""
    fields: set[str] = set(getattr(transform, "fields", ()))
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
class Cut:
    """Where a truncated Look stopped, when its rows are in customer order.

    ``last`` is the customer of the last row returned, as a sort key (a number when every
    customer id of the Look is a JSON number, else the id as text); ``descending`` is the order.
    Customers before ``last`` were returned whole; ``last`` itself may have lost rows; customers
    after it are beyond the cut.
    """

    last: Fraction | str
    descending: bool = False


def sort_key(value: object, numeric: bool) -> Fraction | str | None:
    """A customer id as the Look orders it (None when a numeric Look cannot place it)."""
    return exact_number(value) if numeric else str(value)


def locate_cut(customers: Sequence[object]) -> Cut | None:
    """The cut of a truncated Look whose rows (customer ids in row order) are sorted by customer.

    None when the order cannot be told: the ids are not monotonic, or name fewer than two
    customers (so neither direction is shown).
    """
    ids = [c for c in customers if c is not None]
    if len(ids) != len(customers) or not ids:
        return None
    numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in ids)
    keys = [sort_key(c, numeric) for c in ids]
    if any(k is None for k in keys):
        return None
    pairs = list(itertools.pairwise(keys))
    ascending = all(a <= b for a, b in pairs)  # type: ignore[operator]
    descending = all(a >= b for a, b in pairs)  # type: ignore[operator]
    if keys[0] == keys[-1] or ascending == descending:
        return None
    last = keys[-1]
    assert last is not None
    return Cut(last, descending=descending)


#: Where a customer stands against a truncated Look's cut.
BEFORE, AT, BEYOND = "before", "at", "beyond"


def position(cut: Cut | None, customer: str) -> str:
    """BEFORE (its rows are all there), AT (the last customer returned: rows may be missing) or
    BEYOND (its rows, if any, were cut); without a located cut every customer is BEYOND."""
    if cut is None:
        return BEYOND
    key = sort_key(customer, isinstance(cut.last, Fraction))
    if key is None or type(key) is not type(cut.last):
        return BEYOND
    if key == cut.last:
        return AT
    before = key > cut.last if cut.descending else key < cut.last  # type: ignore[operator]
    return BEFORE if before else BEYOND


@dataclass(frozen=True, slots=True)
class IndexedLook:
    look: LookSettings
    by_customer: Mapping[str, Sequence[Row]]
    complete: bool  # not truncated: a known customer without rows here really has none
    cut: Cut | None = None  # truncated and in customer order: where the rows stopped

    def unavailable(self, customer: str) -> frozenset[str]:
        """This Look's metrics that a truncated result cannot give for ``customer``."""
        if self.complete:
            return frozenset()
        where = position(self.cut, customer)
        if where == BEFORE:
            return frozenset()
        if where == AT:  # its first row is there; rows after it may not be
            return frozenset(m for m, t in self.look.metrics.items() if is_multi_row(t))
        return frozenset(self.look.metrics)


def unavailable_metrics(customer: str | None, indexed: Sequence[IndexedLook]) -> frozenset[str]:
    """Metrics a truncated Look leaves unknown for one account (none without a Looker id).

    A customer beyond some Look's cut and absent from every returned row may or may not be known
    to Looker, so its ``presence`` and ``sum`` metrics (0 for a known customer, no value for an
    unknown one) are unavailable in every Look.
    """
    if not customer:
        return frozenset()
    out: set[str] = set()
    for entry in indexed:
        out |= entry.unavailable(customer)
    if out and not any(customer in entry.by_customer for entry in indexed):
        for entry in indexed:
            out |= {m for m, t in entry.look.metrics.items() if is_multi_row(t)}
    return frozenset(out)


def side_value(
    side: LookField, customer: str, entry: IndexedLook, *, known: bool
) -> Fraction | None:
    """One side of an across-Look metric: the field summed over the customer's rows in its Look
    (0 for a known customer without rows there; no value if no row holds a number)."""
    rows = entry.by_customer.get(customer, ())
    if not known:
        return None
    numbers = [v for row in rows if (v := exact_number(row.get(side.field))) is not None]
    if rows and not numbers:
        return None
    return sum(numbers, Fraction(0))


def across_unavailable(
    customer: str, across: Mapping[str, AcrossLooks], indexed: Sequence[IndexedLook]
) -> frozenset[str]:
    """Across-Look metrics a truncated (or not run) Look leaves unknown for one customer: a side
    is known only where its Look was complete for the customer (before a located cut)."""
    by_id = {entry.look.id: entry for entry in indexed}
    lost: set[str] = set()
    for metric, spec in across.items():
        for side in spec.sides:
            entry = by_id.get(side.look)
            if entry is None or not (entry.complete or position(entry.cut, customer) == BEFORE):
                lost.add(metric)
    return frozenset(lost)


def across_metrics(
    customer: str | None,
    across: Mapping[str, AcrossLooks],
    indexed: Sequence[IndexedLook],
    known: set[str],
) -> dict[str, MetricValue]:
    """The across-Look metrics of one account (None without a Looker id, or when unavailable)."""
    if not customer:
        return dict.fromkeys(across)
    by_id = {entry.look.id: entry for entry in indexed}
    lost = across_unavailable(customer, across, indexed)
    values: dict[str, MetricValue] = {}
    for metric, spec in across.items():
        if metric in lost:
            values[metric] = None
            continue
        is_known = customer in known
        top = side_value(spec.numerator, customer, by_id[spec.numerator.look], known=is_known)
        bottom = side_value(
            spec.denominator, customer, by_id[spec.denominator.look], known=is_known
        )
        if top is None or bottom is None or bottom == 0:
            values[metric] = None
            continue
        ratio = top / bottom
        values[metric] = to_metric(ratio * 100 if spec.transform == "percent" else ratio)
    return values


def account_metrics(
    customer: str | None, indexed: Sequence[IndexedLook], known: set[str]
) -> dict[str, MetricValue]:
    """One account's metrics from every Look (all None when it has no Looker id; None for the
    metrics :func:`unavailable_metrics` names)."""
    unavailable = unavailable_metrics(customer, indexed)
    values: dict[str, MetricValue] = {}
    for entry in indexed:
        rows = entry.by_customer.get(customer, ()) if customer else ()
        for metric, transform in entry.look.metrics.items():
            values[metric] = (
                to_metric(
                    customer_value(
                        transform,
                        rows,
                        known=customer in known,
                        # before a located cut, a customer's rows are all there (or it has none)
                        complete=entry.complete or position(entry.cut, customer) == BEFORE,
                    )
                )
                if customer and metric not in unavailable
                else None
            )
    return values
