"""Jira Cloud: open bugs per customer from one bounded JQL search over all mapped customers.

``settings`` (the sources.yaml section) and ``metrics`` (the pure counting) are imported with the
package; ``extractor`` (HTTP) only when one of its names is first used, so reading sources.yaml
never loads the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from health_score.sources.jira.extractor import (
        COUNT_PATH,
        SEARCH_PATH,
        JiraExtractor,
        from_env,
        jql_list,
        jql_string,
    )

_EXTRACTOR_NAMES = frozenset(
    {"COUNT_PATH", "SEARCH_PATH", "JiraExtractor", "from_env", "jql_list", "jql_string"}
)

__all__ = [
    "COMPONENT",
    "COUNT_PATH",
    "CREDENTIAL_VARS",
    "CUSTOM_FIELD",
    "METRICS",
    "NAME",
    "OPEN_BUGS_P1_P2",
    "OPEN_BUGS_TOTAL",
    "SEARCH_PATH",
    "Bug",
    "JiraExtractor",
    "Settings",
    "customer_owners",
    "customer_values",
    "from_env",
    "jql_list",
    "jql_string",
    "open_bug_metrics",
]


def __getattr__(name: str) -> object:
    """The extractor's names, loaded on first use (PEP 562)."""
    if name in _EXTRACTOR_NAMES:
        return getattr(importlib.import_module(f"{__name__}.extractor"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
