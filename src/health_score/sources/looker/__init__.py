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

Looks compute their own look-back windows inside Looker (``run_look`` takes no filters), so
``as_of`` is accepted for the common interface only.

``settings`` (the sources.yaml section) and ``metrics`` (the pure transforms) are imported with
the package; ``extractor`` (HTTP) only when one of its names is first used, so reading
sources.yaml never loads the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from health_score.sources.looker.extractor import (
        API_PATH,
        DEFAULT_ROW_CAP,
        TOKEN_MARGIN_SECONDS,
        LookerExtractor,
        from_env,
    )

_EXTRACTOR_NAMES = frozenset(
    {"API_PATH", "DEFAULT_ROW_CAP", "TOKEN_MARGIN_SECONDS", "LookerExtractor", "from_env"}
)

__all__ = [
    "API_PATH",
    "CREDENTIAL_HINT",
    "CREDENTIAL_VARS",
    "DEFAULT_ROW_CAP",
    "SOURCE",
    "TOKEN_MARGIN_SECONDS",
    "ChangeTransform",
    "FieldName",
    "FieldTransform",
    "IndexedLook",
    "LookSettings",
    "LookerExtractor",
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
    "from_env",
    "is_multi_row",
    "row_value",
    "to_metric",
    "transform_fields",
]


def __getattr__(name: str) -> object:
    """The extractor's names, loaded on first use (PEP 562)."""
    if name in _EXTRACTOR_NAMES:
        return getattr(importlib.import_module(f"{__name__}.extractor"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
