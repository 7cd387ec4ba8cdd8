"""Salesforce: financial and relationship metrics and churn signals, read with SOQL.

- :mod:`.settings`: the ``salesforce:`` section of sources.yaml, metric names, credential names
  (pydantic only: validating sources.yaml never loads the HTTP stack);
- :mod:`.metrics`: SOQL from validated identifiers and escaped literals, and the pure query
  plans that turn result rows into metrics;
- :mod:`.auth` (the login flows) and :mod:`.client` (one HTTP client — login, re-login on an
  expired session, ``Sforce-Limit-Info``, REST query with ``nextRecordsUrl`` paging — shared
  by the extractor and the write-back loader);
- :mod:`.extractor`: the extraction itself (``from_env``, :class:`SalesforceExtractor`).

The package exports the settings and the pure parts; import the extractor from its module.
"""

from __future__ import annotations

from health_score.salesforce_ids import salesforce_id18
from health_score.sources.salesforce.settings import (
    CREDENTIAL_VARS,
    FINANCIAL,
    METRICS,
    RELATIONSHIP,
    SIGNALS,
    Settings,
)
from health_score.sources.salesforce.soql_text import soql_id_list, soql_list, soql_literal

__all__ = [
    "CREDENTIAL_VARS",
    "FINANCIAL",
    "METRICS",
    "RELATIONSHIP",
    "SIGNALS",
    "Settings",
    "salesforce_id18",
    "soql_id_list",
    "soql_list",
    "soql_literal",
]
