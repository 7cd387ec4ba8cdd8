"""Jira Cloud: open bugs per customer from one bounded JQL search over all mapped customers.

The package exports ``settings`` (the sources.yaml section; pydantic only) and ``metrics``
(pure); import the HTTP extraction (``from_env`` and the extractor) from ``.extractor``, so
reading sources.yaml never loads the HTTP stack.
"""

from __future__ import annotations

from health_score.sources.jira.metrics import (
    METRICS,
    OPEN_BUGS_P1_P2,
    OPEN_BUGS_TOTAL,
    Bug,
    customer_owners,
    customer_values,
    open_bug_metrics,
)
from health_score.sources.jira.settings import (
    COMPONENT,
    CREDENTIAL_VARS,
    CUSTOM_FIELD,
    NAME,
    Settings,
)

__all__ = [
    "COMPONENT",
    "CREDENTIAL_VARS",
    "CUSTOM_FIELD",
    "METRICS",
    "NAME",
    "OPEN_BUGS_P1_P2",
    "OPEN_BUGS_TOTAL",
    "Bug",
    "Settings",
    "customer_owners",
    "customer_values",
    "open_bug_metrics",
]
