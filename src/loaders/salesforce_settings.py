"""Settings for writing scores back to Salesforce (``salesforce.writeback`` in sources.yaml)."""

from __future__ import annotations

import pydantic


class WritebackSettings(pydantic.BaseModel):
    """Object, external id and field API names the loader writes, and how it chooses its path."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    object_name: str = "Health_Score__c"
    external_id_field: str = "External_Key__c"  # value: <18-char account id>-<YYYY-MM>
    account_lookup_field: str = "Account__c"
    bulk_threshold: int = pydantic.Field(200, ge=1)  # more records than this → Bulk API 2.0
    composite_batch_size: int = pydantic.Field(200, ge=1, le=200)
    poll_initial_seconds: float = pydantic.Field(0.5, gt=0)
    poll_max_seconds: float = pydantic.Field(10.0, gt=0)
    poll_timeout_seconds: float = pydantic.Field(600.0, gt=0)
    #: Optional mirror of the latest final score and tier onto Account (empty = off).
    account_score_field: str = ""
    account_tier_field: str = ""
    #: Overrides for field API names, keyed by the loader's logical field name.
    fields: dict[str, str] = pydantic.Field(default_factory=dict)
