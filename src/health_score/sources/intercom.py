"""Intercom: support-health metrics from one conversation search over the look-back window.

Conversations cannot be searched by company, so the extractor searches the whole window once
(split into time slices fetched concurrently when the window is long), and groups what comes back
by ``conversation.company`` (present from API version 2.15). A conversation without a company is
attributed through its first contact's company: the contacts are looked up in batches, and a
company never named on any conversation is fetched by id (or, when there are many, learned from
one scroll of the company list). Calls scale with the number of conversations, never with the
account count.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import pydantic
import requests

from health_score.records import Account, MetricValue, metric_value
from health_score.sources.base import SourceResult
from health_score.sources.http import SourceClient, SourceError
from health_score.sources.registry import HttpSettings

log = logging.getLogger(__name__)

SOURCE = "intercom"
CREDENTIAL_VARS: tuple[str, ...] = ("INTERCOM_API_TOKEN",)
BASE_URL_VAR = "INTERCOM_BASE_URL"
DEFAULT_BASE_URL = "https://api.intercom.io"
API_VERSION = "2.16"
MAX_PAGE_SIZE = 150  # Intercom's cap for pagination.per_page on search endpoints

CONVERSATIONS_SEARCH = "/conversations/search"
CONTACTS_SEARCH = "/contacts/search"
COMPANIES_SCROLL = "/companies/scroll"

METRICS = (
    "p1_p2_volume",
    "first_response_minutes",
    "close_time_hours",
    "reopen_rate_pct",
    "escalation_rate_pct",
)

_T = TypeVar("_T")
_R = TypeVar("_R")


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

    #: Conversations created in the last N days before the run's reference instant are measured.
    lookback_days: int = pydantic.Field(30, ge=1, le=366)
    #: Where a conversation's priority is read, and which values make it P1/P2 (case-insensitive).
    priority_attribute: str = "custom_attributes.Priority"
    p1_p2_values: tuple[str, ...] = ("P1", "P2")
    #: Escalated: carries one of these tags, or the escalation attribute holds one of these values.
    escalation_tags: tuple[str, ...] = ("Escalated",)
    escalation_attribute: str | None = None
    escalation_values: tuple[str, ...] = ()
    #: Which statistic is the close time: until the last close (resolution) or the first.
    close_time_statistic: Literal["time_to_last_close", "time_to_first_close"] = (
        "time_to_last_close"
    )
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

    @pydantic.field_validator("p1_p2_values")
    @classmethod
    def _some_values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one priority value that counts as P1/P2")
        return value

    @pydantic.model_validator(mode="after")
    def _escalation_pairs(self) -> Settings:
        if (self.escalation_attribute is None) != (not self.escalation_values):
            raise ValueError("escalation_attribute and escalation_values go together")
        return self


# ------------------------------------------------------------------------------------------
# Records (raw JSON stays in this module)


@dataclass(frozen=True, slots=True)
class _Conversation:
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


@dataclass(frozen=True, slots=True)
class _Rules:
    priority: str
    p1_p2: frozenset[str]
    tags: frozenset[str]
    escalation_attribute: str | None
    escalation_values: frozenset[str]
    close_statistic: str

    @classmethod
    def of(cls, settings: Settings) -> _Rules:
        return cls(
            priority=settings.priority_attribute,
            p1_p2=frozenset(v.casefold() for v in settings.p1_p2_values),
            tags=frozenset(t.casefold() for t in settings.escalation_tags),
            escalation_attribute=settings.escalation_attribute,
            escalation_values=frozenset(v.casefold() for v in settings.escalation_values),
            close_statistic=settings.close_time_statistic,
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


def _parse_conversation(raw: Mapping[str, Any], rules: _Rules) -> tuple[_Conversation, str | None]:
    """The conversation's facts, and Intercom's internal id of its company (if it has one)."""
    company = raw.get("company")
    company_id: str | None = None
    internal_id: str | None = None
    if isinstance(company, Mapping):
        company_id = None if company.get("company_id") is None else str(company["company_id"])
        internal_id = None if company.get("id") is None else str(company["id"])
    contacts = (raw.get("contacts") or {}).get("contacts") or []
    contact_id = str(contacts[0]["id"]) if contacts else None
    priority = _attribute(raw, rules.priority)
    tags = {str(t.get("name", "")).casefold() for t in (raw.get("tags") or {}).get("tags") or []}
    level = _attribute(raw, rules.escalation_attribute) if rules.escalation_attribute else None
    stats = raw.get("statistics") or {}
    closed = raw.get("state") == "closed"
    conversation = _Conversation(
        id=str(raw["id"]),
        created_at=int(raw["created_at"]),
        company_id=company_id,
        contact_id=contact_id,
        p1_p2=priority is not None and priority.casefold() in rules.p1_p2,
        escalated=bool(tags & rules.tags)
        or (level is not None and level.casefold() in rules.escalation_values),
        first_response_seconds=_optional_int(stats.get("time_to_admin_reply")),
        close_seconds=_optional_int(stats.get(rules.close_statistic)) if closed else None,
        closed_once=stats.get("first_close_at") is not None
        or stats.get("time_to_first_close") is not None,
        reopened=(_optional_int(stats.get("count_reopens")) or 0) > 0,
    )
    return conversation, internal_id


# ------------------------------------------------------------------------------------------
# Metrics (pure)


def _median(values: Sequence[int]) -> Decimal | None:
    if not values:
        return None
    return Decimal(statistics.median(Decimal(v) for v in values))


def _rate(part: int, whole: int) -> MetricValue:
    return metric_value(Decimal(100) * part / whole) if whole else None


def company_metrics(conversations: Sequence[_Conversation]) -> dict[str, MetricValue]:
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


# ------------------------------------------------------------------------------------------
# The extractor


def _run_all(pool: ThreadPoolExecutor, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``fn`` over ``items`` concurrently, in order; the first failure cancels what is queued."""
    futures: list[Future[_R]] = [pool.submit(fn, item) for item in items]
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    for future in done:
        failure = future.exception()
        if failure is not None:
            for other in futures:
                other.cancel()
            raise failure
    return [future.result() for future in futures]


class IntercomExtractor:
    """Support-health metrics for every mapped company from one pass over Intercom."""

    name = SOURCE

    def __init__(self, client: SourceClient, settings: Settings, *, as_of: datetime) -> None:
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (UTC)")
        self.client = client
        self.settings = settings
        self.as_of = as_of.astimezone(UTC)
        self._rules = _Rules.of(settings)

    @property
    def provides(self) -> frozenset[str]:
        return frozenset(METRICS)

    @property
    def requests_made(self) -> int:
        return self.client.requests

    @property
    def window(self) -> tuple[int, int]:
        """The look-back window ``[start, end)`` in epoch seconds."""
        end = self.as_of
        start = end - timedelta(days=self.settings.lookback_days)
        return int(start.timestamp()), int(end.timestamp())

    # -- paging ------------------------------------------------------------------------------

    def _search(self, path: str, query: Mapping[str, Any], key: str) -> Iterator[dict[str, Any]]:
        """Every record of a search, following ``pages.next.starting_after``."""
        endpoint = f"POST {path}"
        per_page = self.settings.page_size
        cursor: str | None = None
        while True:
            pagination: dict[str, Any] = {"per_page": per_page}
            if cursor is not None:
                pagination["starting_after"] = cursor
            page = self.client.post_json(path, json={"query": query, "pagination": pagination})
            if not isinstance(page, Mapping) or not isinstance(page.get(key), list):
                raise SourceError(SOURCE, endpoint, f"unexpected response shape (no '{key}' list)")
            yield from page[key]
            following = ((page.get("pages") or {}).get("next") or {}).get("starting_after")
            if not following:
                return
            if following == cursor:
                raise SourceError(
                    SOURCE, endpoint, "loop detected: the server returned the same cursor again"
                )
            cursor = str(following)

    def _conversations_between(self, bounds: tuple[int, int]) -> list[tuple[_Conversation, str]]:
        """Conversations created in ``[lo, hi)``, with their company's internal id (or "")."""
        lo, hi = bounds
        # Intercom documents ">" and "<" as "or equal" for conversations; asking one second wider
        # and filtering here is exact whichever way the server treats the bounds.
        query = {
            "operator": "AND",
            "value": [
                {"field": "created_at", "operator": ">", "value": lo - 1},
                {"field": "created_at", "operator": "<", "value": hi},
            ],
        }
        out: list[tuple[_Conversation, str]] = []
        for raw in self._search(CONVERSATIONS_SEARCH, query, "conversations"):
            try:
                conversation, internal_id = _parse_conversation(raw, self._rules)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise SourceError(
                    SOURCE,
                    f"POST {CONVERSATIONS_SEARCH}",
                    f"unexpected conversation shape ({type(exc).__name__})",
                ) from None
            if lo <= conversation.created_at < hi:
                out.append((conversation, internal_id or ""))
        return out

    def _contact_companies(self, contact_ids: Sequence[str]) -> dict[str, list[str]]:
        """contact id → Intercom ids of its companies, for one batch of contacts."""
        query = {"field": "id", "operator": "IN", "value": list(contact_ids)}
        out: dict[str, list[str]] = {}
        for contact in self._search(CONTACTS_SEARCH, query, "data"):
            try:
                companies = (contact.get("companies") or {}).get("data") or []
                out[str(contact["id"])] = [str(c["id"]) for c in companies]
            except (KeyError, TypeError, AttributeError):
                raise SourceError(
                    SOURCE, f"POST {CONTACTS_SEARCH}", "unexpected contact shape"
                ) from None
        return out

    def _company_id(self, internal_id: str) -> str | None:
        """One company's ``company_id`` (None when Intercom no longer has it)."""
        path = f"/companies/{quote(internal_id, safe='')}"
        try:
            company = self.client.get_json(path)
        except SourceError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(company, Mapping):
            raise SourceError(SOURCE, f"GET {path}", "unexpected company shape")
        value = company.get("company_id")
        return None if value is None else str(value)

    def _scroll_companies(self) -> dict[str, str]:
        """Intercom id → company_id for every company (one scroll, walked to its end)."""
        endpoint = f"GET {COMPANIES_SCROLL}"
        out: dict[str, str] = {}
        params: dict[str, str] = {}
        while True:
            page = self.client.get_json(COMPANIES_SCROLL, params=params)
            data = page.get("data") if isinstance(page, Mapping) else None
            if not isinstance(data, list):
                raise SourceError(SOURCE, endpoint, "unexpected response shape (no 'data' list)")
            if not data:
                return out
            fresh = 0
            for company in data:
                if not isinstance(company, Mapping) or "id" not in company:
                    raise SourceError(SOURCE, endpoint, "unexpected company shape")
                if company.get("company_id") is not None and str(company["id"]) not in out:
                    fresh += 1
                    out[str(company["id"])] = str(company["company_id"])
            scroll_param = page.get("scroll_param")
            # The scroll parameter stays the same for a whole scroll, so the guard is on the data.
            if not scroll_param or not fresh:
                raise SourceError(SOURCE, endpoint, "loop detected: the scroll stopped advancing")
            params = {"scroll_param": str(scroll_param)}

    # -- the pass ----------------------------------------------------------------------------

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        start, end = self.window
        slices = time_slices(start, end, self.settings.slice_days)
        workers = max(1, min(self.settings.http.max_workers, len(slices)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intercom") as pool:
            found = [
                row for part in _run_all(pool, self._conversations_between, slices) for row in part
            ]
            conversations: dict[str, _Conversation] = {}
            known: dict[str, str] = {}  # Intercom company id → company_id
            for conversation, internal_id in found:
                conversations[conversation.id] = conversation
                if internal_id and conversation.company_id is not None:
                    known[internal_id] = conversation.company_id
            attributed, notes = self._attribute(list(conversations.values()), known, pool)

        by_company: dict[str, list[_Conversation]] = defaultdict(list)
        for company_id, conversation in attributed:
            by_company[company_id].append(conversation)
        metrics: dict[str, dict[str, MetricValue]] = {}
        for account in accounts:
            if account.intercom_company_id is None:
                metrics[account.account_id] = dict.fromkeys(METRICS)
            else:
                metrics[account.account_id] = company_metrics(
                    by_company.get(account.intercom_company_id, [])
                )
        log.info(
            "intercom: %d conversations in the window, %d requests",
            len(conversations),
            self.client.requests,
        )
        return SourceResult(
            source=SOURCE, metrics=metrics, requests=self.client.requests, notes=tuple(notes)
        )

    def _attribute(
        self,
        conversations: list[_Conversation],
        known: dict[str, str],
        pool: ThreadPoolExecutor,
    ) -> tuple[list[tuple[str, _Conversation]], list[str]]:
        """(company_id, conversation) pairs; the fallback goes through the first contact."""
        attributed = [(c.company_id, c) for c in conversations if c.company_id is not None]
        orphans = [c for c in conversations if c.company_id is None]
        if not orphans:
            return attributed, []
        contact_ids = sorted({c.contact_id for c in orphans if c.contact_id is not None})
        size = self.settings.contacts_per_search
        batches = [contact_ids[i : i + size] for i in range(0, len(contact_ids), size)]
        companies_of: dict[str, list[str]] = {}
        for part in _run_all(pool, self._contact_companies, batches):
            companies_of.update(part)
        unknown = sorted({ids[0] for ids in companies_of.values() if ids} - known.keys())
        if len(unknown) > self.settings.company_lookups_max:
            known = {**self._scroll_companies(), **known}
        elif unknown:
            found = _run_all(pool, self._company_id, unknown)
            known = {**known, **{k: v for k, v in zip(unknown, found, strict=True) if v}}
        lost = 0
        for conversation in orphans:
            ids = companies_of.get(conversation.contact_id or "") or []
            company_id = known.get(ids[0]) if ids else None
            if company_id is None:
                lost += 1
            else:
                attributed.append((company_id, conversation))
        notes = [f"{len(orphans) - lost} conversations without a company attributed via contact"]
        if lost:
            notes.append(f"{lost} conversations could not be attributed to any company")
        return attributed, notes


def from_env(
    settings: Settings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
) -> IntercomExtractor | None:
    """The Intercom extractor when ``INTERCOM_API_TOKEN`` is set, else None."""
    token = (env.get("INTERCOM_API_TOKEN") or "").strip()
    if not token:
        return None
    base_url = (env.get(BASE_URL_VAR) or "").strip() or DEFAULT_BASE_URL
    headers = {
        "Authorization": f"Bearer {token}",
        "Intercom-Version": API_VERSION,
        "Accept": "application/json",
    }
    client = SourceClient(
        SOURCE,
        base_url,
        session=session,
        policy=settings.http.policy(),
        authenticate=lambda: headers,
        credential_hint="INTERCOM_API_TOKEN",
        verify=(env.get("REQUESTS_CA_BUNDLE") or None),
    )
    return IntercomExtractor(client, settings, as_of=as_of or datetime.now(UTC))
