"""Intercom's metrics from conversations: the facts kept of each, and the pure computation.

Raw conversation JSON is read here into :class:`Conversation` and goes no further; nothing here
makes a request.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from health_score.records import MetricValue, metric_value
from health_score.sources.intercom.settings import Settings

METRICS = (
    "p1_p2_volume",
    "first_response_minutes",
    "close_time_hours",
    "reopen_rate_pct",
    "escalation_rate_pct",
)


# ------------------------------------------------------------------------------------------
# Records (raw JSON stays in this package)


@dataclass(frozen=True, slots=True)
class Conversation:
    """The few facts of one conversation the metrics need."""

    id: str
    created_at: int
    company_id: str | None  # the organisation's company_id, when the conversation carries one
    contact_id: str | None  # first contact, for the fallback attribution
    p1_p2: bool
    escalated: bool
    first_response_seconds: int | None
    close_seconds: int | None  # only for conversations closed now
    closed_once: bool
    reopened: bool
    outbound: bool = False  # started by the team (source.delivered_as), not by the customer
    #: When the first admin reply, the first close and the last close happened (epoch seconds;
    #: None: not happened, or not told), for a period read after its end (:func:`seen_at`).
    replied_at: int | None = None
    first_closed_at: int | None = None
    last_closed_at: int | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    priority: str
    p1_p2: frozenset[str]
    tags: frozenset[str]
    escalation_attribute: str | None
    escalation_values: frozenset[str]
    close_statistic: str
    outbound: frozenset[str] = frozenset()  # source.delivered_as values that are not measured
    p1_p2_tags: frozenset[str] = frozenset()  # any one of these tags also makes it P1/P2

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            priority=settings.priority_attribute,
            p1_p2=frozenset(v.casefold() for v in settings.p1_p2_values),
            tags=frozenset(t.casefold() for t in settings.escalation_tags),
            escalation_attribute=settings.escalation_attribute,
            escalation_values=frozenset(v.casefold() for v in settings.escalation_values),
            close_statistic=settings.close_time_statistic,
            outbound=frozenset(v.casefold() for v in settings.exclude_delivered_as),
            p1_p2_tags=frozenset(t.casefold() for t in settings.p1_p2_tags),
        )


def _attribute(conversation: Mapping[str, Any], path: str) -> str | None:
    if path.startswith("custom_attributes."):
        value = (conversation.get("custom_attributes") or {}).get(path.partition(".")[2])
    else:
        value = conversation.get(path)
    return None if value is None else str(value)


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return int(value)


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def conversation_company(raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(the organisation's ``company_id``, Intercom's internal company ``id``) of a conversation's
    own company, from whichever shape the API gives: a full ``company`` object (both), a compact
    reference (``{"type": "company", "id": …}``: the internal id only), or a top-level
    ``company_id``, which Intercom's newer API descriptions (and its Python client) define as "the
    unique identifier for the company which is given by Intercom", i.e. the internal id. The
    extractor resolves an internal id to its ``company_id``. (None, None) when the conversation
    names no company."""
    company = raw.get("company")
    company_id = internal_id = None
    if isinstance(company, Mapping):
        company_id, internal_id = _text(company.get("company_id")), _text(company.get("id"))
    if company_id is None and internal_id is None:
        internal_id = _text(raw.get("company_id"))
    return company_id, internal_id


def parse_conversation(raw: Mapping[str, Any], rules: Rules) -> tuple[Conversation, str | None]:
    """The conversation's facts, and Intercom's internal id of its company (if it has one)."""
    company_id, internal_id = conversation_company(raw)
    source = raw.get("source") or {}
    delivered_as = str(source.get("delivered_as") or "").casefold()
    contacts = (raw.get("contacts") or {}).get("contacts") or []
    contact_id = str(contacts[0]["id"]) if contacts else None
    priority = _attribute(raw, rules.priority)
    tags = {str(t.get("name", "")).casefold() for t in (raw.get("tags") or {}).get("tags") or []}
    level = _attribute(raw, rules.escalation_attribute) if rules.escalation_attribute else None
    stats = raw.get("statistics") or {}
    closed = raw.get("state") == "closed"
    created_at = int(raw["created_at"])
    conversation = Conversation(
        id=str(raw["id"]),
        created_at=created_at,
        company_id=company_id,
        contact_id=contact_id,
        p1_p2=(priority is not None and priority.casefold() in rules.p1_p2)
        or bool(tags & rules.p1_p2_tags),
        escalated=bool(tags & rules.tags)
        or (level is not None and level.casefold() in rules.escalation_values),
        first_response_seconds=_optional_int(stats.get("time_to_admin_reply")),
        close_seconds=_optional_int(stats.get(rules.close_statistic)) if closed else None,
        closed_once=stats.get("first_close_at") is not None
        or stats.get("time_to_first_close") is not None,
        reopened=(_optional_int(stats.get("count_reopens")) or 0) > 0,
        outbound=delivered_as in rules.outbound,
        replied_at=_instant(stats, "first_admin_reply_at", "time_to_admin_reply", created_at),
        first_closed_at=_instant(stats, "first_close_at", "time_to_first_close", created_at),
        last_closed_at=_instant(stats, "last_close_at", "time_to_last_close", created_at),
    )
    return conversation, internal_id


def _instant(stats: Mapping[str, Any], at: str, duration: str, created_at: int) -> int | None:
    """An event's instant from the statistics: its ``*_at`` timestamp, else creation plus its
    duration; None when neither is given."""
    stamp = _optional_int(stats.get(at))
    if stamp is not None:
        return stamp
    seconds = _optional_int(stats.get(duration))
    return None if seconds is None else created_at + seconds


def seen_at(conversation: Conversation, cutoff: int) -> Conversation:
    """``conversation`` as it stood at ``cutoff`` (a past period's ``as_of``, epoch seconds),
    so far as its statistics tell: a reply or close at or after ``cutoff`` belongs to a later
    period and is not counted.

    The first response counts if the first admin reply came before ``cutoff``; the close time if
    the conversation is closed now and its last close came before ``cutoff`` (closed then, and
    for good); it was closed once if its first close came before ``cutoff``, and a reopen counts
    with that first close (Intercom's statistics do not date the reopen itself).
    """
    replied = conversation.replied_at is not None and conversation.replied_at < cutoff
    closed_once = conversation.first_closed_at is not None and conversation.first_closed_at < cutoff
    closed = conversation.last_closed_at is not None and conversation.last_closed_at < cutoff
    return dataclasses.replace(
        conversation,
        first_response_seconds=conversation.first_response_seconds if replied else None,
        close_seconds=conversation.close_seconds if closed else None,
        closed_once=conversation.closed_once and closed_once,
        reopened=conversation.reopened and closed_once,
    )


# ------------------------------------------------------------------------------------------
# Metrics (pure)


def _median(values: Sequence[int]) -> Decimal | None:
    if not values:
        return None
    return Decimal(statistics.median(Decimal(v) for v in values))


def _rate(part: int, whole: int) -> MetricValue:
    return metric_value(Decimal(100) * part / whole) if whole else None


def company_metrics(conversations: Sequence[Conversation]) -> dict[str, MetricValue]:
    """The five metrics for one company's conversations in the window.

    With no conversations the volume is 0 and every time or rate is missing, never 0 (a zero
    response time would score as perfect).
    """
    replies = [
        c.first_response_seconds for c in conversations if c.first_response_seconds is not None
    ]
    closes = [c.close_seconds for c in conversations if c.close_seconds is not None]
    first = _median(replies)
    close = _median(closes)
    closed_once = [c for c in conversations if c.closed_once]
    return {
        "p1_p2_volume": Decimal(sum(1 for c in conversations if c.p1_p2)),
        "first_response_minutes": None if first is None else metric_value(first / 60),
        "close_time_hours": None if close is None else metric_value(close / 3600),
        "reopen_rate_pct": _rate(sum(1 for c in closed_once if c.reopened), len(closed_once)),
        "escalation_rate_pct": _rate(
            sum(1 for c in conversations if c.escalated), len(conversations)
        ),
    }


def time_slices(start: int, end: int, slice_days: int | None) -> list[tuple[int, int]]:
    """``[start, end)`` cut into equal, contiguous slices no longer than ``slice_days``."""
    if slice_days is None or end - start <= slice_days * 86_400:
        return [(start, end)]
    count = math.ceil((end - start) / (slice_days * 86_400))
    bounds = [start + (end - start) * i // count for i in range(count + 1)]
    return list(itertools.pairwise(bounds))
