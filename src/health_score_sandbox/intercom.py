"""Stand-in for Intercom (API 2.16): conversations, companies and contacts of the portfolio.

Serves ``POST /conversations/search``, ``POST /contacts/search``, ``GET /companies/scroll`` and
``GET /companies/{id}`` in Intercom's wire format: bearer auth with ``error.list`` bodies, an
``Intercom-Version`` header (without one, the app's default version, :data:`APP_VERSION`, applies
as in Intercom; conversations carry ``company`` from 2.15), AND/OR queries limited to 2 levels of
nesting and 15 filters per group with Intercom's operators only (``>``/``<`` mean "or equal";
``>=``/``<=`` are refused), ``per_page`` up to 150 with opaque, stable ``starting_after`` cursors,
one open company scroll per app, and ``X-RateLimit-*`` headers on every response.

Records are drawn so each account's metrics land near its profile's targets, in the shapes the API
gives: a conversation's company as a full object or as a compact reference (``{"type":
"company", "id": …}`` only), contacts that belong to several companies, and outbound conversations
(``source.delivered_as`` ``admin_initiated`` or ``automated``). ``Data.expected`` recounts them
with the plain definitions (window ``[as_of - lookback_days, as_of)``; outbound conversations
(``exclude_delivered_as``) left out; attribution by the conversation's own company, else its
first contact's first company).
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import random
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import Any

from health_score_sandbox.config import SectionLike, read_settings
from health_score_sandbox.portfolio import Portfolio
from health_score_sandbox.server import HttpError, Request, Response, VendorApp
from health_score_sandbox.timeline import Timeline, month_of
from health_score_sandbox.truth import Metric, median, percent, rounded

QUERY_LOG = 1_000  # conversation search queries App.queries keeps (oldest dropped first)

TOKEN = "sandbox-intercom-token"  # noqa: S105 - a fake credential for the stand-in
APP_ID = "hsmsbx01"
SUPPORTED_VERSIONS = (
    *(f"1.{n}" for n in range(5)),
    *(f"2.{n}" for n in range(17)),
)
#: The version an app answers in when a request sends no ``Intercom-Version`` header (Intercom
#: uses the one set in the app's Developer Hub; this stand-in's app is set to 2.14, before
#: conversations carried their company, so a client that does not pin a version notices).
APP_VERSION = "2.14"
OUTBOUND_DELIVERED_AS = ("admin_initiated", "automated", "campaigns_initiated")
MAX_PER_PAGE = 150
DEFAULT_PER_PAGE = {"conversations": 20, "contacts": 50}
SCROLL_PAGE_SIZE = 50
SCROLL_IDLE_SECONDS = 60.0
MAX_NESTING = 2
MAX_GROUP_FILTERS = 15
NOMINAL_RATE_LIMIT = 10_000  # what Intercom reports to a private app (calls a minute)
DAY = 86_400
HISTORY_DAYS = 60  # conversations are also drawn this far before the window
EXPORT_DELAY = 6 * 3600  # the data is "read" this long after as_of, so a few are newer
FALLBACK_SHARE = 0.05  # conversations that carry no company
COMPACT_SHARE = 0.15  # conversations whose company is a compact reference (its Intercom id only)
SHARED_CONTACT_SHARE = 0.3  # accounts with a contact who also belongs to another company

_TAG_IDS = {
    "Escalated": "7101",
    "billing": "7102",
    "bug": "7103",
    "feature-request": "7104",
    "onboarding": "7105",
    "integration": "7106",
}
_OTHER_TAGS = ("billing", "bug", "feature-request", "onboarding", "integration")
_BUILTIN_PRIORITY = {"P1": "urgent", "P2": "high", "P3": "medium", "P4": "low"}
_FIRST = ("Ana", "Ben", "Chloe", "Dev", "Ema", "Finn", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")
_LAST = ("Ito", "Khan", "Lopez", "Meyer", "Nowak", "Okafor", "Park", "Rossi", "Silva", "Tan")
_INDUSTRIES = ("Software", "Retail", "Healthcare", "Logistics", "Finance", "Media")

METRICS = (
    "p1_p2_volume",
    "first_response_minutes",
    "close_time_hours",
    "reopen_rate_pct",
    "escalation_rate_pct",
)
CLOSE_STATISTICS = ("time_to_last_close", "time_to_first_close")


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``intercom:`` keys of sources.yaml this stand-in reads (defaults as documented).

    ``priority_attribute`` and ``escalation_attribute`` are ``priority`` (Intercom's own field)
    or ``custom_attributes.<Name>``; values and tags compare case-insensitively.
    """

    lookback_days: int = 30
    priority_attribute: str = "custom_attributes.Priority"
    p1_p2_values: tuple[str, ...] = ("P1", "P2")
    escalation_tags: tuple[str, ...] = ("Escalated",)
    escalation_attribute: str | None = None
    escalation_values: tuple[str, ...] = ()
    close_time_statistic: str = "time_to_last_close"
    exclude_delivered_as: tuple[str, ...] = OUTBOUND_DELIVERED_AS

    def __post_init__(self) -> None:
        if self.close_time_statistic not in CLOSE_STATISTICS:
            raise ValueError(f"close_time_statistic must be one of {CLOSE_STATISTICS}")

    @classmethod
    def of(cls, source: SectionLike = None) -> Settings:
        """This stand-in's settings from a sources.yaml section (see :func:`read_settings`)."""
        return read_settings(cls, {} if source is None else source)


# ------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Company:
    id: str  # Intercom's id
    company_id: str  # the organisation's id (Account.intercom_company_id)
    name: str
    created_at: int
    user_count: int
    monthly_spend: int
    plan: str
    industry: str
    segment: str

    def reference(self) -> dict[str, Any]:
        """The compact company object a conversation carries (every field of it is optional)."""
        return {
            "type": "company",
            "id": self.id,
            "company_id": self.company_id,
            "name": self.name,
            "app_id": APP_ID,
            "created_at": self.created_at,
            "updated_at": self.created_at + 3600,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "company",
            "company_id": self.company_id,
            "id": self.id,
            "app_id": APP_ID,
            "name": self.name,
            "remote_created_at": self.created_at,
            "created_at": self.created_at,
            "updated_at": self.created_at + 3600,
            "monthly_spend": self.monthly_spend,
            "session_count": self.user_count * 40,
            "user_count": self.user_count,
            "industry": self.industry,
            "website": f"https://{self.company_id.replace('_', '-')}.example.com",
            "tags": {"type": "tag.list", "tags": []},
            "segments": {"type": "segment.list", "segments": []},
            "plan": {"type": "plan", "id": _plan_id(self.plan), "name": self.plan},
            "custom_attributes": {"segment": self.segment},
        }


def _plan_id(plan: str) -> str:
    return str(int(hashlib.sha256(plan.encode()).hexdigest()[:6], 16))


@dataclass(frozen=True, slots=True)
class Contact:
    id: str
    external_id: str | None
    role: str  # user | lead
    name: str
    email: str
    created_at: int
    company_ids: tuple[str, ...]  # Intercom ids of its companies

    def to_json(self) -> dict[str, Any]:
        companies = [
            {"id": cid, "type": "company", "url": f"/companies/{cid}"} for cid in self.company_ids
        ]
        return {
            "type": "contact",
            "id": self.id,
            "workspace_id": APP_ID,
            "external_id": self.external_id,
            "role": self.role,
            "email": self.email,
            "email_domain": self.email.partition("@")[2],
            "phone": None,
            "name": self.name,
            "owner_id": None,
            "has_hard_bounced": False,
            "marked_email_as_spam": False,
            "unsubscribed_from_emails": False,
            "created_at": self.created_at,
            "updated_at": self.created_at + DAY,
            "signed_up_at": self.created_at if self.role == "user" else None,
            "last_seen_at": self.created_at + 2 * DAY,
            "last_replied_at": None,
            "last_contacted_at": None,
            "last_email_opened_at": None,
            "last_email_clicked_at": None,
            "language_override": None,
            "browser": "chrome",
            "browser_language": "en",
            "os": "macOS",
            "custom_attributes": {},
            "tags": {
                "data": [],
                "url": f"/contacts/{self.id}/tags",
                "total_count": 0,
                "has_more": False,
            },
            "notes": {
                "data": [],
                "url": f"/contacts/{self.id}/notes",
                "total_count": 0,
                "has_more": False,
            },
            "companies": {
                "type": "list",
                "data": companies,
                "url": f"/contacts/{self.id}/companies",
                "total_count": len(companies),
                "has_more": False,
            },
            "location": {"type": "location", "country": None, "region": None, "city": None},
            "social_profiles": {"data": []},
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    created_at: int
    company: str | None  # Intercom id of the company it is attributed to; None = no company
    contact: str  # contact id (the customer)
    state: str  # open | closed | snoozed
    priority: str  # Intercom's own: none | low | medium | high | urgent
    attributes: tuple[tuple[str, str], ...]  # custom attributes
    tags: tuple[str, ...]  # tag names
    admin_id: int
    team_id: int
    time_to_admin_reply: int | None
    time_to_first_close: int | None
    time_to_last_close: int | None
    count_reopens: int
    delivered_as: str = "customer_initiated"  # admin_initiated / automated: outbound
    compact: bool = False  # its company is given as a compact reference (Intercom id only)

    @property
    def updated_at(self) -> int:
        events = [self.created_at]
        if self.time_to_admin_reply is not None:
            events.append(self.created_at + self.time_to_admin_reply)
        if self.time_to_last_close is not None:
            events.append(self.created_at + self.time_to_last_close)
        return max(events) + 60

    def attribute(self, name: str) -> str | None:
        return dict(self.attributes).get(name)

    def statistics(self) -> dict[str, Any]:
        created = self.created_at
        stats: dict[str, Any] = {
            "type": "conversation_statistics",
            "first_contact_reply_at": created,
            "last_contact_reply_at": created,
            "count_reopens": self.count_reopens,
            "count_assignments": 1,
            "count_conversation_parts": 2
            + (self.time_to_admin_reply is not None)
            + 2 * self.count_reopens,
            "first_assignment_at": created + 30,
            "last_assignment_at": created + 30,
            "time_to_assignment": 30,
        }
        if self.time_to_admin_reply is not None:
            reply = created + self.time_to_admin_reply
            stats.update(
                time_to_admin_reply=self.time_to_admin_reply,
                median_time_to_reply=self.time_to_admin_reply,
                first_admin_reply_at=reply,
                last_assignment_admin_reply_at=reply,
                last_admin_reply_at=reply,
            )
        if self.time_to_first_close is not None:
            stats.update(
                time_to_first_close=self.time_to_first_close,
                first_close_at=created + self.time_to_first_close,
            )
        if self.time_to_last_close is not None:
            stats.update(
                time_to_last_close=self.time_to_last_close,
                last_close_at=created + self.time_to_last_close,
                last_closed_by_id=str(self.admin_id),
            )
        return stats

    def to_json(
        self,
        companies: Mapping[str, dict[str, Any]],
        contacts: Mapping[str, Contact],
        with_company: bool = True,
    ) -> dict[str, Any]:
        contact = contacts[self.contact]
        replied = self.time_to_admin_reply is not None
        body: dict[str, Any] = {
            "type": "conversation",
            "id": self.id,
            "title": None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "waiting_since": None if replied or self.state == "closed" else self.created_at,
            "snoozed_until": self.updated_at + DAY if self.state == "snoozed" else None,
            "open": self.state != "closed",
            "state": self.state,
            "read": replied,
            "priority": self.priority,
            "admin_assignee_id": self.admin_id,
            "team_assignee_id": self.team_id,
        }
        if with_company and self.company:
            # A conversation with no company leaves the key out: 2.16 types it as an object (the
            # nullable beside its $ref is void in OpenAPI 3.0); the extractor accepts null too.
            body["company"] = (
                {"type": "company", "id": self.company} if self.compact else companies[self.company]
            )
        outbound = self.delivered_as != "customer_initiated"
        author = (
            {
                "type": "admin",
                "id": str(self.admin_id),
                "name": "Sandbox Admin",
                "email": "admin@sandbox.example.com",
            }
            if outbound
            else {
                "type": contact.role,
                "id": contact.id,
                "name": contact.name,
                "email": contact.email,
            }
        )
        body.update(
            {
                "tags": {
                    "type": "tag.list",
                    "tags": [
                        {
                            "type": "tag",
                            "id": _TAG_IDS.get(name, _plan_id(name)),
                            "name": name,
                            "applied_at": self.created_at + 120,
                            "applied_by": {"type": "admin", "id": str(self.admin_id)},
                        }
                        for name in self.tags
                    ],
                },
                "conversation_rating": None,
                "source": {
                    "type": "conversation",
                    "id": str(int(self.id) + 400_000_000),
                    "delivered_as": self.delivered_as,
                    "subject": "",
                    "body": "<p>Your quarterly review is coming up.</p>"
                    if outbound
                    else "<p>Hi, we need a hand with something.</p>",
                    "author": author,
                    "attachments": [],
                    "url": None,
                    "redacted": False,
                },
                "contacts": {
                    "type": "contact.list",
                    "contacts": [
                        {"type": "contact", "id": contact.id, "external_id": contact.external_id}
                    ],
                },
                "teammates": {
                    "type": "admin.list",
                    "teammates": [{"type": "admin", "id": str(self.admin_id)}] if replied else [],
                },
                "custom_attributes": dict(self.attributes),
                "first_contact_reply": {
                    "created_at": self.created_at,
                    "type": "conversation",
                    "url": None,
                },
                "sla_applied": None,
                "statistics": self.statistics(),
                "linked_objects": {"type": "list", "data": [], "total_count": 0, "has_more": False},
                # Real responses say "ai_agent": null, but 2.16 types it as an object (the
                # nullable beside its $ref is void in OpenAPI 3.0), so it is left out.
                "ai_agent_participated": False,
            }
        )
        return body


# ------------------------------------------------------------------------------------------
# Generation


def window_of(as_of: date, lookback_days: int) -> tuple[int, int]:
    """The look-back window ``[start, end)`` in epoch seconds, ending at ``as_of`` 00:00 UTC."""
    end = int(datetime.combine(as_of, clock(), UTC).timestamp())
    return end - lookback_days * DAY, end


def _object_id(purpose: str) -> str:
    """A 24-hex id like Intercom's, derived from what it names (stable for a seed)."""
    return hashlib.sha256(purpose.encode()).hexdigest()[:24]


def _attribute_name(path: str | None, default: str) -> str:
    if path and path.startswith("custom_attributes."):
        return path.partition(".")[2]
    return default


@dataclass(eq=False)
class _Plan:
    """One conversation before it is built: what should happen to it."""

    created: int
    p1_p2: bool = False
    escalated: bool = False
    reply: int | None = None
    close: int | None = None
    reopened: bool = False
    has_company: bool = True
    compact: bool = False
    delivered_as: str = "customer_initiated"


class _Builder:
    """Draws companies, contacts and conversations near each account's targets."""

    def __init__(
        self,
        portfolio: Portfolio,
        settings: Settings,
        *,
        now: int | None = None,
        keep: tuple[int | None, int | None] = (None, None),
        conversation_ids: Iterator[int] | None = None,
        contact_numbers: Iterator[int] | None = None,
    ) -> None:
        """``now``: when the data is read (default: EXPORT_DELAY after ``as_of``); ``keep``:
        only conversations created in ``[lo, hi)`` are drawn (None: unbounded); the counters
        continue the ids of earlier builders (a history's months share them)."""
        self.rng = portfolio.rng("intercom")
        self.seed = portfolio.seed
        self.start, self.end = window_of(portfolio.as_of, settings.lookback_days)
        self.now = self.end + EXPORT_DELAY if now is None else now
        self.keep = keep
        self.priority_name = _attribute_name(settings.priority_attribute, "Priority")
        self.escalation_name = _attribute_name(settings.escalation_attribute, "Escalation level")
        self.escalation_tag = (settings.escalation_tags or ("Escalated",))[0]
        self.escalation_values = settings.escalation_values
        self.companies: list[Company] = []
        self.contacts: list[Contact] = []
        self.conversations: list[Conversation] = []
        self._conversation_ids = conversation_ids or itertools.count(100_001)
        self._contact_numbers = contact_numbers or itertools.count(1)
        # The shapes (compact references, shared contacts, outbound conversations) draw from
        # their own stream, so the rest of the portfolio is drawn as before.
        self.shapes = portfolio.rng("intercom-shapes")

    # -- records -----------------------------------------------------------------------------

    def company(self, company_id: str, name: str, segment: str) -> Company:
        rng = self.rng
        company = Company(
            id=_object_id(f"{self.seed}:company:{company_id}"),
            company_id=company_id,
            name=name,
            created_at=self.start - rng.randint(200, 1500) * DAY,
            user_count=rng.randint(3, 400),
            monthly_spend=rng.randint(50, 20_000),
            plan="Enterprise" if segment == "paid" else "Standard",
            industry=rng.choice(_INDUSTRIES),
            segment=segment,
        )
        self.companies.append(company)
        return company

    def contact(self, company: Company | None, also: Company | None = None) -> Contact:
        """A contact of ``company`` (a lead without one); ``also`` is a company it belongs to as
        well, listed first (so its first company is not the one its conversations are about)."""
        rng = self.rng
        number = next(self._contact_numbers)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        domain = f"{company.company_id.replace('_', '-')}.example.com" if company else "example.org"
        contact = Contact(
            id=_object_id(f"{self.seed}:contact:{number}"),
            external_id=f"u{number:07d}" if company else None,
            role="user" if company else "lead",
            name=f"{first} {last}",
            email=f"{first.lower()}.{last.lower()}.{number}@{domain}",
            created_at=self.start - rng.randint(30, 900) * DAY,
            company_ids=(also.id, company.id)
            if company and also
            else (company.id,)
            if company
            else (),
        )
        self.contacts.append(contact)
        return contact

    def kept(self, created: int) -> bool:
        """Whether a conversation created then is this builder's to draw (see ``keep``)."""
        lo, hi = self.keep
        return (lo is None or created >= lo) and (hi is None or created < hi)

    def conversation(self, company: Company | None, contact: Contact, plan: _Plan) -> None:
        if not self.kept(plan.created):
            return  # another month's: that month's builder draws its own
        rng = self.rng
        labels = ("P1", "P2") if plan.p1_p2 else ("P3", "P4", "P4", None)
        label: str | None = rng.choice(labels)
        attributes: dict[str, str] = {"Product area": rng.choice(("API", "Billing", "Reports"))}
        if label is not None:
            attributes[self.priority_name] = label
        tags = set(rng.sample(_OTHER_TAGS, rng.choice((0, 0, 1, 1, 2))))
        if plan.escalated:
            if self.escalation_values and rng.random() < 0.4:
                attributes[self.escalation_name] = rng.choice(self.escalation_values)
            else:
                tags.add(self.escalation_tag)
        elif rng.random() < 0.3 and "tier 1" not in {v.casefold() for v in self.escalation_values}:
            attributes[self.escalation_name] = "Tier 1"
        created, reply, close = plan.created, plan.reply, plan.close
        reopens = 0
        last_close = close
        if close is None:
            state = "snoozed" if rng.random() < 0.25 else "open"
        elif plan.reopened:
            reopens = rng.choice((1, 1, 1, 2))
            again = close + rng.randint(3600, 3 * DAY)
            if rng.random() < 0.7 and created + again <= self.now:
                last_close, state = again, "closed"  # closed again after the reopen
            else:
                state = "open"  # still open; the last close is the first one
        else:
            state = "closed"
        self.conversations.append(
            Conversation(
                id=str(next(self._conversation_ids)),
                created_at=created,
                company=company.id if company is not None and plan.has_company else None,
                contact=contact.id,
                state=state,
                priority=_BUILTIN_PRIORITY.get(label or "", "none"),
                attributes=tuple(sorted(attributes.items())),
                tags=tuple(sorted(tags)),
                admin_id=991_267_700 + rng.randint(0, 11),
                team_id=5_017_690 + rng.randint(0, 3),
                time_to_admin_reply=reply,
                time_to_first_close=close,
                time_to_last_close=last_close,
                count_reopens=reopens,
                delivered_as=plan.delivered_as,
                compact=plan.compact,
            )
        )

    # -- plans -------------------------------------------------------------------------------

    def _timing(self, plan: _Plan, reply_minutes: float, close_hours: float) -> None:
        """Reply and close durations drawn around the targets, cut at the moment of reading."""
        rng = self.rng
        if rng.random() >= 0.05:
            plan.reply = max(30, round(reply_minutes * 60 * rng.lognormvariate(0, 0.45)))
        if rng.random() < 0.87:
            close = round(close_hours * 3600 * rng.lognormvariate(0, 0.45))
            plan.close = max(close, (plan.reply or 0) + 60)
        if plan.reply is not None and plan.created + plan.reply > self.now:
            plan.reply = plan.close = None
        if plan.close is not None and plan.created + plan.close > self.now:
            plan.close = None

    def account(
        self,
        company: Company,
        targets: Mapping[str, float],
        *,
        quiet: bool = False,
        all_fallback: bool = False,
    ) -> None:
        rng = self.rng
        contacts = [self.contact(company) for _ in range(rng.randint(1, 5))]
        shapes = self.shapes
        partner = self.companies[-2] if len(self.companies) > 1 else None
        shared = (
            self.contact(company, also=partner)
            if partner is not None and not all_fallback and shapes.random() < SHARED_CONTACT_SHARE
            else None
        )
        reply_minutes = max(targets.get("first_response_minutes", 120.0), 1.0)
        close_hours = max(targets.get("close_time_hours", 24.0), 0.1)
        plans: list[_Plan] = []
        for _ in range(rng.randint(2, 8)):  # history before the window
            plans.append(_Plan(rng.randint(self.start - HISTORY_DAYS * DAY, self.start - 1)))
        if rng.random() < 0.2:  # created after as_of, before the data is read
            plans.append(_Plan(rng.randint(self.end, self.now - 1)))
        if rng.random() < 0.05:  # exactly at the window's end: outside
            plans.append(_Plan(self.end))
        if rng.random() < 0.05:  # one second before the window: outside
            plans.append(_Plan(self.start - 1))
        if self.keep != (None, None):  # another month's builder draws those
            plans = [plan for plan in plans if self.kept(plan.created)]
        window: list[_Plan] = []
        if not quiet:
            volume = max(0, round(targets.get("p1_p2_volume", 2.0) + rng.gauss(0, 0.6)))
            count = volume + rng.randint(4, 14)
            window = [_Plan(rng.randint(self.start, self.end - 1)) for _ in range(count)]
            if rng.random() < 0.05:  # exactly at the window's start: inside
                window[0].created = self.start
            for index in rng.sample(range(count), volume):
                window[index].p1_p2 = True
            escalation = min(max(targets.get("escalation_rate_pct", 10.0), 0.0), 100.0)
            for index in rng.sample(range(count), round(count * escalation / 100)):
                window[index].escalated = True
        for plan in plans:
            plan.p1_p2 = rng.random() < 0.15
            plan.escalated = rng.random() < 0.1
            plan.has_company = rng.random() >= FALLBACK_SHARE
        for plan in window:
            plan.has_company = not all_fallback and rng.random() >= FALLBACK_SHARE
        for plan in plans + window:
            self._timing(plan, reply_minutes, close_hours)
        closed = [plan for plan in window if plan.close is not None]
        reopen = min(max(targets.get("reopen_rate_pct", 8.0), 0.0), 100.0)
        for plan in rng.sample(closed, round(len(closed) * reopen / 100)):
            plan.reopened = True
        for plan in plans + window:
            plan.compact = plan.has_company and shapes.random() < COMPACT_SHARE
        if not quiet:  # outbound messages in the window, some answered like any conversation
            for _ in range(shapes.randint(0, 3)):
                outbound = _Plan(shapes.randint(self.start, self.end - 1))
                outbound.delivered_as = shapes.choice(("admin_initiated", "automated"))
                outbound.p1_p2 = shapes.random() < 0.3
                outbound.escalated = shapes.random() < 0.3
                outbound.has_company = not all_fallback
                outbound.compact = outbound.has_company and shapes.random() < COMPACT_SHARE
                self._timing(outbound, reply_minutes * 4, close_hours * 4)
                window.append(outbound)
        for plan in plans + window:
            self.conversation(company, rng.choice(contacts), plan)
        if shared is not None:  # its conversations name their company: compact, or full
            for _ in range(shapes.randint(1, 3)):
                plan = _Plan(shapes.randint(self.start, self.end - 1))
                plan.compact = shapes.random() < 0.7
                self._timing(plan, reply_minutes, close_hours)
                self.conversation(company, shared, plan)

    def stray(self, company: Company | None, count: int) -> None:
        """Conversations no mapped account owns: unmapped companies and leads with no company."""
        contact = self.contact(company)
        for _ in range(count):
            plan = _Plan(self.rng.randint(self.start, self.end - 1))
            self._timing(plan, 90.0, 12.0)
            plan.has_company = company is not None
            self.conversation(company, contact, plan)


def generate(portfolio: Portfolio, section: SectionLike = None) -> Data:
    """Companies, contacts and conversations for the portfolio, and the metrics they imply."""
    settings = Settings.of(section)
    builder = _Builder(portfolio, settings)
    _draw(portfolio, builder)
    conversations = tuple(sorted(builder.conversations, key=lambda c: (c.created_at, int(c.id))))
    data = Data(
        as_of=portfolio.as_of,
        companies=tuple(builder.companies),
        contacts=tuple(sorted(builder.contacts, key=lambda c: c.id)),
        conversations=conversations,
        accounts=_accounts(portfolio),
    )
    data.expected = _expected(portfolio, data, settings)
    return data


def _draw(portfolio: Portfolio, builder: _Builder) -> None:
    """Every mapped account's records, then conversations no mapped account owns."""
    rng = builder.rng
    forced_fallback = False
    for index, profile in enumerate(portfolio.profiles):
        account = profile.account
        if account.intercom_company_id is None or not profile.has("intercom"):
            continue  # unmapped, or mapped but unknown to Intercom: no records at all
        company = builder.company(
            account.intercom_company_id, account.account_name, account.segment
        )
        # One account is only ever reached through its contacts, so the scroll path is exercised.
        all_fallback = not forced_fallback and index >= 4
        forced_fallback = forced_fallback or all_fallback
        builder.account(
            company, profile.targets, quiet=rng.random() < 0.03, all_fallback=all_fallback
        )
    for number in range(1, max(1, len(portfolio.profiles) // 40) + 1):
        stranger = builder.company(f"cmp_x{number:05d}", f"Prospect {number:05d}", "standard")
        builder.stray(stranger, rng.randint(3, 10))
    builder.stray(None, max(1, len(portfolio.profiles) // 50))


def _accounts(portfolio: Portfolio) -> tuple[tuple[str, str | None], ...]:
    return tuple((p.account_id, p.account.intercom_company_id) for p in portfolio.profiles)


def _epoch(day: date) -> int:
    return int(datetime.combine(day, clock(), UTC).timestamp())


def generate_history(
    timeline: Timeline, slices: Sequence[Portfolio], section: SectionLike = None
) -> Data:
    """The records of every month of ``timeline``, merged: what Intercom holds at the sandbox
    date (the last slice's ``as_of``).

    Month ``k``'s conversations are drawn by the ordinary builder near that month's targets and
    kept if created inside the month (the first month also keeps older ones, the last one those
    created after its end, before the data is read). Reply and close timings are real durations,
    cut only at the moment the data is read (so only the last month's are ever cut). Companies
    are one per company id (an account that joins during the history: created near its join
    date); contacts and conversation ids are unique across the months. An account inactive in a
    month (not yet joined, or churned) has no conversation in it.
    """
    settings = Settings.of(section)
    if not slices:
        raise ValueError("a history needs at least one month")
    read_at = window_of(slices[-1].as_of, settings.lookback_days)[1] + EXPORT_DELAY
    conversation_ids = itertools.count(100_001)
    contact_numbers = itertools.count(1)
    companies: dict[str, Company] = {}
    contacts: list[Contact] = []
    conversations: list[Conversation] = []
    for k, portfolio in enumerate(slices):
        start, end = month_of(slices, k)
        keep = (None if k == 0 else _epoch(start), None if k == len(slices) - 1 else _epoch(end))
        builder = _Builder(
            portfolio,
            settings,
            now=read_at,
            keep=keep,
            conversation_ids=conversation_ids,
            contact_numbers=contact_numbers,
        )
        _draw(portfolio, builder)
        for company in builder.companies:
            companies.setdefault(company.id, company)
        contacts.extend(builder.contacts)
        conversations.extend(builder.conversations)
    # A customer that joined during the history: its company was created near its join date.
    first = timeline.month_starts[0]
    joined = {
        p.account.intercom_company_id: timeline.lives[p.account_id].joined
        for p in slices[-1].profiles
        if p.account.intercom_company_id is not None and timeline.lives[p.account_id].joined > first
    }
    rng = _history_rng(slices[-1].seed)
    for internal, company in companies.items():
        if company.company_id in joined:
            created = _epoch(joined[company.company_id]) - rng.randint(0, 14 * DAY)
            companies[internal] = dataclasses.replace(company, created_at=created)
    referenced = {c.contact for c in conversations}
    created_of = {c.id: c.created_at for c in companies.values()}
    kept = [
        dataclasses.replace(
            c, created_at=max(c.created_at, *(created_of[i] for i in c.company_ids))
        )
        if c.company_ids
        else c
        for c in contacts
        if c.id in referenced
    ]
    data = Data(
        as_of=slices[-1].as_of,
        companies=tuple(companies.values()),
        contacts=tuple(sorted(kept, key=lambda c: c.id)),
        conversations=tuple(sorted(conversations, key=lambda c: (c.created_at, int(c.id)))),
        accounts=_accounts(slices[-1]),
    )
    data.expected = data.expected_at(data.as_of, settings)
    return data


def _history_rng(seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:intercom-history".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


# ------------------------------------------------------------------------------------------
# Expected metrics: a plain recount of the records


def _recount(conversations: Sequence[Conversation], settings: Settings) -> dict[str, Metric]:
    p1_p2 = {value.casefold() for value in settings.p1_p2_values}
    tags = {tag.casefold() for tag in settings.escalation_tags}
    levels = {value.casefold() for value in settings.escalation_values}
    priority_name = _attribute_name(settings.priority_attribute, "")
    escalation_name = _attribute_name(settings.escalation_attribute, "")

    def priority(c: Conversation) -> str:
        value = (
            c.priority if settings.priority_attribute == "priority" else c.attribute(priority_name)
        )
        return (value or "").casefold()

    def escalated(c: Conversation) -> bool:
        level = c.attribute(escalation_name) if settings.escalation_attribute else None
        return any(t.casefold() in tags for t in c.tags) or (level or "").casefold() in levels

    outbound = {value.casefold() for value in settings.exclude_delivered_as}
    conversations = [c for c in conversations if c.delivered_as.casefold() not in outbound]
    replies = [c.time_to_admin_reply for c in conversations if c.time_to_admin_reply is not None]
    closes = [
        getattr(c, settings.close_time_statistic)
        for c in conversations
        if c.state == "closed" and getattr(c, settings.close_time_statistic) is not None
    ]
    closed_once = [c for c in conversations if c.time_to_first_close is not None]
    return {
        "p1_p2_volume": Decimal(sum(1 for c in conversations if priority(c) in p1_p2)),
        "first_response_minutes": rounded(median(replies) / 60) if replies else None,
        "close_time_hours": rounded(median(closes) / 3600) if closes else None,
        "reopen_rate_pct": percent(
            sum(1 for c in closed_once if c.count_reopens > 0), len(closed_once)
        ),
        "escalation_rate_pct": percent(
            sum(1 for c in conversations if escalated(c)), len(conversations)
        ),
    }


def _attribution(data: Data) -> Callable[[Conversation], str | None]:
    """conversation → company_id: its own company, else its contact's first company."""
    company_of = {c.id: c.company_id for c in data.companies}
    via_contact = {c.id: c.company_ids[0] for c in data.contacts if c.company_ids}

    def company_id(conversation: Conversation) -> str | None:
        internal = conversation.company or via_contact.get(conversation.contact)
        return company_of[internal] if internal else None

    return company_id


def _expected(portfolio: Portfolio, data: Data, settings: Settings) -> dict[str, dict[str, Metric]]:
    return _expected_for(_accounts(portfolio), data, settings, portfolio.as_of)


def _seen_at(conversation: Conversation, cutoff: int) -> Conversation:
    """``conversation`` as a reader at ``cutoff`` counts it: a reply or a close from ``cutoff``
    on has not happened yet. Its close time counts only if it was closed for good before
    ``cutoff`` (closed now, its last close before it); it was closed once if its first close was
    before ``cutoff``; a reopen counts with that first close (the reopen's own instant is not in
    the statistics)."""
    created = conversation.created_at
    reply = conversation.time_to_admin_reply
    first = conversation.time_to_first_close
    last = conversation.time_to_last_close
    first_before = first is not None and created + first < cutoff
    closed_before = conversation.state == "closed" and last is not None and created + last < cutoff
    return dataclasses.replace(
        conversation,
        time_to_admin_reply=reply if reply is not None and created + reply < cutoff else None,
        time_to_first_close=first if first_before else None,
        time_to_last_close=last if closed_before else None,
        state="closed" if closed_before else "open",
        count_reopens=conversation.count_reopens if first_before else 0,
    )


def _expected_for(
    accounts: Sequence[tuple[str, str | None]],
    data: Data,
    settings: Settings,
    as_of: date,
    cutoff: int | None = None,
) -> dict[str, dict[str, Metric]]:
    """Per account (id, company_id): the metrics of the conversations created in the window
    ending at ``as_of``, each seen as at ``cutoff`` when given (a past period read later)."""
    start, end = window_of(as_of, settings.lookback_days)
    attribute = _attribution(data)
    groups: dict[str, list[Conversation]] = defaultdict(list)
    first = bisect_left(data.conversations, start, key=lambda c: c.created_at)
    last = bisect_left(data.conversations, end, key=lambda c: c.created_at)
    for conversation in data.conversations[first:last]:
        company_id = attribute(conversation)
        if start <= conversation.created_at < end and company_id is not None:
            groups[company_id].append(
                conversation if cutoff is None else _seen_at(conversation, cutoff)
            )
    expected: dict[str, dict[str, Metric]] = {}
    for account_id, company_id in accounts:
        expected[account_id] = (
            dict.fromkeys(METRICS) if company_id is None else _recount(groups[company_id], settings)
        )
    return expected


@dataclass
class Data:
    """Everything the Intercom stand-in serves, and the metrics a correct extractor derives."""

    as_of: date
    companies: tuple[Company, ...]
    contacts: tuple[Contact, ...]
    conversations: tuple[Conversation, ...]  # sorted by (created_at, id)
    expected: dict[str, dict[str, Metric]] = field(default_factory=dict)
    #: (account_id, intercom company_id) of every account of the portfolio, for recounts.
    accounts: tuple[tuple[str, str | None], ...] = ()

    def expected_at(self, as_of: date, section: SectionLike = None) -> dict[str, dict[str, Metric]]:
        """The metrics a correct extractor reports for the period ending at ``as_of``.

        At the sandbox date (``self.as_of``) the statistics are taken as read (the default
        sandbox's reading, EXPORT_DELAY after it). For an earlier ``as_of`` the period is read
        later, and a reply or close that happened at or after ``as_of`` is not counted
        (:func:`_seen_at`).
        """
        settings = Settings.of(section)
        cutoff = None if as_of >= self.as_of else window_of(as_of, settings.lookback_days)[1]
        return _expected_for(self.accounts, self, settings, as_of, cutoff)

    def minimum_requests(self, section: SectionLike = None) -> int:
        """Search pages for the window at 150 a page, contact pages for the fallback, and a
        look-up (or the company scroll) for fallback companies no conversation names."""
        settings = Settings.of(section)
        start, end = window_of(self.as_of, settings.lookback_days)
        window = [c for c in self.conversations if start <= c.created_at < end]
        requests = max(1, math.ceil(len(window) / MAX_PER_PAGE))
        outbound = {value.casefold() for value in settings.exclude_delivered_as}
        measured = [c for c in window if c.delivered_as.casefold() not in outbound]
        orphans = [c for c in measured if c.company is None]
        referenced = {c.company for c in measured if c.company is not None and c.compact}
        if not orphans and not referenced:
            return requests
        contact_ids = {c.contact for c in orphans}
        requests += math.ceil(len(contact_ids) / MAX_PER_PAGE)
        # Full company objects on measured conversations tell their company_id for free.
        seen = {c.company for c in measured if c.company is not None and not c.compact}
        via_contact = {c.id: c.company_ids[0] for c in self.contacts if c.company_ids}
        wanted = {via_contact[cid] for cid in contact_ids if cid in via_contact} | referenced
        unknown = wanted - seen
        if unknown:  # one lookup each, or one scroll walked to its empty end if that is fewer
            scroll = math.ceil(len(self.companies) / SCROLL_PAGE_SIZE) + 1
            requests += min(len(unknown), scroll)
        return requests

    def to_json_bytes(self) -> bytes:
        """A canonical serialisation of every record and expectation (for determinism checks)."""
        companies = {c.id: c.reference() for c in self.companies}
        contacts = {c.id: c for c in self.contacts}
        document = {
            "as_of": self.as_of.isoformat(),
            "companies": [c.to_json() for c in self.companies],
            "contacts": [c.to_json() for c in self.contacts],
            "conversations": [c.to_json(companies, contacts) for c in self.conversations],
            "expected": {
                account: {k: None if v is None else str(v) for k, v in metrics.items()}
                for account, metrics in sorted(self.expected.items())
            },
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------
# Search queries: Intercom's filter language, with its limits


def _invalid(message: str, code: str = "parameter_invalid") -> HttpError:
    return HttpError(Response(400, _error_list(code, message)))


def _error_list(code: str, message: str) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {
        "type": "error.list",
        "request_id": request_id,
        "errors": [{"code": code, "message": message}],
    }


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str  # string | integer | date | boolean
    get: Callable[[Any], Any]  # record → value, None, or a tuple (multi-valued fields)


_STRING_OPS = frozenset({"=", "!=", "IN", "NIN", "~", "!~", "^", "$"})
# Intercom's operators: no ">=" or "<=" (its ">" and "<" already include the value).
_NUMBER_OPS = frozenset({"=", "!=", "IN", "NIN", ">", "<"})
_BOOLEAN_OPS = frozenset({"=", "!=", "IN", "NIN"})
_CONTACT_DATE_OPS = frozenset({"=", ">", "<"})  # contacts match dates by calendar day

CONVERSATION_FIELDS: dict[str, _Field] = {
    "id": _Field("string", lambda c: c.id),
    "created_at": _Field("date", lambda c: c.created_at),
    "updated_at": _Field("date", lambda c: c.updated_at),
    "state": _Field("string", lambda c: c.state),
    "open": _Field("boolean", lambda c: c.state != "closed"),
    "read": _Field("boolean", lambda c: c.time_to_admin_reply is not None),
    "priority": _Field("string", lambda c: c.priority),
    "admin_assignee_id": _Field("integer", lambda c: c.admin_id),
    "team_assignee_id": _Field("integer", lambda c: c.team_id),
    "tag_ids": _Field("string", lambda c: tuple(_TAG_IDS.get(t, _plan_id(t)) for t in c.tags)),
    "contact_ids": _Field("string", lambda c: (c.contact,)),
    "source.type": _Field("string", lambda c: "conversation"),
    "source.delivered_as": _Field("string", lambda c: c.delivered_as),
    "source.author.type": _Field(
        "string", lambda c: "admin" if c.delivered_as != "customer_initiated" else "user"
    ),
    "source.author.id": _Field(
        "string",
        lambda c: str(c.admin_id) if c.delivered_as != "customer_initiated" else c.contact,
    ),
    "statistics.time_to_admin_reply": _Field("integer", lambda c: c.time_to_admin_reply),
    "statistics.time_to_first_close": _Field("integer", lambda c: c.time_to_first_close),
    "statistics.time_to_last_close": _Field("integer", lambda c: c.time_to_last_close),
    "statistics.count_reopens": _Field("integer", lambda c: c.count_reopens),
}
CONTACT_FIELDS: dict[str, _Field] = {
    "id": _Field("string", lambda c: c.id),
    "external_id": _Field("string", lambda c: c.external_id),
    "role": _Field("string", lambda c: c.role),
    "name": _Field("string", lambda c: c.name),
    "email": _Field("string", lambda c: c.email),
    "email_domain": _Field("string", lambda c: c.email.partition("@")[2]),
    "created_at": _Field("date", lambda c: c.created_at),
    "updated_at": _Field("date", lambda c: c.created_at + DAY),
}


def _field(name: object, fields: Mapping[str, _Field], custom: bool) -> _Field:
    if not isinstance(name, str):
        raise _invalid("Each filter needs a 'field' string")
    if name in fields:
        return fields[name]
    if custom and name.startswith("custom_attributes.") and name.partition(".")[2]:
        attribute = name.partition(".")[2]
        return _Field("string", lambda c: c.attribute(attribute))
    raise _invalid(f"'{name}' is not a searchable field")


def _scalar(kind: str, name: str, value: object) -> object:
    if kind in ("integer", "date"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise _invalid(f"The value for '{name}' must be an integer or a UNIX timestamp")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise _invalid(f"The value for '{name}' must be a boolean")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _invalid(f"The value for '{name}' must be a string")


def _day(epoch: int) -> int:
    return epoch - epoch % DAY  # the workspace's timezone is UTC


def _leaf(
    node: Mapping[str, Any], fields: Mapping[str, _Field], contacts: bool
) -> Callable[[Any], bool]:
    name = node.get("field")
    spec = _field(name, fields, custom=not contacts)
    operator = node.get("operator")
    allowed = {
        "string": _STRING_OPS,
        "integer": _NUMBER_OPS,
        "boolean": _BOOLEAN_OPS,
        "date": _CONTACT_DATE_OPS if contacts else _NUMBER_OPS,
    }[spec.kind]
    if operator not in allowed:
        raise _invalid(f"The operator '{operator}' is not supported for the field '{name}'")
    if "value" not in node:
        raise _invalid(f"The filter on '{name}' needs a 'value'")
    raw = node["value"]
    get = spec.get

    def values(record: Any) -> tuple[Any, ...]:
        value = get(record)
        if value is None:
            return ()
        return value if isinstance(value, tuple) else (value,)

    if operator in ("IN", "NIN"):
        if not isinstance(raw, list) or not raw:
            raise _invalid(f"The operator '{operator}' needs a non-empty array of values")
        members = {_scalar(spec.kind, str(name), v) for v in raw}
        if operator == "IN":
            return lambda r: any(v in members for v in values(r))
        return lambda r: not any(v in members for v in values(r))
    if raw is None and operator in ("=", "!="):
        return (lambda r: not values(r)) if operator == "=" else (lambda r: bool(values(r)))
    target: Any = _scalar(spec.kind, str(name), raw)
    if spec.kind == "date" and contacts:
        day = _day(target)
        tests: dict[str, Callable[[Any], bool]] = {
            "=": lambda v: _day(v) == day,
            ">": lambda v: v >= day + DAY,  # from the start of the next day
            "<": lambda v: v < day,  # before the start of that day
        }
    else:
        # For conversations Intercom documents ">" and "<" as "greater/lower (or equal) than".
        needle = str(target).casefold()
        tests = {
            "=": lambda v: v == target,
            "!=": lambda v: v != target,
            ">": lambda v: v >= target,
            "<": lambda v: v <= target,
            "~": lambda v: needle in str(v).casefold(),
            "!~": lambda v: needle not in str(v).casefold(),
            "^": lambda v: str(v).casefold().startswith(needle),
            "$": lambda v: str(v).casefold().endswith(needle),
        }
    test = tests[operator]
    if operator in ("!=", "!~"):
        return lambda r: all(test(v) for v in values(r))
    return lambda r: any(test(v) for v in values(r))


def compile_query(
    node: object, fields: Mapping[str, _Field], *, contacts: bool = False, depth: int = 0
) -> Callable[[Any], bool]:
    """A predicate for a search query, or a 400 ``error.list`` for what Intercom refuses."""
    if not isinstance(node, Mapping):
        raise _invalid("The query must be an object")
    if "field" in node:
        return _leaf(node, fields, contacts)
    operator = node.get("operator")
    if operator not in ("AND", "OR"):
        raise _invalid(f"The operator '{operator}' needs a 'field' (groups use AND or OR)")
    members = node.get("value")
    if not isinstance(members, list) or not members:
        raise _invalid(f"An {operator} group needs a non-empty array of filters")
    if depth + 1 > MAX_NESTING:
        raise _invalid(f"Queries can be nested at most {MAX_NESTING} levels deep")
    if len(members) > MAX_GROUP_FILTERS:
        raise _invalid(f"An {operator} group can hold at most {MAX_GROUP_FILTERS} filters")
    parts = [compile_query(m, fields, contacts=contacts, depth=depth + 1) for m in members]
    if operator == "AND":
        return lambda r: all(p(r) for p in parts)
    return lambda r: any(p(r) for p in parts)


def _created_bounds(query: object) -> tuple[int | None, int | None]:
    """Inclusive bounds on created_at implied by a top-level AND (to search a sorted slice)."""
    leaves = [query]
    if isinstance(query, Mapping) and query.get("operator") == "AND":
        leaves = list(query.get("value") or [])
    lo: int | None = None
    hi: int | None = None
    for leaf in leaves:
        if not isinstance(leaf, Mapping) or leaf.get("field") != "created_at":
            continue
        value = leaf.get("value")
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if leaf.get("operator") == ">":
            lo = value if lo is None else max(lo, value)
        elif leaf.get("operator") == "<":
            hi = value if hi is None else min(hi, value)
    return lo, hi


def _cursor(query_hash: str, offset: int) -> str:
    raw = json.dumps([query_hash, offset], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _offset(cursor: object, query_hash: str, total: int) -> int:
    if not isinstance(cursor, str):
        raise _invalid("starting_after must be a string")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        owner, offset = decoded
    except (ValueError, TypeError, binascii.Error):
        raise _invalid("starting_after is not a valid cursor") from None
    if owner != query_hash or not isinstance(offset, int) or not 0 <= offset <= total:
        raise _invalid("starting_after does not belong to this search")
    return offset


# ------------------------------------------------------------------------------------------
# The app


@dataclass
class _Scroll:
    param: str
    offset: int
    last_used: float


class App(VendorApp):
    """The Intercom stand-in."""

    name = "intercom"

    def __init__(self, data: Data, section: SectionLike = None) -> None:
        super().__init__()
        self.data = data
        self.settings = Settings.of(section)
        self._companies = {c.id: c.to_json() for c in data.companies}
        self._references = {c.id: c.reference() for c in data.companies}
        self._contacts = {c.id: c for c in data.contacts}
        self._created = [c.created_at for c in data.conversations]
        self._lock = threading.Lock()
        #: The ``query`` of every conversation search received (the latest QUERY_LOG), for tests.
        self.queries: deque[Any] = deque(maxlen=QUERY_LOG)
        self._results: OrderedDict[str, list[Any]] = OrderedDict()
        self._scroll: _Scroll | None = None
        self._scrolls = itertools.count(1)
        self._authorised = 0
        self._window: tuple[int, int] = (0, 0)  # (reset epoch, requests) for unlimited servers

    # Vendor shapes ---------------------------------------------------------------------------
    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, _error_list(code, message))

    def unauthorized(self) -> Response:
        return self.error(401, "unauthorized", "Access Token Invalid")

    def too_many_requests(self, retry_after: float, reset_epoch: float) -> Response:
        limit = self._limit()
        return Response(
            429,
            _error_list("rate_limit_exceeded", f"Exceeded rate limit of {limit} in 10_seconds"),
            {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(math.ceil(reset_epoch)),
            },
        )

    def _limit(self) -> int:
        knob = self.server.knobs.rate_limit if self.server is not None else None
        return knob if knob is not None else NOMINAL_RATE_LIMIT

    def decorate(
        self, response: Response, limit: int | None, remaining: int | None, reset_epoch: float
    ) -> None:
        reset = math.ceil(reset_epoch)
        if remaining is None:
            with self._lock:
                used = self._window[1] + 1 if self._window[0] == reset else 1
                self._window = (reset, used)
            remaining = max(NOMINAL_RATE_LIMIT - used, 0)
        response.headers.setdefault("X-RateLimit-Limit", str(limit or NOMINAL_RATE_LIMIT))
        response.headers.setdefault("X-RateLimit-Remaining", str(remaining))
        response.headers.setdefault("X-RateLimit-Reset", str(reset))

    # Routing ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        self._authorise(request)
        with_company = self._version(request) >= (2, 15)
        route = (request.method, request.path)
        if route == ("POST", "/conversations/search"):
            return Response(200, self._search_conversations(request, with_company))
        if route == ("POST", "/contacts/search"):
            return Response(200, self._search_contacts(request))
        if route == ("GET", "/companies/scroll"):
            return Response(200, self._scroll_companies(request))
        if request.method == "GET" and self._company_path(request.path):
            company = self._companies.get(request.path.rpartition("/")[2])
            if company is None:
                return self.error(404, "company_not_found", "Company Not Found")
            return Response(200, company)
        return self.error(404, "not_found", "Resource Not Found")

    @staticmethod
    def _company_path(path: str) -> bool:
        parent, _, name = path.rpartition("/")
        return parent == "/companies" and name not in ("", "scroll", "list")

    def endpoint_label(self, request: Request) -> str:
        if request.method == "GET" and self._company_path(request.path):
            return "GET /companies/{id}"
        return f"{request.method} {request.path}"

    def _authorise(self, request: Request) -> None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        valid = scheme.lower() == "bearer" and token.strip() == TOKEN
        faults = self.faults
        with self._lock:
            if valid and not faults.auth_rejected:
                self._authorised += 1
                expired = (
                    faults.token_expiry_after is not None
                    and self._authorised > faults.token_expiry_after
                )
                if not expired:
                    return
        raise HttpError(self.unauthorized())

    def _version(self, request: Request) -> tuple[int, int]:
        version = (request.header("Intercom-Version") or "").strip() or APP_VERSION
        if version not in SUPPORTED_VERSIONS:
            raise _invalid("Requested version could not be found", "intercom_version_invalid")
        major, minor = version.split(".")
        return int(major), int(minor)

    # Searches --------------------------------------------------------------------------------
    def _body(self, request: Request) -> Mapping[str, Any]:
        try:
            body = request.json()
        except ValueError:
            raise _invalid("The request body is not valid JSON") from None
        if not isinstance(body, Mapping) or "query" not in body:
            raise _invalid("A search needs a 'query'")
        return body

    def _paging(self, body: Mapping[str, Any], kind: str) -> tuple[int, object]:
        pagination = body.get("pagination") or {}
        if not isinstance(pagination, Mapping):
            raise _invalid("pagination must be an object")
        per_page = pagination.get("per_page", DEFAULT_PER_PAGE[kind])
        if not isinstance(per_page, int) or isinstance(per_page, bool) or per_page < 1:
            raise _invalid("per_page must be a positive integer")
        if per_page > MAX_PER_PAGE:
            raise _invalid(f"per_page must be at most {MAX_PER_PAGE}")
        return per_page, pagination.get("starting_after")

    def _matches(self, key: str, compute: Callable[[], list[Any]]) -> list[Any]:
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                return cached
        found = compute()
        with self._lock:
            self._results[key] = found
            while len(self._results) > 32:
                self._results.popitem(last=False)
        return found

    def _page(
        self, key: str, body: Mapping[str, Any], kind: str, compute: Callable[[], list[Any]]
    ) -> tuple[list[Any], int, dict[str, Any]]:
        per_page, cursor = self._paging(body, kind)
        query_hash = hashlib.sha256(key.encode()).hexdigest()[:16]
        matches = self._matches(key, compute)
        offset = 0 if cursor in (None, "") else _offset(cursor, query_hash, len(matches))
        chunk = matches[offset : offset + per_page]
        pages: dict[str, Any] = {
            "type": "pages",
            "page": offset // per_page + 1,
            "per_page": per_page,
            "total_pages": math.ceil(len(matches) / per_page),
        }
        if offset + per_page < len(matches):
            pages["next"] = {
                "per_page": per_page,
                "starting_after": _cursor(query_hash, offset + per_page),
            }
        return chunk, len(matches), pages

    def _search_conversations(self, request: Request, with_company: bool) -> dict[str, Any]:
        body = self._body(request)
        query = body["query"]
        self.queries.append(query)
        predicate = compile_query(query, CONVERSATION_FIELDS)
        key = "conversations:" + json.dumps(query, sort_keys=True, separators=(",", ":"))

        def compute() -> list[Any]:
            lo, hi = _created_bounds(query)
            first = 0 if lo is None else bisect_left(self._created, lo)
            last = len(self._created) if hi is None else bisect_right(self._created, hi)
            return [c for c in self.data.conversations[first:last] if predicate(c)]

        chunk, total, pages = self._page(key, body, "conversations", compute)
        return {
            "type": "conversation.list",
            "pages": pages,
            "total_count": total,
            "conversations": [
                c.to_json(self._references, self._contacts, with_company) for c in chunk
            ],
        }

    def _search_contacts(self, request: Request) -> dict[str, Any]:
        body = self._body(request)
        query = body["query"]
        predicate = compile_query(query, CONTACT_FIELDS, contacts=True)
        sort = body.get("sort")
        order_key: Callable[[Contact], Any] | None = None
        descending = True
        if sort is not None:
            if not isinstance(sort, Mapping):
                raise _invalid("sort must be an object")
            order = sort.get("order", "descending")
            if order not in ("ascending", "descending"):
                raise _invalid(
                    f"Invalid sort order '{order}'. Must be one of: ascending, descending",
                    "invalid_sort_order",
                )
            getter = _field(sort.get("field"), CONTACT_FIELDS, custom=False).get
            order_key, descending = (lambda c: (getter(c) or 0, c.id)), order == "descending"
        key = "contacts:" + json.dumps([query, sort], sort_keys=True, separators=(",", ":"))

        def compute() -> list[Any]:
            found = [c for c in self.data.contacts if predicate(c)]
            if order_key is not None:
                found.sort(key=order_key, reverse=descending)
            return found

        chunk, total, pages = self._page(key, body, "contacts", compute)
        return {
            "type": "list",
            "data": [c.to_json() for c in chunk],
            "total_count": total,
            "pages": pages,
        }

    # Scroll ----------------------------------------------------------------------------------
    def _scroll_companies(self, request: Request) -> dict[str, Any]:
        param = request.arg("scroll_param")
        now = time.monotonic()
        with self._lock:
            scroll = self._scroll
            if scroll is not None and now - scroll.last_used > SCROLL_IDLE_SECONDS:
                scroll = self._scroll = None  # an idle scroll expires after a minute
            if not param:
                if scroll is not None:
                    raise _invalid(
                        "A scroll is already open for this app: finish it or wait a minute",
                        "scroll_exists",
                    )
                param = str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"intercom-scroll:{next(self._scrolls)}")
                )
                scroll = self._scroll = _Scroll(param, 0, now)
            elif scroll is None or scroll.param != param:
                raise HttpError(
                    self.error(404, "not_found", "scroll_param not found: restart the scroll")
                )
            companies = self.data.companies[scroll.offset : scroll.offset + SCROLL_PAGE_SIZE]
            scroll.offset += len(companies)
            scroll.last_used = now
            if not companies:
                self._scroll = None  # the end: the scroll parameter expires
                return {"type": "list", "data": [], "pages": None, "total_count": None}
        return {
            "type": "list",
            "data": [self._companies[c.id] for c in companies],
            "pages": None,
            "total_count": None,
            "scroll_param": param,
        }


def environment(url: str, ca_bundle: str) -> dict[str, str]:
    """Fake credentials and the base URL that point the pipeline at this stand-in."""
    del ca_bundle  # plain HTTP on loopback: Intercom's stand-in needs no certificate
    return {"INTERCOM_API_TOKEN": TOKEN, "INTERCOM_BASE_URL": url}


# ------------------------------------------------------------------------------------------
# The conversation export (CSV), as Intercom's conversation reports export it

#: The export's columns before the conversation attributes (one column each, by name).
EXPORT_COLUMNS = (
    "Conversation ID",
    "Created at",
    "Company ID",
    "Company name",
    "Contact ID",
    "State",
    "Delivered as",
    "Conversation priority",
    "Tags",
    "First response time",
    "Time to first close",
    "Time to last close",
    "Reopens",
    "First replied at",
    "First closed at",
    "Last closed at",
)


def _export_time(epoch: int | None) -> str:
    """An instant as the export writes it: ``2026-10-14 09:30:00``, UTC."""
    return "" if epoch is None else f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M:%S}"


def export_rows(data: Data) -> list[list[str]]:
    """The export of every conversation the stand-in holds: the header, then one row each.

    The company is the one Intercom's reports attribute a conversation to: its own, else its
    contact's first (what the API mode resolves); durations are whole seconds, times UTC; each
    conversation attribute is a column of its own name.
    """
    companies = {c.id: c for c in data.companies}
    first_company = {c.id: c.company_ids[0] for c in data.contacts if c.company_ids}
    attributes = sorted({name for c in data.conversations for name, _ in c.attributes})
    rows = [[*EXPORT_COLUMNS, *attributes]]
    for c in data.conversations:
        internal = c.company or first_company.get(c.contact)
        company = companies[internal] if internal else None
        stats = c.statistics()

        def seconds(value: int | None) -> str:
            return "" if value is None else str(value)

        rows.append(
            [
                c.id,
                _export_time(c.created_at),
                "" if company is None else company.company_id,
                "" if company is None else company.name,
                c.contact,
                c.state,
                c.delivered_as,
                c.priority,
                ", ".join(c.tags),
                seconds(c.time_to_admin_reply),
                seconds(c.time_to_first_close),
                seconds(c.time_to_last_close),
                str(c.count_reopens),
                _export_time(stats.get("first_admin_reply_at")),
                _export_time(stats.get("first_close_at")),
                _export_time(stats.get("last_close_at")),
                *(c.attribute(name) or "" for name in attributes),
            ]
        )
    return rows


def write_conversation_export(data: Data, path: Path) -> Path:
    """Write the conversation export CSV (UTF-8, comma-separated) of ``data`` to ``path``."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(export_rows(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path
