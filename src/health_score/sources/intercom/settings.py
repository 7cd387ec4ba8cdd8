"""The ``intercom:`` section of sources.yaml and the variables Intercom is activated by."""

from __future__ import annotations

from typing import Literal

import pydantic

from health_score.sources.http_policy import HttpSettings

SOURCE = "intercom"
CREDENTIAL_VARS: tuple[str, ...] = ("INTERCOM_API_TOKEN",)
BASE_URL_VAR = "INTERCOM_BASE_URL"
MAX_PAGE_SIZE = 150  # Intercom's cap for pagination.per_page on search endpoints
#: ``source.delivered_as`` of conversations a team starts (outbound): admin_initiated (a message
#: an admin sent, a ticket an admin opened, a group email), automated (Series and other outbound
#: messages) and campaigns_initiated (legacy campaigns). customer_initiated and
#: operator_initiated (a bot answering the customer) are support requests.
OUTBOUND_DELIVERED_AS = ("admin_initiated", "automated", "campaigns_initiated")


def _attribute_path(value: str) -> str:
    """``priority`` (Intercom's own field) or ``custom_attributes.<Name>`` (a data attribute)."""
    if value == "priority":
        return value
    prefix, _, name = value.partition(".")
    if prefix != "custom_attributes" or not name.strip():
        raise ValueError("expected 'priority' or 'custom_attributes.<attribute name>'")
    return value


class Settings(pydantic.BaseModel):
    """The ``intercom:`` section of sources.yaml: what counts as P1/P2 and as escalated."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    #: ``enabled: false`` switches the source off: its metrics are unavailable (never missing).
    enabled: bool = True
    #: Conversations created in the last N days before the run's reference instant are measured.
    lookback_days: int = pydantic.Field(30, ge=1, le=366)
    #: Where a conversation's priority is read, and which values make it P1/P2 (case-insensitive).
    priority_attribute: str = "custom_attributes.Priority"
    p1_p2_values: tuple[str, ...] = ("P1", "P2")
    #: P1/P2 also (or only, with ``p1_p2_values: []``): carries any one of these tags
    #: (case-insensitive), for teams that mark priority with tags rather than an attribute.
    p1_p2_tags: tuple[str, ...] = ()
    #: Escalated: carries one of these tags, or the escalation attribute holds one of these values.
    escalation_tags: tuple[str, ...] = ("Escalated",)
    escalation_attribute: str | None = None
    escalation_values: tuple[str, ...] = ()
    #: Which statistic is the close time: until the last close (resolution) or the first.
    close_time_statistic: Literal["time_to_last_close", "time_to_first_close"] = (
        "time_to_last_close"
    )
    #: Conversations whose ``source.delivered_as`` is one of these are outbound (started by the
    #: team, not asked by the customer) and are not measured; ``[]`` measures every conversation.
    exclude_delivered_as: tuple[str, ...] = OUTBOUND_DELIVERED_AS
    #: A window longer than this many days is searched as equal time slices, concurrently.
    slice_days: int | None = pydantic.Field(7, ge=1)
    page_size: int = pydantic.Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    #: Contacts looked up per search (an ``id IN [...]`` filter) on the fallback path.
    contacts_per_search: int = pydantic.Field(MAX_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    #: Up to this many fallback companies never named on a conversation are fetched one by one;
    #: more, and the company list is scrolled once instead.
    company_lookups_max: int = pydantic.Field(20, ge=0)
    http: HttpSettings = HttpSettings.model_validate({})

    @pydantic.field_validator("priority_attribute")
    @classmethod
    def _priority_path(cls, value: str) -> str:
        return _attribute_path(value)

    @pydantic.field_validator("escalation_attribute")
    @classmethod
    def _escalation_path(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else _attribute_path(value)

    @pydantic.field_validator("p1_p2_tags", "escalation_tags")
    @classmethod
    def _tag_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not tag.strip() for tag in value):
            raise ValueError("a tag name cannot be empty")
        return value

    @pydantic.model_validator(mode="after")
    def _some_p1_p2(self) -> Settings:
        if not self.p1_p2_values and not self.p1_p2_tags:
            raise ValueError(
                "p1_p2_values: name at least one priority value (or p1_p2_tags: a tag) "
                "that counts as P1/P2"
            )
        return self

    @pydantic.model_validator(mode="after")
    def _escalation_pairs(self) -> Settings:
        if (self.escalation_attribute is None) != (not self.escalation_values):
            raise ValueError("escalation_attribute and escalation_values go together")
        return self
