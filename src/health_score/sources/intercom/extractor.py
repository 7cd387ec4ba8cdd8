"""Intercom extraction: support-health metrics from one search over the look-back window.

Conversations cannot be searched by company, so the extractor searches the whole window once
(split into time slices fetched concurrently when the window is long), and groups what comes back
by the conversation's own company (``company``, present from API version 2.15: a full object
with ``company_id``, a compact reference with Intercom's ``id`` only, or a top-level
``company_id``). A compact reference is resolved to its ``company_id``; only a conversation that
names no company at all is attributed through its first contact's first company (the contacts
are looked up in batches). A company whose ``company_id`` no conversation shows is fetched by id
(or, when there are many, learned from one scroll of the company list). Outbound conversations
(``source.delivered_as`` in ``exclude_delivered_as``: started by the team) are not measured.
Calls scale with the number of conversations, never with the account count.

A period read after its end (the run's reference ``now`` later than ``as_of``, as every scheduled
run and backfill is) counts a reply or a close only if it happened before ``as_of``: the
statistics Intercom returns today also describe what happened since
(:func:`~health_score.sources.intercom.metrics.seen_at`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from health_score.deadline import Deadline
from health_score.records import Account, MetricValue
from health_score.redact import register_secret
from health_score.sources.base import SourceResult
from health_score.sources.http import SourceClient, SourceError
from health_score.sources.intercom.export import (
    ExportError,
    IntercomExportExtractor,
    load_export,
)
from health_score.sources.intercom.metrics import (
    METRICS,
    Conversation,
    Rules,
    company_metrics,
    parse_conversation,
    seen_at,
    time_slices,
)
from health_score.sources.intercom.settings import BASE_URL_VAR, SOURCE, Settings

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.intercom.io"
API_VERSION = "2.16"

CONVERSATIONS_SEARCH = "/conversations/search"
CONTACTS_SEARCH = "/contacts/search"
COMPANIES_SCROLL = "/companies/scroll"

_T = TypeVar("_T")
_R = TypeVar("_R")


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

    def __init__(
        self,
        client: SourceClient,
        settings: Settings,
        *,
        as_of: datetime,
        now: datetime | None = None,
    ) -> None:
        if as_of.tzinfo is None or (now is not None and now.tzinfo is None):
            raise ValueError("as_of and now must be timezone-aware (UTC)")
        self.client = client
        self.settings = settings
        self.as_of = as_of.astimezone(UTC)
        #: The run's reference now; None: the data is read at ``as_of`` itself.
        self.now = None if now is None else now.astimezone(UTC)
        self._rules = Rules.of(settings)

    @property
    def read_later(self) -> bool:
        """Whether the period is read after its end: replies and closes since then are cut."""
        return self.now is not None and self.now > self.as_of

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

    def _conversations_between(self, bounds: tuple[int, int]) -> list[tuple[Conversation, str]]:
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
        out: list[tuple[Conversation, str]] = []
        for raw in self._search(CONVERSATIONS_SEARCH, query, "conversations"):
            try:
                conversation, internal_id = parse_conversation(raw, self._rules)
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise SourceError(
                    SOURCE,
                    f"POST {CONVERSATIONS_SEARCH}",
                    f"unexpected conversation shape ({type(exc).__name__})",
                ) from None
            if lo <= conversation.created_at < hi:
                out.append((conversation, internal_id or ""))  # outbound ones are counted apart
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
            conversations: dict[str, Conversation] = {}
            known: dict[str, str] = {}  # Intercom company id → company_id
            compact: dict[str, str] = {}  # conversation id → Intercom id of its own company
            outbound = 0
            for conversation, internal_id in found:
                if conversation.outbound:
                    outbound += 1
                    continue
                if self.read_later:
                    conversation = seen_at(conversation, end)
                conversations[conversation.id] = conversation
                if internal_id and conversation.company_id is not None:
                    known[internal_id] = conversation.company_id
                elif internal_id:
                    compact[conversation.id] = internal_id
            attributed, notes = self._attribute(list(conversations.values()), known, compact, pool)
        if self.read_later:
            notes.insert(0, "replies and closes from as_of on not counted (read after the period)")
        if outbound:
            notes.insert(
                0,
                f"{outbound} outbound conversations (source.delivered_as in "
                f"{', '.join(self.settings.exclude_delivered_as)}) not measured",
            )

        by_company: dict[str, list[Conversation]] = defaultdict(list)
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
            source=SOURCE,
            metrics=metrics,
            requests=self.client.requests,
            notes=tuple(notes),
            window=(datetime.fromtimestamp(start, UTC), self.as_of),
        )

    def _attribute(
        self,
        conversations: list[Conversation],
        known: dict[str, str],
        compact: Mapping[str, str],
        pool: ThreadPoolExecutor,
    ) -> tuple[list[tuple[str, Conversation]], list[str]]:
        """(company_id, conversation) pairs.

        A conversation's own company comes first (a compact reference resolved to its
        ``company_id``); only one that names no company goes through its first contact.
        """
        attributed = [(c.company_id, c) for c in conversations if c.company_id is not None]
        referenced = [c for c in conversations if c.company_id is None and c.id in compact]
        orphans = [c for c in conversations if c.company_id is None and c.id not in compact]
        if not orphans and not referenced:
            return attributed, []
        contact_ids = sorted({c.contact_id for c in orphans if c.contact_id is not None})
        size = self.settings.contacts_per_search
        batches = [contact_ids[i : i + size] for i in range(0, len(contact_ids), size)]
        companies_of: dict[str, list[str]] = {}
        for part in _run_all(pool, self._contact_companies, batches):
            companies_of.update(part)
        wanted = {ids[0] for ids in companies_of.values() if ids} | set(compact.values())
        unknown = sorted(wanted - known.keys())
        if len(unknown) > self.settings.company_lookups_max:
            known = {**self._scroll_companies(), **known}
        elif unknown:
            found = _run_all(pool, self._company_id, unknown)
            known = {**known, **{k: v for k, v in zip(unknown, found, strict=True) if v}}
        lost = 0
        for conversation in referenced:
            company_id = known.get(compact[conversation.id])
            if company_id is None:  # its company is gone from Intercom
                lost += 1
            else:
                attributed.append((company_id, conversation))
        via_contact = 0
        for conversation in orphans:
            ids = companies_of.get(conversation.contact_id or "") or []
            company_id = known.get(ids[0]) if ids else None
            if company_id is None:
                lost += 1
            else:
                via_contact += 1
                attributed.append((company_id, conversation))
        notes = []
        if orphans:
            notes.append(f"{via_contact} conversations without a company attributed via contact")
        if lost:
            notes.append(f"{lost} conversations could not be attributed to any company")
        return attributed, notes


def from_env(
    settings: Settings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
    deadline: Deadline | None = None,
    now: datetime | None = None,
    export: Path | None = None,
) -> IntercomExtractor | IntercomExportExtractor | None:
    """The Intercom extractor when ``INTERCOM_API_TOKEN`` is set, else None; with ``export``
    (Intercom's conversation export, read and checked here), the export's instead, whatever the
    environment holds.

    ``now``: the run's reference now (a period read after its end counts no later reply or
    close); None: the data is read at ``as_of``."""
    if export is not None:
        if not settings.enabled:
            raise ExportError(
                f"an Intercom export ({export.name}) was given but intercom.enabled is false in "
                "sources.yaml; drop one of them"
            )
        return IntercomExportExtractor(
            load_export(export, settings), settings, as_of=as_of or datetime.now(UTC), now=now
        )
    token = (env.get("INTERCOM_API_TOKEN") or "").strip()
    if not token:
        return None
    register_secret(token)
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
        policy=settings.http.policy(deadline),
        authenticate=lambda: headers,
        credential_hint="INTERCOM_API_TOKEN",
        verify=(env.get("REQUESTS_CA_BUNDLE") or None),
    )
    return IntercomExtractor(client, settings, as_of=as_of or datetime.now(UTC), now=now)
