"""Looker: product adoption and platform value, from a few saved Looks run once per pipeline run.

Each Look configured in ``sources.yaml`` (``looker.looks``) is run exactly once with
``GET /api/4.0/looks/{id}/run/json`` — never once per account — and its rows are matched to
accounts by the configured customer id field (``Account.looker_customer_id``). Per metric, a
transform turns the customer's rows into one raw value:

- ``field``: a field's value as is;
- ``ratio``: numerator / denominator (denominator 0 or null → no value);
- ``percent``: a fraction as a percent, or a ratio of two fields as a percent;
- ``change_pct``: percent change from a previous value to a current one (each a field or a ratio);
- ``presence``: 1 when the customer has a row with a positive value, 0 when Looker knows the
  customer but it has no such row, no value when Looker does not know the customer;
- ``sum``: a field summed over the customer's rows (0 for a known customer with none).

A customer is *known to Looker* when it appears in any configured Look. Looker caps results at
5,000 rows unless told otherwise: Looks run with ``limit=-1`` (no cap) by default; a Look given a
``limit`` that it reaches is reported as truncated, and then absence from it proves nothing, so
``presence`` and ``sum`` give no value (rather than 0) for customers without rows there.

A Look run as saved computes its own look-back window inside Looker (``run_look`` takes no
filters), so it describes the current period only: for a past period it is not run and its
metrics are unavailable. A Look that names its ``date_field`` is run for the period instead: its
saved query with the filter on that field replaced by the period's range (see ``.extractor``).

The package exports ``settings`` (the sources.yaml section; pydantic only) and ``metrics``
(pure); import the HTTP extraction (``from_env`` and the extractor) from ``.extractor``, so
reading sources.yaml never loads the HTTP stack.
"""

from __future__ import annotations

from health_score.sources.looker.metrics import (
    IndexedLook,
    Row,
    account_metrics,
    customer_value,
    exact_number,
    is_multi_row,
    row_value,
    to_metric,
    transform_fields,
)
from health_score.sources.looker.settings import (
    CREDENTIAL_HINT,
    CREDENTIAL_VARS,
    SOURCE,
    ChangeTransform,
    FieldName,
    FieldTransform,
    LookSettings,
    MetricName,
    PercentTransform,
    PresenceTransform,
    Ratio,
    RatioTransform,
    Settings,
    SumTransform,
    Transform,
)

__all__ = [
    "CREDENTIAL_HINT",
    "CREDENTIAL_VARS",
    "SOURCE",
    "ChangeTransform",
    "FieldName",
    "FieldTransform",
    "IndexedLook",
    "LookSettings",
    "MetricName",
    "PercentTransform",
    "PresenceTransform",
    "Ratio",
    "RatioTransform",
    "Row",
    "Settings",
    "SumTransform",
    "Transform",
    "account_metrics",
    "customer_value",
    "exact_number",
    "is_multi_row",
    "row_value",
    "to_metric",
    "transform_fields",
]
