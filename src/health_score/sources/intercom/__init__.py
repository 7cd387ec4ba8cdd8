"""Intercom: support-health metrics from one conversation search over the look-back window.

The package exports ``settings`` (the sources.yaml section; pydantic only) and ``metrics``
(pure); import the HTTP extraction (``from_env`` and the extractor) from ``.extractor``, so
reading sources.yaml never loads the HTTP stack.
"""

from __future__ import annotations

from health_score.sources.intercom.metrics import (
    METRICS,
    Conversation,
    Rules,
    company_metrics,
    parse_conversation,
    seen_at,
    time_slices,
)
from health_score.sources.intercom.settings import (
    BASE_URL_VAR,
    CREDENTIAL_VARS,
    MAX_PAGE_SIZE,
    SOURCE,
    Settings,
)

__all__ = [
    "BASE_URL_VAR",
    "CREDENTIAL_VARS",
    "MAX_PAGE_SIZE",
    "METRICS",
    "SOURCE",
    "Conversation",
    "Rules",
    "Settings",
    "company_metrics",
    "parse_conversation",
    "seen_at",
    "time_slices",
]
