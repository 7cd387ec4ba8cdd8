"""Intercom: support-health metrics from one conversation search over the look-back window.

``settings`` (the sources.yaml section) and ``metrics`` (the pure computation) are imported with
the package; ``extractor`` (HTTP) only when one of its names is first used, so reading
sources.yaml never loads the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from health_score.sources.intercom.metrics import (
    METRICS,
    Conversation,
    Rules,
    company_metrics,
    parse_conversation,
    time_slices,
)
from health_score.sources.intercom.settings import (
    BASE_URL_VAR,
    CREDENTIAL_VARS,
    MAX_PAGE_SIZE,
    SOURCE,
    Settings,
)

if TYPE_CHECKING:
    from health_score.sources.intercom.extractor import (
        API_VERSION,
        COMPANIES_SCROLL,
        CONTACTS_SEARCH,
        CONVERSATIONS_SEARCH,
        DEFAULT_BASE_URL,
        IntercomExtractor,
        from_env,
    )

_EXTRACTOR_NAMES = frozenset(
    {
        "API_VERSION",
        "COMPANIES_SCROLL",
        "CONTACTS_SEARCH",
        "CONVERSATIONS_SEARCH",
        "DEFAULT_BASE_URL",
        "IntercomExtractor",
        "from_env",
    }
)

__all__ = [
    "API_VERSION",
    "BASE_URL_VAR",
    "COMPANIES_SCROLL",
    "CONTACTS_SEARCH",
    "CONVERSATIONS_SEARCH",
    "CREDENTIAL_VARS",
    "DEFAULT_BASE_URL",
    "MAX_PAGE_SIZE",
    "METRICS",
    "SOURCE",
    "Conversation",
    "IntercomExtractor",
    "Rules",
    "Settings",
    "company_metrics",
    "from_env",
    "parse_conversation",
    "time_slices",
]


def __getattr__(name: str) -> object:
    """The extractor's names, loaded on first use (PEP 562)."""
    if name in _EXTRACTOR_NAMES:
        return getattr(importlib.import_module(f"{__name__}.extractor"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
