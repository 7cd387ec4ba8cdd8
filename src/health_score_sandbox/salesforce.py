"""The stand-in Salesforce: an org of synthetic records served the way Salesforce serves them.

Read side (this module): OAuth 2.0 token endpoint (client credentials; JWT bearer when a public
key is registered), the SOAP ``login`` call, ``GET /services/data/vNN.0/query`` and ``queryAll``
over a SOQL subset (:mod:`health_score_sandbox.soql`) with ``nextRecordsUrl`` paging at 2,000
records,
``sobjects/{type}/describe``, ``limits``, ``Sforce-Limit-Info: api-usage=N/M`` on every response,
a daily API allowance ending in 403 ``REQUEST_LIMIT_EXCEEDED``, 401 ``INVALID_SESSION_ID`` for
bad or expired sessions, 414 beyond the 16,384-byte URI limit, and knobs to drop a field or an
object from the org. Write routes (Bulk API 2.0, sObject Collections) are answered by
``health_score_sandbox.salesforce_write.WriteApi`` after authentication and the allowance check.

The org is drawn from the portfolio: Accounts with the mapping's 18-character ids, renewal date,
ARR and prior-year ARR, support tier and relationship fields; Opportunities (renewals,
contractions, expansions, some closed-lost or deleted); payments; Events (QBRs, executive
meetings, calls); ``Churn_Signal__c`` records — each drawn around the account's targets, plus
prospects nobody maps. :attr:`Data.expected` holds the raw metrics a correct extractor returns,
computed from those records by the plain definitions in :func:`_expected`.
"""

from __future__ import annotations

import html
import itertools
import math
import random
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests

from health_score_sandbox.config import SectionLike, read_settings
from health_score_sandbox.portfolio import Portfolio, expected_signal_counts, salesforce_id
from health_score_sandbox.salesforce_write import WriteApi
from health_score_sandbox.server import HttpError, Request, Response, VendorApp
from health_score_sandbox.soql import (
    AGGREGATE_CAP_MESSAGE,
    FieldDef,
    Org,
    SObject,
    SoqlError,
    execute,
    to_id18,
)
from health_score_sandbox.timeline import AccountLife, Timeline, add_months
from health_score_sandbox.truth import Metric, exact, percent, rounded

PAGE_SIZE = 2000  # records per query page (Sforce-Query-Options batchSize may lower it)
MIN_BATCH_SIZE = 200
URI_LIMIT = 16_384  # bytes in the request line's target, as Salesforce documents
#: Ids an ideal client fits into one query under the URI limit: an 18-character id costs 27
#: bytes URL-encoded (``%27…%27%2C``), leaving ~1,400 bytes for the rest of the query.
MAX_IDS_PER_QUERY = (URI_LIMIT - 1_400) // 27
DEFAULT_DAILY_API_LIMIT = 100_000
SUPPORTED_VERSIONS = (31, 66)  # vNN.0 accepted, inclusive
ARCHIVE_AFTER_DAYS = 365  # Events older than this are archived (plain query omits them)
MAX_CURSORS = 1_000  # open query locators kept (oldest dropped first)
QUERY_LOG = 1_000  # SOQL texts received that App.queries keeps (oldest dropped first)
#: Hosts that answer the client credentials flow with invalid_grant: a request whose Host header
#: names one is answered as Salesforce's generic login servers answer it.
GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})

ORG_ID = "00DSb0000000001EAA"
USER_ID = "005Sb0000000001AAA"
FAKE_CLIENT_ID = "3MVG9sandbox.HealthScoreMiddleware"
FAKE_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - a stand-in's fake credential
FAKE_USERNAME = "integration@health-score.sandbox"
FAKE_PASSWORD = "sandbox-password"  # noqa: S105 - a stand-in's fake credential
FAKE_SECURITY_TOKEN = "SandboxSecurityToken"  # noqa: S105 - a stand-in's fake credential

METRICS = (
    "days_to_renewal",
    "payment_health",
    "contract_changes",
    "arr_trajectory_pct",
    "tier_alignment",
    "qbr_attendance_pct",
    "responsiveness",
    "champion_stability",
    "exec_engagement",
    "expansion_signals",
)
#: Objects an ideal client must query once per id list (Account, Opportunity, payment, Event,
#: Churn_Signal__c).
OBJECTS_READ = 5


# --------------------------------------------------------------------------------------------
# What the stand-in reads from the ``salesforce:`` section of sources.yaml (defaults as documented)


@dataclass(frozen=True, slots=True)
class AccountFields:
    object_name: str = "Account"
    renewal_date_field: str = "Renewal_Date__c"
    arr_field: str = "ARR__c"
    prior_year_arr_field: str = "Prior_Year_ARR__c"
    support_tier_field: str = "Support_Tier__c"
    champion_changed_date_field: str = "Champion_Changed_Date__c"
    avg_response_hours_field: str = "Avg_Response_Hours__c"
    #: The day a customer churned (a sandbox with history only; empty for live customers).
    churn_date_field: str = "Churn_Date__c"


@dataclass(frozen=True, slots=True)
class OpportunityFields:
    object_name: str = "Opportunity"
    account_field: str = "AccountId"
    type_field: str = "Type"
    close_date_field: str = "CloseDate"
    is_won_field: str = "IsWon"
    is_closed_field: str = "IsClosed"
    contraction_types: tuple[str, ...] = ("Downgrade", "Contraction")
    expansion_types: tuple[str, ...] = ("Expansion", "Upsell")
    #: A contract's renewal at its anniversary: Closed Won renewed, Closed Lost churned.
    renewal_types: tuple[str, ...] = ("Renewal",)


@dataclass(frozen=True, slots=True)
class PaymentFields:
    object_name: str = "Payment__c"
    account_field: str = "Account__c"
    status_field: str = "Status__c"
    date_field: str = "Payment_Date__c"
    failed_values: tuple[str, ...] = ("Failed",)


@dataclass(frozen=True, slots=True)
class EventFields:
    object_name: str = "Event"
    account_field: str = "AccountId"
    type_field: str = "Type"
    date_field: str = "ActivityDate"
    attended_field: str = "Attended__c"
    qbr_types: tuple[str, ...] = ("QBR",)
    exec_types: tuple[str, ...] = ("Executive Meeting",)


@dataclass(frozen=True, slots=True)
class ChurnSignalFields:
    object_name: str = "Churn_Signal__c"
    account_field: str = "Account__c"
    severity_field: str = "Severity__c"
    confidence_field: str = "Confidence__c"
    status_field: str = "Status__c"
    critical_values: tuple[str, ...] = ("Critical",)
    moderate_values: tuple[str, ...] = ("Moderate",)
    watch_values: tuple[str, ...] = ("Watch",)
    confirmed_values: tuple[str, ...] = ("Confirmed",)
    active_values: tuple[str, ...] = ("Active",)
    monitoring_values: tuple[str, ...] = ("Monitoring",)
    resolved_values: tuple[str, ...] = ("Resolved",)


@dataclass(frozen=True, slots=True)
class TierAlignment:
    """Misaligned (1) when ARR is above the threshold on one of the standard support tiers."""

    standard_tiers: tuple[str, ...] = ("Standard",)
    arr_threshold: Decimal = Decimal(200000)


@dataclass(frozen=True, slots=True)
class Responsiveness:
    """Average response hours → 1 (below fast), 2 (fast … slow inclusive), 3 (above slow)."""

    fast_below_hours: Decimal = Decimal(24)
    slow_above_hours: Decimal = Decimal(48)


@dataclass(frozen=True, slots=True)
class Settings:
    """Object and field API names of the org, picklist values, and the look-back window."""

    lookback_months: int = 12
    account: AccountFields = field(default_factory=AccountFields)
    opportunity: OpportunityFields = field(default_factory=OpportunityFields)
    payment: PaymentFields = field(default_factory=PaymentFields)
    event: EventFields = field(default_factory=EventFields)
    churn_signal: ChurnSignalFields = field(default_factory=ChurnSignalFields)
    tier_alignment: TierAlignment = field(default_factory=TierAlignment)
    responsiveness: Responsiveness = field(default_factory=Responsiveness)

    @classmethod
    def of(cls, source: SectionLike = None) -> Settings:
        """This stand-in's settings from a sources.yaml section (see :func:`read_settings`)."""
        return read_settings(cls, {} if source is None else source)


@dataclass(frozen=True, slots=True)
class SignalCounts:
    """Active churn signals of one account as a correct extractor counts them: Monitoring ones
    one severity lower (a Monitoring Watch is not counted)."""

    critical: int = 0
    moderate: int = 0
    watch: int = 0
    critical_confirmed: int = 0
    moderate_confirmed: int = 0
    watch_confirmed: int = 0


NO_SIGNALS = SignalCounts()


# --------------------------------------------------------------------------------------------
# The org's schema


def relationship_name(field_name: str) -> str:
    """``AccountId`` → ``Account``; ``Account__c`` → ``Account__r``."""
    if field_name.endswith("__c"):
        return field_name[:-3] + "__r"
    return field_name[:-2] if field_name.endswith("Id") else field_name


def history_object(object_name: str) -> tuple[str, str]:
    """The field history object of ``object_name`` and its parent field (``AccountHistory`` /
    ``AccountId``; ``X__History`` / ``ParentId`` for a custom object ``X__c``)."""
    if object_name.casefold().endswith("__c"):
        return f"{object_name[:-3]}__History", "ParentId"
    return f"{object_name}History", f"{object_name}Id"


#: The users who own Accounts (``Account.OwnerId``, relationship ``Owner``).
USER_OBJECT = "User"
#: The stand-in's customer success managers, who own the Accounts.
OWNER_NAMES = (
    "Avery Lindqvist",
    "Bea O'Connor",
    "Chidi Okafor",
    "Dana Kowalski",
    "Eitan Mizrahi",
    "Farah Haddad",
    "Grace Nakamura",
    "Hugo Ferreira",
    "Ines Duarte",
    "Jonas Weber",
    "Keiko Sato",
    "Luis García",
)


def assign_owners(org: Org, rng: random.Random, account_object: str = "Account") -> None:
    """``User`` records (one per :data:`OWNER_NAMES`, enough for about 40 Accounts each) and
    every Account's ``OwnerId``, drawn from ``rng`` alone (the other records are untouched)."""
    users = org.get(USER_OBJECT)
    accounts = org.get(account_object)
    assert users is not None and accounts is not None
    count = min(len(OWNER_NAMES), max(3, math.ceil(len(accounts.records) / 40)))
    ids = [salesforce_id("005Sb", number + 1) for number in range(count)]
    for user_id, name in zip(ids, OWNER_NAMES, strict=False):
        users.records.append(
            {
                "Id": user_id,
                "Name": name,
                "Email": name.lower().replace(" ", ".").replace("'", "") + "@example.com",
                "IsActive": True,
                "IsDeleted": False,
                "CreatedDate": datetime(2020, 1, 6, 9, tzinfo=UTC),
            }
        )
    for record in accounts.records:
        record["OwnerId"] = rng.choice(ids)


def _lookup(name: str, target: str) -> FieldDef:
    return FieldDef(name, "reference", target, relationship_name(name))


def build_schema(section: SectionLike = None, *, history: bool = False) -> Org:
    """Objects and fields named as the settings expect them (plus a few standard ones).

    ``history``: the org of a sandbox that lives through time, which also has the Account's
    churn-date field and the churn signals' field history (their status changes).
    """
    settings = Settings.of(section)
    a, o, p = settings.account, settings.opportunity, settings.payment
    e, c = settings.event, settings.churn_signal
    base = (
        FieldDef("Id", "id"),
        FieldDef("IsDeleted", "boolean"),
        FieldDef("CreatedDate", "datetime"),
    )
    layouts: list[tuple[str, str, list[FieldDef]]] = [
        (
            a.object_name,
            "001",
            [
                FieldDef("Name", "string"),
                FieldDef("Type", "picklist"),
                FieldDef("OwnerId", "reference", USER_OBJECT, "Owner"),
                FieldDef(a.renewal_date_field, "date"),
                FieldDef(a.arr_field, "currency"),
                FieldDef(a.prior_year_arr_field, "currency"),
                FieldDef(a.support_tier_field, "picklist"),
                FieldDef(a.champion_changed_date_field, "date"),
                FieldDef(a.avg_response_hours_field, "double"),
            ],
        ),
        (
            USER_OBJECT,
            "005",
            [
                FieldDef("Name", "string"),
                FieldDef("Email", "email"),
                FieldDef("IsActive", "boolean"),
            ],
        ),
        (
            o.object_name,
            "006",
            [
                FieldDef("Name", "string"),
                _lookup(o.account_field, a.object_name),
                FieldDef(o.type_field, "picklist"),
                FieldDef("StageName", "picklist"),
                FieldDef(o.close_date_field, "date"),
                FieldDef(o.is_won_field, "boolean"),
                FieldDef(o.is_closed_field, "boolean"),
                FieldDef("Amount", "currency"),
            ],
        ),
        (
            p.object_name,
            "a0P",
            [
                FieldDef("Name", "string"),
                _lookup(p.account_field, a.object_name),
                FieldDef(p.status_field, "picklist"),
                FieldDef(p.date_field, "date"),
                FieldDef("Amount__c", "currency"),
            ],
        ),
        (
            e.object_name,
            "00U",
            [
                FieldDef("Subject", "string"),
                _lookup(e.account_field, a.object_name),
                _lookup("WhatId", a.object_name),
                FieldDef(e.type_field, "picklist"),
                FieldDef(e.date_field, "date"),
                FieldDef("ActivityDateTime", "datetime"),
                FieldDef(e.attended_field, "boolean"),
                FieldDef("IsChild", "boolean"),
                FieldDef("IsArchived", "boolean"),
            ],
        ),
        (
            c.object_name,
            "a0C",
            [
                FieldDef("Name", "string"),
                _lookup(c.account_field, a.object_name),
                FieldDef(c.severity_field, "picklist"),
                FieldDef(c.confidence_field, "picklist"),
                FieldDef(c.status_field, "picklist"),
                FieldDef("Detected_Date__c", "date"),
            ],
        ),
        (
            history_object(a.object_name)[0],
            "017",
            [
                _lookup(history_object(a.object_name)[1], a.object_name),
                FieldDef("Field", "picklist"),
                # anyType in Salesforce: the stand-in keeps each value's own type.
                FieldDef("OldValue", "string"),
                FieldDef("NewValue", "string"),
            ],
        ),
    ]
    # Objects only declarative metrics read (salesforce.custom_metrics): filled by
    # :func:`_extra_records`, from their own random stream.
    layouts.extend(
        [
            (
                "CSQL__c",
                "a0Q",
                [
                    FieldDef("Name", "string"),
                    _lookup("Account__c", a.object_name),
                    FieldDef("Status__c", "picklist"),
                    FieldDef("Qualified_Date__c", "date"),
                    FieldDef("Amount__c", "currency"),
                ],
            ),
            (
                "AccountContactRole",
                "02Z",
                [
                    _lookup("AccountId", a.object_name),
                    FieldDef("ContactId", "reference", "Contact"),
                    FieldDef("Role", "picklist"),
                    FieldDef("IsPrimary", "boolean"),
                ],
            ),
        ]
    )
    if history:
        layouts[0][2].append(FieldDef(a.churn_date_field, "date"))
        signal_history, parent = history_object(c.object_name)
        layouts.append(
            (
                signal_history,
                "a0H",
                [
                    _lookup(parent, c.object_name),
                    FieldDef("Field", "picklist"),
                    FieldDef("OldValue", "string"),
                    FieldDef("NewValue", "string"),
                ],
            )
        )
    org = Org()
    for name, prefix, fields in layouts:
        sobject = org.add(SObject(name, prefix, label=name.removesuffix("__c").replace("_", " ")))
        for definition in (*base, *fields):
            sobject.add_field(definition)
    return org


# --------------------------------------------------------------------------------------------
# Generated data


@dataclass
class Data:
    """The org, the mapped account ids, and what a correct extractor must return."""

    org: Org
    as_of: date
    mapped_ids: tuple[str, ...]  # 18-character ids of mapped accounts, in mapping order
    expected: dict[str, dict[str, Metric]]
    expected_signals: dict[str, SignalCounts]
    record_counts: dict[str, int] = field(default_factory=dict)
    #: What generation knew through time (a sandbox with history; None: the org of one date).
    history: History | None = None

    def expected_at(self, as_of: date, section: SectionLike = None) -> dict[str, dict[str, Metric]]:
        """The raw metrics of the period ending at ``as_of`` (midnight UTC), recounted from the
        records as a correct extractor reads them for that period: Accounts created before
        ``as_of`` with their tracked fields as they stood then, the dated records of the
        window, expansions open at ``as_of``."""
        if self.history is None:
            if as_of == self.as_of:
                return self.expected
            raise ValueError("only a Salesforce org generated with history knows past periods")
        return self.history.expected(self, as_of, section)

    def expected_signals_at(
        self, as_of: date, section: SectionLike = None
    ) -> dict[str, SignalCounts]:
        """account_id → the churn signals open (Active or Monitoring) at ``as_of``, counted as
        :class:`SignalCounts` says, for the mapped accounts in the org at that date."""
        if self.history is None:
            if as_of == self.as_of:
                return self.expected_signals
            raise ValueError("only a Salesforce org generated with history knows past periods")
        return self.history.signals_at(self, as_of, section)

    def outcomes_at(self, as_of: date) -> list[tuple[str, str, date, Decimal]]:
        """The renewals and churns known at ``as_of``: (account_id, ``"renewal"`` | ``"churn"``,
        day, ARR) for every closed renewal opportunity of a mapped account with a close date
        before ``as_of`` (Closed Won → renewal at the renewed ARR, Closed Lost → churn at the
        ARR lost), ordered by day then account."""
        settings = self.history.settings if self.history is not None else Settings()
        o = settings.opportunity
        owners = _owners_of(self)
        sobject = self.org.get(o.object_name)
        assert sobject is not None
        out: list[tuple[str, str, date, Decimal]] = []
        for record in sobject.records:
            close = record[o.close_date_field]
            if (
                record.get("IsDeleted")
                or record[o.type_field] not in o.renewal_types
                or not record[o.is_closed_field]
                or close >= as_of
            ):
                continue
            event = "renewal" if record[o.is_won_field] else "churn"
            amount = Decimal(repr(float(record["Amount"])))
            for owner in owners.get(record[o.account_field], ()):
                out.append((owner, event, close, amount))
        return sorted(out, key=lambda row: (row[2], row[0]))

    def minimum_requests(self, section: SectionLike = None) -> int:
        """One login, then each object once per id list the URI limit allows (one page each).

        Every such list holds at most :data:`MAX_IDS_PER_QUERY` accounts, so its Account page
        (one record per account) and its aggregates (a handful of groups per account) each fit
        in one response.
        """
        del section  # the caps are Salesforce's, not the configuration's
        if not self.mapped_ids:
            return 0
        return 1 + OBJECTS_READ * math.ceil(len(self.mapped_ids) / MAX_IDS_PER_QUERY)


def months_before(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


class _Ids:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def next(self, prefix: str) -> str:
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return salesforce_id(prefix + "Sb", self.counts[prefix])


def _count(rng: random.Random, target: float) -> int:
    """A whole count near ``target`` (stochastic rounding, never negative)."""
    return max(0, math.floor(max(target, 0.0) + rng.random()))


def _money(value: float) -> float:
    return round(value, 2)


def generate(portfolio: Portfolio, section: SectionLike = None) -> Data:
    """The org for ``portfolio`` (deterministic for its seed) and the expected metrics."""
    settings = Settings.of(section)
    rng = portfolio.rng("salesforce")
    org = build_schema(settings)
    as_of = portfolio.as_of
    window_start = months_before(as_of, settings.lookback_months)
    window_days = (as_of - window_start).days
    a, o, p = settings.account, settings.opportunity, settings.payment
    e, c = settings.event, settings.churn_signal
    accounts = org.get(a.object_name)
    opps = org.get(o.object_name)
    payments = org.get(p.object_name)
    events = org.get(e.object_name)
    signals = org.get(c.object_name)
    assert accounts and opps and payments and events and signals
    ids = _Ids()
    created = datetime(as_of.year - 3, 1, 15, 9, tzinfo=UTC)
    expected: dict[str, dict[str, Metric]] = {}
    expected_signals: dict[str, SignalCounts] = {}
    mapped: list[str] = []

    def day_in_window() -> date:
        return as_of - timedelta(days=rng.randint(3, window_days - 3))

    def day_before_window() -> date:
        return window_start - timedelta(days=rng.randint(20, 500))

    def opportunity(
        account_id: str, kind: str, stage: str, close: date, *, deleted: bool = False
    ) -> None:
        won, closed = stage == "Closed Won", stage.startswith("Closed")
        opps.records.append(
            {
                "Id": ids.next("006"),
                "Name": f"{kind} {close.isoformat()}",
                o.account_field: account_id,
                o.type_field: kind,
                "StageName": stage,
                o.close_date_field: close,
                o.is_won_field: won,
                o.is_closed_field: closed,
                "Amount": _money(rng.uniform(2_000, 90_000)),
                "IsDeleted": deleted,
                "CreatedDate": created,
            }
        )

    def event(account_id: str, kind: str, day: date, attended: bool) -> None:
        events.records.append(
            {
                # Salesforce archives Events older than a year: only queryAll returns them.
                "IsArchived": day < as_of - timedelta(days=ARCHIVE_AFTER_DAYS),
                "IsChild": False,
                "Id": ids.next("00U"),
                "Subject": f"{kind} {day.isoformat()}",
                e.account_field: account_id,
                "WhatId": account_id,
                e.type_field: kind,
                e.date_field: day,
                "ActivityDateTime": datetime(day.year, day.month, day.day, 15, tzinfo=UTC),
                e.attended_field: attended,
                "IsDeleted": False,
                "CreatedDate": created,
            }
        )

    def payment(account_id: str, status: str, day: date) -> None:
        payments.records.append(
            {
                "Id": ids.next("a0P"),
                "Name": f"PAY-{len(payments.records) + 1:07d}",
                p.account_field: account_id,
                p.status_field: status,
                p.date_field: day,
                "Amount__c": _money(rng.uniform(1_000, 40_000)),
                "IsDeleted": False,
                "CreatedDate": created,
            }
        )

    def signal(account_id: str, severity: str, confidence: str, status: str) -> None:
        signals.records.append(
            {
                "Id": ids.next("a0C"),
                "Name": f"CS-{len(signals.records) + 1:06d}",
                c.account_field: account_id,
                c.severity_field: severity,
                c.confidence_field: confidence,
                c.status_field: status,
                "Detected_Date__c": day_in_window(),
                "IsDeleted": False,
                "CreatedDate": created,
            }
        )

    severity_value = {
        "Critical": c.critical_values[0],
        "Moderate": c.moderate_values[0],
        "Watch": c.watch_values[0],
    }
    confirmed, suspected = c.confirmed_values[0], "Suspected"
    status_value = {"Active": c.active_values[0], "Monitoring": c.monitoring_values[0]}
    standard_tier = settings.tier_alignment.standard_tiers[0]
    threshold = float(settings.tier_alignment.arr_threshold)

    def draw_account(account_id: str, name: str, targets: dict[str, float]) -> None:
        t = targets.get
        # ARR and tier together: misaligned = a standard tier above the ARR threshold.
        trajectory = t("arr_trajectory_pct", 0.0) + rng.uniform(-1.0, 1.0)
        if rng.random() < t("tier_alignment", 0.0):
            tier, arr = standard_tier, rng.uniform(threshold * 1.05, threshold * 3)
        elif rng.random() < 0.5:
            tier, arr = standard_tier, rng.uniform(12_000, threshold * 0.95)
        else:
            tier, arr = rng.choice(("Premium", "Enterprise")), rng.uniform(40_000, threshold * 4)
        prior = _money(arr / (1 + trajectory / 100))
        renewal = as_of + timedelta(
            days=max(1, round(t("days_to_renewal", 120.0) + rng.uniform(-3, 3)))
        )
        champion = as_of - timedelta(
            days=max(1, round(t("champion_stability", 200.0) + rng.uniform(-3, 3)))
        )
        category = min(3, max(1, round(t("responsiveness", 1.5) + rng.uniform(-0.3, 0.3))))
        hours = {1: rng.uniform(1, 23), 2: rng.uniform(25, 47), 3: rng.uniform(49, 120)}[category]
        accounts.records.append(
            {
                "Id": account_id,
                "Name": name,
                "Type": "Customer",
                a.renewal_date_field: renewal if rng.random() >= 0.03 else None,
                a.arr_field: _money(arr),
                a.prior_year_arr_field: prior if rng.random() >= 0.05 else None,  # new logos
                a.support_tier_field: tier,
                a.champion_changed_date_field: champion if rng.random() >= 0.04 else None,
                a.avg_response_hours_field: round(hours, 1) if rng.random() >= 0.04 else None,
                "IsDeleted": False,
                "CreatedDate": created,
            }
        )
        # Opportunities: a yearly renewal, contractions, expansions, and some that must not count.
        opportunity(
            account_id, "Renewal", "Closed Won", as_of - timedelta(days=rng.randint(200, 330))
        )
        opportunity(account_id, "Renewal", "Negotiation", renewal)
        for _ in range(_count(rng, t("contract_changes", 0.0))):
            opportunity(account_id, rng.choice(o.contraction_types), "Closed Won", day_in_window())
        if rng.random() < 0.3:
            opportunity(account_id, o.contraction_types[0], "Closed Lost", day_in_window())
        if rng.random() < 0.3:
            opportunity(account_id, o.contraction_types[-1], "Closed Won", day_before_window())
        if rng.random() < 0.05:
            opportunity(
                account_id, o.contraction_types[0], "Closed Won", day_in_window(), deleted=True
            )
        for _ in range(_count(rng, t("expansion_signals", 0.0))):
            close = as_of + timedelta(days=rng.randint(10, 200))
            opportunity(
                account_id,
                rng.choice(o.expansion_types),
                rng.choice(("Prospecting", "Proposal")),
                close,
            )
        if rng.random() < 0.3:
            stage = rng.choice(("Closed Won", "Closed Lost"))
            opportunity(account_id, o.expansion_types[0], stage, day_in_window())
        # Payments: monthly in the window, some failed; older failures outside it.
        failed = _count(rng, t("payment_health", 0.0))
        months = settings.lookback_months
        failed_months = set(rng.sample(range(months), min(failed, months)))
        for month in range(months):
            day = months_before(as_of, months - month) + timedelta(days=rng.randint(0, 26))
            payment(account_id, p.failed_values[0] if month in failed_months else "Paid", day)
        for _ in range(rng.choice((0, 0, 1, 2))):
            payment(account_id, p.failed_values[0], day_before_window())
        # Events: QBRs in the window (attended or not), executive meetings, ordinary calls.
        if rng.random() >= 0.05:
            held = rng.choice((2, 3, 4, 4))
            attended = min(
                held,
                max(0, round(t("qbr_attendance_pct", 50.0) / 100 * held + rng.uniform(-0.3, 0.3))),
            )
            for index in range(held):
                day = as_of - timedelta(days=round((index + 0.5) * window_days / held))
                event(account_id, e.qbr_types[0], day, index < attended)
            event(account_id, e.qbr_types[0], as_of + timedelta(days=rng.randint(5, 80)), False)
            event(account_id, e.qbr_types[0], day_before_window(), True)
        if rng.random() >= 0.05:
            last = max(1, round(t("exec_engagement", 60.0) + rng.uniform(-3, 3)))
            event(account_id, e.exec_types[0], as_of - timedelta(days=last), True)
            for _ in range(rng.randint(0, 2)):
                event(
                    account_id,
                    e.exec_types[0],
                    as_of - timedelta(days=last + rng.randint(20, 300)),
                    True,
                )
            if rng.random() < 0.3:
                event(
                    account_id, e.exec_types[0], as_of + timedelta(days=rng.randint(3, 60)), False
                )
        for _ in range(rng.randint(1, 3)):
            event(account_id, "Call", day_in_window(), rng.random() < 0.8)

    for profile in portfolio.profiles:
        account = profile.account
        values: dict[str, Metric] = dict.fromkeys(METRICS)
        expected[account.account_id] = values
        if account.sf_account_id is None:
            continue
        account_id = to_id18(account.sf_account_id)
        mapped.append(account_id)
        if not profile.has("salesforce"):
            continue  # mapped, but the org has no such account
        draw_account(account_id, account.account_name, dict(profile.targets))
        for severity, confidence_name, status in profile.churn_signals:
            signal(
                account_id,
                severity_value[severity],
                confirmed if confidence_name == "Confirmed" else suspected,
                status_value[status],
            )
        if rng.random() < 0.05:
            signal(account_id, rng.choice(tuple(severity_value.values())), confirmed, "Resolved")
        expected_signals[account.account_id] = SignalCounts(**expected_signal_counts(profile))
    # Prospects and former customers nobody maps: their records must never be read.
    for number in range(max(3, len(portfolio.profiles) // 30)):
        prospect = salesforce_id("001Sc", number + 1)
        draw_account(prospect, f"Prospect {number + 1:04d}", {"contract_changes": 1.5})
        signal(prospect, severity_value["Critical"], confirmed, status_value["Active"])
    _invitees_and_deletions(
        portfolio.rng("salesforce-events"), events.records, ids, e.attended_field
    )
    history = org.get(history_object(a.object_name)[0])
    assert history is not None
    _field_history(
        portfolio.rng("salesforce-history"),
        accounts.records,
        history.records,
        a,
        ids,
        datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),
    )
    _extra_records(portfolio.rng("salesforce-extra"), org, a.object_name, ids, as_of)
    owners: dict[str, list[str]] = {}  # 18-character id → account_ids mapped to it
    for profile in portfolio.profiles:
        if profile.account.sf_account_id:
            owners.setdefault(to_id18(profile.account.sf_account_id), []).append(profile.account_id)
    for account_id, values in _expected(org, settings, as_of, set(mapped)).items():
        for owner in owners[account_id]:
            expected[owner].update(values)
    assign_owners(org, portfolio.rng("salesforce-owners"), a.object_name)
    counts = {sobject.name: len(sobject.records) for sobject in org.objects.values()}
    return Data(org, as_of, tuple(mapped), expected, expected_signals, counts)


#: How far back the stand-in's Account field history reaches (Salesforce keeps 18 months).
HISTORY_MONTHS = 24


#: CSQL__c statuses: the first two are open.
CSQL_STATUSES = ("New", "Working", "Converted", "Rejected")
CONTACT_ROLES = ("Champion", "Decision Maker", "Economic Buyer", "Technical Buyer")


def _extra_records(
    rng: random.Random, org: Org, account_object: str, ids: _Ids, as_of: date
) -> None:
    """CSQL__c and AccountContactRole records for every Account (prospects too), drawn from
    their own stream so the other objects (and the default metrics) are unchanged: 0–4 CSQLs
    and 1–4 contact roles each, created in the three years before ``as_of`` (a changed champion
    is a newer Champion role)."""
    accounts, csqls = org.get(account_object), org.get("CSQL__c")
    roles = org.get("AccountContactRole")
    assert accounts is not None and csqls is not None and roles is not None
    start = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)

    def moment() -> datetime:
        return start - timedelta(days=rng.randint(1, 1095), hours=rng.randint(0, 23))

    for account in accounts.records:
        for _ in range(rng.randint(0, 4)):
            created = moment()
            csqls.records.append(
                {
                    "Id": ids.next("a0Q"),
                    "Name": f"CSQL-{len(csqls.records) + 1:06d}",
                    "Account__c": account["Id"],
                    "Status__c": rng.choice(CSQL_STATUSES),
                    "Qualified_Date__c": created.date() + timedelta(days=rng.randint(0, 30)),
                    "Amount__c": _money(rng.uniform(1000, 50000)),
                    "IsDeleted": rng.random() < 0.05,
                    "CreatedDate": created,
                }
            )
        for _ in range(rng.randint(1, 4)):
            roles.records.append(
                {
                    "Id": ids.next("02Z"),
                    "AccountId": account["Id"],
                    "ContactId": salesforce_id("003Sb", rng.randint(1, 99999)),
                    "Role": rng.choice(CONTACT_ROLES),
                    "IsPrimary": rng.random() < 0.3,
                    "IsDeleted": False,
                    "CreatedDate": moment(),
                }
            )


def _field_history(
    rng: random.Random,
    accounts: list[dict[str, Any]],
    history: list[dict[str, Any]],
    fields: Any,
    ids: _Ids,
    now: datetime,
) -> None:
    """Up to three earlier values per tracked Account field, each change dated in the last
    :data:`HISTORY_MONTHS` months before ``now`` (the sandbox date); the latest change's new
    value is the field's current value."""
    tiers = ("Standard", "Premium", "Enterprise")

    def older(name: str, value: Any) -> Any:
        if name in (fields.arr_field, fields.prior_year_arr_field):
            return _money(float(value) * rng.uniform(0.7, 1.3))
        if name == fields.renewal_date_field:
            return value - timedelta(days=365)
        if name == fields.champion_changed_date_field:
            return value - timedelta(days=rng.randint(100, 600))
        if name == fields.support_tier_field:
            return rng.choice([t for t in tiers if t != value])
        return round(rng.uniform(1, 120), 1)

    tracked = (
        fields.renewal_date_field,
        fields.arr_field,
        fields.prior_year_arr_field,
        fields.support_tier_field,
        fields.champion_changed_date_field,
        fields.avg_response_hours_field,
    )
    parent = history_object(fields.object_name)[1]
    for account in accounts:
        for name in tracked:
            value = account.get(name)
            if value is None:
                continue
            moments = sorted(
                (
                    now - timedelta(minutes=rng.randint(60, HISTORY_MONTHS * 30 * 24 * 60))
                    for _ in range(rng.randint(0, 3))
                ),
                reverse=True,
            )
            for moment in moments:  # newest first, walking back from the current value
                previous = older(name, value)
                history.append(
                    {
                        "Id": ids.next("017"),
                        parent: account["Id"],
                        "Field": name,
                        "OldValue": previous,
                        "NewValue": value,
                        "IsDeleted": False,
                        "CreatedDate": moment,
                    }
                )
                value = previous


def _invitees_and_deletions(
    rng: random.Random, records: list[dict[str, Any]], ids: _Ids, attended_field: str
) -> None:
    """Group events: an attended event with invitees has one child copy (``IsChild``) per
    invitee, and a few events are deleted (in the recycle bin: only queryAll returns them).
    A separate random stream, so the rest of the org is the same as without them."""
    for record in list(records):
        if record["IsDeleted"] or record["IsChild"]:
            continue
        if record[attended_field] and rng.random() < 0.4:
            for _ in range(rng.randint(1, 3)):
                records.append({**record, "Id": ids.next("00U"), "IsChild": True})
        if rng.random() < 0.03:
            records.append({**record, "Id": ids.next("00U"), "IsDeleted": True})


def _expected(
    org: Org,
    settings: Settings,
    as_of: date,
    mapped: set[str],
    *,
    accounts: Iterable[dict[str, Any]] | None = None,
    open_at: bool = False,
) -> dict[str, dict[str, Metric]]:
    """Raw metrics per account id, straight from the records (the definitions, plainly).

    ``accounts``: the Account records as they stood at ``as_of`` (default: as they are now);
    ``open_at``: an expansion counts when it was open at ``as_of`` (created before it, and not
    closed or closed on or after it) rather than open now.
    """
    a, o, p = settings.account, settings.opportunity, settings.payment
    e = settings.event
    start = months_before(as_of, settings.lookback_months)

    def in_window(day: date | None) -> bool:
        return day is not None and start <= day < as_of

    def live(object_name: str) -> Iterable[dict[str, Any]]:
        sobject = org.get(object_name)
        assert sobject is not None
        return (r for r in sobject.records if not r.get("IsDeleted"))

    def open_then(record: dict[str, Any]) -> bool:
        if not open_at:
            return not record[o.is_closed_field]
        if record["CreatedDate"] >= datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC):
            return False
        return not record[o.is_closed_field] or record[o.close_date_field] >= as_of

    out: dict[str, dict[str, Metric]] = {}
    for record in live(a.object_name) if accounts is None else accounts:
        if record["Id"] not in mapped:
            continue
        renewal = record[a.renewal_date_field]
        arr, prior = record[a.arr_field], record[a.prior_year_arr_field]
        tier = record[a.support_tier_field]
        champion = record[a.champion_changed_date_field]
        hours = record[a.avg_response_hours_field]
        tiers = settings.tier_alignment
        fast, slow = (
            exact(settings.responsiveness.fast_below_hours),
            exact(settings.responsiveness.slow_above_hours),
        )
        category = None
        if hours is not None:
            average = exact(hours)
            category = 1 if average < fast else (2 if average <= slow else 3)
        out[record["Id"]] = {
            "days_to_renewal": Decimal((renewal - as_of).days) if renewal else None,
            "arr_trajectory_pct": rounded((exact(arr) - exact(prior)) / exact(prior) * 100)
            if arr is not None and prior
            else None,
            "tier_alignment": None
            if tier is None or arr is None
            else Decimal(
                int(tier in tiers.standard_tiers and exact(arr) > exact(tiers.arr_threshold))
            ),
            "champion_stability": Decimal((as_of - champion).days) if champion else None,
            "responsiveness": Decimal(category) if category is not None else None,
            "payment_health": Decimal(0),
            "contract_changes": Decimal(0),
            "expansion_signals": Decimal(0),
            "qbr_attendance_pct": None,
            "exec_engagement": None,
        }
    for record in live(p.object_name):
        values = out.get(record[p.account_field])
        if values and record[p.status_field] in p.failed_values and in_window(record[p.date_field]):
            values["payment_health"] = (values["payment_health"] or Decimal(0)) + 1
    for record in live(o.object_name):
        values = out.get(record[o.account_field])
        if values is None:
            continue
        kind = record[o.type_field]
        if (
            kind in o.contraction_types
            and record[o.is_won_field]
            and in_window(record[o.close_date_field])
        ):
            values["contract_changes"] = (values["contract_changes"] or Decimal(0)) + 1
        if kind in o.expansion_types and open_then(record):
            values["expansion_signals"] = (values["expansion_signals"] or Decimal(0)) + 1
    qbrs: dict[str, list[bool]] = {}
    last_exec: dict[str, date] = {}
    for record in live(e.object_name):
        if record.get("IsChild"):
            continue  # a group event counts once, not once per invitee
        account_id, day, kind = record[e.account_field], record[e.date_field], record[e.type_field]
        if kind in e.qbr_types and in_window(day):
            qbrs.setdefault(account_id, []).append(bool(record[e.attended_field]))
        if kind in e.exec_types and day < as_of:
            last_exec[account_id] = max(day, last_exec.get(account_id, day))
    for account_id, values in out.items():
        held = qbrs.get(account_id)
        if held:
            values["qbr_attendance_pct"] = percent(sum(held), len(held))
        if account_id in last_exec:
            values["exec_engagement"] = Decimal((as_of - last_exec[account_id]).days)
    return out


# --------------------------------------------------------------------------------------------
# Through time: one org whose records span a timeline's months


def _owners_of(data: Data) -> dict[str, list[str]]:
    """18-character id → the mapping's account_ids that name it."""
    if data.history is not None:
        return data.history.owners
    return {account_id: [account_id] for account_id in data.mapped_ids}


def _midnight(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@dataclass
class History:
    """What generation knew through time, independently of the history rows it wrote: each
    Account's creation and every value its tracked fields took (from when), each churn signal's
    statuses (from when). Past periods are recounted from this and the dated records."""

    settings: Settings
    account_ids: tuple[str, ...]  # every account of the mapping, in order
    owners: dict[str, list[str]]  # 18-character id → account_ids mapped to it
    created: dict[str, datetime]  # Account id → CreatedDate
    states: dict[str, list[tuple[datetime, str, Any]]]  # Account id → (from, field, value)
    signals: dict[str, tuple[str, str, str, list[tuple[datetime, str]]]] = field(
        default_factory=dict
    )  # signal id → (Account id, severity, confidence, [(from, status)])

    def accounts_at(self, data: Data, at: datetime) -> list[dict[str, Any]]:
        """The Account records that existed at ``at``, their tracked fields as they stood."""
        sobject = data.org.get(self.settings.account.object_name)
        assert sobject is not None
        out: list[dict[str, Any]] = []
        for record in sobject.records:
            created = self.created.get(record["Id"])
            if record.get("IsDeleted") or created is None or created >= at:
                continue
            stood = dict(record)
            for moment, name, value in self.states[record["Id"]]:
                if moment < at:
                    stood[name] = value
            out.append(stood)
        return out

    def expected(
        self, data: Data, as_of: date, section: SectionLike = None
    ) -> dict[str, dict[str, Metric]]:
        settings = self.settings if section is None else Settings.of(section)
        at = _midnight(as_of)
        out: dict[str, dict[str, Metric]] = {a: dict.fromkeys(METRICS) for a in self.account_ids}
        recount = _expected(
            data.org,
            settings,
            as_of,
            set(data.mapped_ids),
            accounts=self.accounts_at(data, at),
            open_at=True,
        )
        for account_id, values in recount.items():
            for owner in self.owners[account_id]:
                out[owner].update(values)
        return out

    def signals_at(
        self, data: Data, as_of: date, section: SectionLike = None
    ) -> dict[str, SignalCounts]:
        c = (self.settings if section is None else Settings.of(section)).churn_signal
        at = _midnight(as_of)
        mapped = set(data.mapped_ids)
        present = {r["Id"] for r in self.accounts_at(data, at) if r["Id"] in mapped}
        levels = {
            **dict.fromkeys(c.watch_values, 0),
            **dict.fromkeys(c.moderate_values, 1),
            **dict.fromkeys(c.critical_values, 2),
        }
        tallies: dict[str, dict[str, int]] = {}
        for account_id, severity, confidence, statuses in self.signals.values():
            if account_id not in present:
                continue
            then = [status for moment, status in statuses if moment < at]
            if not then:
                continue  # not detected yet
            status, level = then[-1], levels[severity]
            if status in c.monitoring_values:
                level -= 1  # a Monitoring signal counts one severity lower; Watch drops out
            elif status not in c.active_values:
                continue  # resolved
            if level < 0:
                continue
            name = ("watch", "moderate", "critical")[level]
            counts = tallies.setdefault(account_id, {})
            counts[name] = counts.get(name, 0) + 1
            if confidence in c.confirmed_values:
                counts[f"{name}_confirmed"] = counts.get(f"{name}_confirmed", 0) + 1
        out: dict[str, SignalCounts] = {}
        for account_id in sorted(present):
            for owner in self.owners[account_id]:
                out[owner] = SignalCounts(**tallies.get(account_id, {}))
        return out


def generate_history(
    timeline: Timeline, slices: Sequence[Portfolio], section: SectionLike = None
) -> Data:
    """The org of a sandbox that lives through ``timeline``: one record per Account whose
    tracked fields change when things happen (ARR and prior-year ARR at each renewal, the
    renewal date at each anniversary, the champion now and then, response hours as they drift,
    everything at churn) with an ``AccountHistory`` row per change; a renewal opportunity per
    anniversary (Closed Won or, at churn, Closed Lost); and each month's dated records
    (payments, events, contractions, expansions, churn signals) drawn from that month's slice
    and dated inside it. Accounts are created when they join; a churned account has its
    churn date and no activity from its churn month on.

    :attr:`Data.expected` is the sandbox date's; :meth:`Data.expected_at` recounts any period.
    """
    return _HistoryBuilder(timeline, list(slices), Settings.of(section)).build()


#: Per-month chances of the history's occasional records.
_QBR_CHANCE = 0.3
_NEW_SIGNAL_CHANCE = {76.0: 0.013, 60.0: 0.04, 0.0: 0.085}  # by the month's latent health


class _HistoryBuilder:
    def __init__(self, timeline: Timeline, slices_: list[Portfolio], settings: Settings) -> None:
        if len(slices_) != len(timeline.month_starts):
            raise ValueError("one slice per month of the timeline is needed")
        self.timeline, self.slices, self.settings = timeline, slices_, settings
        self.today = slices_[-1].as_of  # the sandbox date
        self.now = _midnight(self.today)
        self.starts = timeline.month_starts
        self.org = build_schema(settings, history=True)
        self.ids = _Ids()
        s = settings
        self.a, self.o, self.p = s.account, s.opportunity, s.payment
        self.e, self.c = s.event, s.churn_signal

        def sobject(name: str) -> SObject:
            found = self.org.get(name)
            assert found is not None
            return found

        self.accounts = sobject(self.a.object_name)
        self.opps = sobject(self.o.object_name)
        self.payments = sobject(self.p.object_name)
        self.events = sobject(self.e.object_name)
        self.signals = sobject(self.c.object_name)
        self.account_history = sobject(history_object(self.a.object_name)[0])
        self.signal_history = sobject(history_object(self.c.object_name)[0])
        self.states: dict[str, list[tuple[datetime, str, Any]]] = {}
        self.current: dict[str, dict[str, Any]] = {}  # Account id → its record
        self.created: dict[str, datetime] = {}
        self.signal_log: dict[str, tuple[str, str, str, list[tuple[datetime, str]]]] = {}
        self.tracked = (
            self.a.renewal_date_field,
            self.a.arr_field,
            self.a.prior_year_arr_field,
            self.a.support_tier_field,
            self.a.champion_changed_date_field,
            self.a.avg_response_hours_field,
        )
        self.standard = s.tier_alignment.standard_tiers[0]
        self.threshold = float(s.tier_alignment.arr_threshold)

    # -- records --------------------------------------------------------------------------------

    def opportunity(
        self,
        rng: random.Random,
        account_id: str,
        kind: str,
        stage: str,
        close: date,
        created: datetime,
        *,
        amount: float | None = None,
        deleted: bool = False,
    ) -> None:
        o = self.o
        self.opps.records.append(
            {
                "Id": self.ids.next("006"),
                "Name": f"{kind} {close.isoformat()}",
                o.account_field: account_id,
                o.type_field: kind,
                "StageName": stage,
                o.close_date_field: close,
                o.is_won_field: stage == "Closed Won",
                o.is_closed_field: stage.startswith("Closed"),
                "Amount": _money(rng.uniform(2_000, 90_000)) if amount is None else amount,
                "IsDeleted": deleted,
                "CreatedDate": created,
            }
        )

    def event(self, account_id: str, kind: str, day: date, attended: bool) -> None:
        e = self.e
        self.events.records.append(
            {
                "IsArchived": day < self.today - timedelta(days=ARCHIVE_AFTER_DAYS),
                "IsChild": False,
                "Id": self.ids.next("00U"),
                "Subject": f"{kind} {day.isoformat()}",
                e.account_field: account_id,
                "WhatId": account_id,
                e.type_field: kind,
                e.date_field: day,
                "ActivityDateTime": _midnight(day, 15),
                e.attended_field: attended,
                "IsDeleted": False,
                "CreatedDate": _midnight(min(day, self.today - timedelta(days=1)), 8),
            }
        )

    def payment(self, rng: random.Random, account_id: str, status: str, day: date) -> None:
        p = self.p
        self.payments.records.append(
            {
                "Id": self.ids.next("a0P"),
                "Name": f"PAY-{len(self.payments.records) + 1:07d}",
                p.account_field: account_id,
                p.status_field: status,
                p.date_field: day,
                "Amount__c": _money(rng.uniform(1_000, 40_000)),
                "IsDeleted": False,
                "CreatedDate": _midnight(day, 8),
            }
        )

    def signal(
        self,
        account_id: str,
        severity: str,
        confidence: str,
        detected: date,
        statuses: list[tuple[datetime, str]],
    ) -> None:
        """A churn signal detected on ``detected`` whose status changes as ``statuses`` say
        (the first is its status when detected); changes after the sandbox date have not
        happened yet."""
        c = self.c
        happened = [(moment, status) for moment, status in statuses if moment < self.now]
        signal_id = self.ids.next("a0C")
        self.signals.records.append(
            {
                "Id": signal_id,
                "Name": f"CS-{len(self.signals.records) + 1:06d}",
                c.account_field: account_id,
                c.severity_field: severity,
                c.confidence_field: confidence,
                c.status_field: happened[-1][1],
                "Detected_Date__c": detected,
                "IsDeleted": False,
                "CreatedDate": happened[0][0],
            }
        )
        self.signal_log[signal_id] = (account_id, severity, confidence, happened)
        parent = history_object(c.object_name)[1]
        for (_, old), (moment, new) in itertools.pairwise(happened):
            self.signal_history.records.append(
                {
                    "Id": self.ids.next("017"),
                    parent: signal_id,
                    "Field": c.status_field,
                    "OldValue": old,
                    "NewValue": new,
                    "IsDeleted": False,
                    "CreatedDate": moment,
                }
            )

    def change(self, account_id: str, moment: datetime, name: str, value: Any) -> None:
        """A tracked Account field takes ``value`` at ``moment`` (no row when it already has it)."""
        if self.current[account_id][name] == value:
            return
        self.current[account_id][name] = value  # the record as it is now
        self.states[account_id].append((moment, name, value))

    # -- accounts -------------------------------------------------------------------------------

    def build(self) -> Data:
        profiles = self.slices[-1].profiles
        mapped: list[str] = []
        owners: dict[str, list[str]] = {}
        drawn: list[tuple[int, str, AccountLife]] = []
        opening = self.slices[0].rng("salesforce-accounts")
        for index, profile in enumerate(profiles):
            sf_id = profile.account.sf_account_id
            if sf_id is None:
                continue
            account_id = to_id18(sf_id)
            mapped.append(account_id)
            owners.setdefault(account_id, []).append(profile.account_id)
            life = self.timeline.lives[profile.account_id]
            if account_id in self.current or not self._in_org(index, life):
                continue  # mapped, but the org has no such account
            self._open_account(opening, index, account_id, profile.account.account_name, life)
            drawn.append((index, account_id, life))
        self._before_history(drawn)
        for k, (start, end) in enumerate(zip(self.starts, self.timeline.as_ofs, strict=True)):
            rng = self.slices[k].rng("salesforce")
            for index, account_id, life in drawn:
                self._anniversaries(rng, k, index, account_id, life, start, end)
                if life.active(start):
                    targets = self.slices[k].profiles[index].targets
                    health = self.slices[k].profiles[index].health
                    self._month(rng, account_id, life, targets, start, end, health)
        closing = self.slices[-1].rng("salesforce-renewals")
        for _, account_id, life in drawn:
            if life.churned_on is None:
                self._open_renewal(closing, account_id, life)
        self._prospects(self.slices[-1].rng("salesforce-prospects"), len(profiles))
        _invitees_and_deletions(
            self.slices[-1].rng("salesforce-events"),
            self.events.records,
            self.ids,
            self.e.attended_field,
        )
        self._history_rows()
        assign_owners(self.org, self.slices[-1].rng("salesforce-owners"), self.a.object_name)
        history = History(
            self.settings,
            tuple(p.account_id for p in profiles),
            owners,
            dict(self.created),
            {k: sorted(v, key=lambda change: change[0]) for k, v in self.states.items()},
            self.signal_log,
        )
        counts = {sobject.name: len(sobject.records) for sobject in self.org.objects.values()}
        data = Data(self.org, self.today, tuple(mapped), {}, {}, counts, history)
        data.expected = history.expected(data, self.today)
        data.expected_signals = history.signals_at(data, self.today)
        return data

    def _in_org(self, index: int, life: AccountLife) -> bool:
        for k, start in enumerate(self.starts):
            if life.active(start):
                return self.slices[k].profiles[index].has("salesforce")
        return True  # churned at its first anniversary, before a whole month of activity

    def _first_month(self, life: AccountLife) -> int:
        return next((k for k, s in enumerate(self.starts) if life.active(s)), 0)

    def _open_account(
        self, rng: random.Random, index: int, account_id: str, name: str, life: AccountLife
    ) -> None:
        """The Account as it was created: before the history, or on the day it joined."""
        a = self.a
        t = self.slices[self._first_month(life)].profiles[index].targets.get
        joiner = life.joined > self.starts[0]
        trajectory = t("arr_trajectory_pct", 0.0) + rng.uniform(-1.0, 1.0)
        if rng.random() < t("tier_alignment", 0.0):
            tier, arr = self.standard, rng.uniform(self.threshold * 1.05, self.threshold * 3)
        elif rng.random() < 0.5:
            tier, arr = self.standard, rng.uniform(12_000, self.threshold * 0.95)
        else:
            tier = rng.choice(("Premium", "Enterprise"))
            arr = rng.uniform(40_000, self.threshold * 4)
        # A new logo has no prior-year ARR until its first renewal.
        prior = _money(arr / (1 + trajectory / 100)) if not joiner else None
        if prior is not None and rng.random() < 0.05:
            prior = None
        renewal = life.next_renewal(add_months(life.joined, 1) if joiner else self.starts[0])
        champion = (
            life.joined
            if joiner
            else self.starts[0]
            - timedelta(days=max(1, round(t("champion_stability", 200.0) + rng.uniform(-3, 3))))
        )
        category = min(3, max(1, round(t("responsiveness", 1.5) + rng.uniform(-0.3, 0.3))))
        created = _midnight(life.joined, 9) if joiner else _midnight(add_months(life.joined, -30))
        values = {
            a.renewal_date_field: renewal if rng.random() >= 0.03 else None,
            a.arr_field: _money(arr),
            a.prior_year_arr_field: prior,
            a.support_tier_field: tier,
            a.champion_changed_date_field: champion if rng.random() >= 0.04 else None,
            a.avg_response_hours_field: round(_hours(rng, category), 1)
            if rng.random() >= 0.04
            else None,
        }
        record = {
            "Id": account_id,
            "Name": name,
            "Type": "Customer",
            **values,
            a.churn_date_field: None,
            "IsDeleted": False,
            "CreatedDate": created,
        }
        self.accounts.records.append(record)
        self.created[account_id] = created
        self.current[account_id] = record
        self.states[account_id] = [(created, n, v) for n, v in values.items()]

    def _anniversaries(
        self,
        rng: random.Random,
        k: int,
        index: int,
        account_id: str,
        life: AccountLife,
        start: date,
        end: date,
    ) -> None:
        """The contract anniversary inside month ``k``, if any: renewed or churned.

        The timeline decides each anniversary a year or more after the account joined; one
        inside the history's first year of an account that was a customer before it is a
        renewal too (the account stays a customer)."""
        day = life.next_renewal(start)
        joiner = life.joined > self.starts[0]
        if day >= end or (joiner and day < add_months(life.joined, 12)):
            return
        if life.churned_on is not None and day > life.churned_on:
            return
        decided = {r.day: r.outcome for r in life.renewals}
        outcome = decided.get(day, "renewed")
        a, kind = self.a, self.o.renewal_types[0]
        state = self.current[account_id]
        moment = _midnight(day, 10)
        arr = state[a.arr_field]
        opened = max(self.created[account_id], _midnight(_year_before(day), 10))
        if outcome == "churned":
            self.opportunity(rng, account_id, kind, "Closed Lost", day, opened, amount=arr)
            self.change(account_id, moment, a.arr_field, 0.0)
            self.change(account_id, moment, a.renewal_date_field, None)
            state[a.churn_date_field] = day
            return
        t = self.slices[k].profiles[index].targets.get
        trajectory = t("arr_trajectory_pct", 0.0) + rng.uniform(-1.0, 1.0)
        renewed = _money(arr * (1 + trajectory / 100))
        self.opportunity(rng, account_id, kind, "Closed Won", day, opened, amount=renewed)
        self.change(account_id, moment, a.prior_year_arr_field, arr)
        self.change(account_id, moment, a.arr_field, renewed)
        if state[a.renewal_date_field] is not None:
            self.change(account_id, moment, a.renewal_date_field, _year_after(day))
        # The support tier may move with the new contract (a standard tier above the threshold
        # is the misalignment tier_alignment reports).
        tier = state[a.support_tier_field]
        if rng.random() < t("tier_alignment", 0.0):
            if renewed > self.threshold:
                tier = self.standard
        elif tier == self.standard and renewed > self.threshold:
            tier = rng.choice(("Premium", "Enterprise"))
        self.change(account_id, moment, a.support_tier_field, tier)

    def _open_renewal(self, rng: random.Random, account_id: str, life: AccountLife) -> None:
        """An active customer's renewal opportunity for its next anniversary, open."""
        day = life.next_renewal(self.today)
        opened = max(self.created[account_id], _midnight(_year_before(day), 10))
        arr = self.current[account_id][self.a.arr_field]
        kind = self.o.renewal_types[0]
        self.opportunity(rng, account_id, kind, "Negotiation", day, opened, amount=arr)

    # -- each month's records -------------------------------------------------------------------

    def _before_history(self, drawn: list[tuple[int, str, AccountLife]]) -> None:
        """The year before the history of the accounts that were customers then (drawn from
        the first month's targets), so the first periods' look-back windows hold records; and
        the renewal a year before the first anniversary inside the history."""
        rng = self.slices[0].rng("salesforce-before")
        first = self.starts[0]
        for index, account_id, life in drawn:
            if life.joined > first:
                continue
            targets = self.slices[0].profiles[index].targets
            for months in range(self.settings.lookback_months, 0, -1):
                start = add_months(first, -months)
                self._month(
                    rng, account_id, life, targets, start, add_months(start, 1), None, before=True
                )
            day = _year_before(life.next_renewal(first))
            arr = self.current[account_id][self.a.arr_field]
            opened = max(self.created[account_id], _midnight(_year_before(day), 10))
            kind = self.o.renewal_types[0]
            self.opportunity(rng, account_id, kind, "Closed Won", day, opened, amount=arr)

    def _month(
        self,
        rng: random.Random,
        account_id: str,
        life: AccountLife,
        targets: Mapping[str, float],
        start: date,
        end: date,
        health: float | None,
        *,
        before: bool = False,
    ) -> None:
        """One active month ``[start, end)`` of one account: every record dated inside it
        (expansions and signals may close or resolve later, never after the account churned;
        the sandbox's last month also schedules the next QBR). ``before``: a month before the
        history (no field changes, no signals)."""
        t = targets.get
        a, o, e = self.a, self.o, self.e
        days = (end - start).days

        def day_in_month() -> date:
            return start + timedelta(days=rng.randrange(days))

        # Activity stops at the churn month's start; nothing is planned past it.
        stop = date(life.churned_on.year, life.churned_on.month, 1) if life.churned_on else None
        # Payments: one a month, some failed.
        failed = rng.random() < t("payment_health", 0.0) / 12
        payment_day = start + timedelta(days=rng.randint(0, min(26, days - 1)))
        self.payment(rng, account_id, self.p.failed_values[0] if failed else "Paid", payment_day)
        # Contractions closed won this month, and some that must not count.
        for _ in range(_count(rng, t("contract_changes", 0.0) / 12)):
            day = day_in_month()
            kind = rng.choice(o.contraction_types)
            self.opportunity(rng, account_id, kind, "Closed Won", day, _midnight(day, 9))
        if rng.random() < 0.03:
            day = day_in_month()
            kind = o.contraction_types[0]
            self.opportunity(rng, account_id, kind, "Closed Lost", day, _midnight(day, 9))
        if rng.random() < 0.005:
            day = day_in_month()
            kind = o.contraction_types[0]
            self.opportunity(
                rng, account_id, kind, "Closed Won", day, _midnight(day, 9), deleted=True
            )
        # Expansions opened this month; each stays open a few months, then closes (unless the
        # sandbox date comes first: then it is open, its close date still ahead).
        for _ in range(_count(rng, t("expansion_signals", 0.0) / 4.5)):
            opened = day_in_month()
            close = opened + timedelta(days=rng.randint(30, 240))
            kind = rng.choice(o.expansion_types)
            if stop is not None and close >= stop:
                close = max(opened, stop - timedelta(days=1))
                stage = "Closed Lost"
            elif close < self.today:
                stage = rng.choice(("Closed Won", "Closed Lost"))
            else:
                stage = rng.choice(("Prospecting", "Proposal"))
            self.opportunity(rng, account_id, kind, stage, close, _midnight(opened, 9))
        # Events: a QBR now and then, executive meetings as often as the target says, calls.
        if rng.random() < _QBR_CHANCE:
            attended = rng.random() < t("qbr_attendance_pct", 50.0) / 100
            self.event(account_id, e.qbr_types[0], day_in_month(), attended)
        gap = max(1.0, t("exec_engagement", 60.0))
        if rng.random() < min(0.95, max(0.05, 30 / gap)):
            self.event(account_id, e.exec_types[0], day_in_month(), True)
        for _ in range(rng.randint(0, 2)):
            self.event(account_id, "Call", day_in_month(), rng.random() < 0.8)
        if end == self.today and not before:
            self.event(
                account_id, e.qbr_types[0], self.today + timedelta(days=rng.randint(5, 80)), False
            )
        if before or health is None:
            return
        # Tracked fields: a new champion now and then; response hours as the month's target says.
        state = self.current[account_id]
        champion = max(1.0, t("champion_stability", 200.0))
        if state[a.champion_changed_date_field] is not None and rng.random() < min(
            0.5, max(0.02, 30 / champion)
        ):
            day = day_in_month()
            self.change(account_id, _midnight(day, 11), a.champion_changed_date_field, day)
        hours = state[a.avg_response_hours_field]
        category = min(3, max(1, round(t("responsiveness", 1.5) + rng.uniform(-0.3, 0.3))))
        if hours is not None and _category(hours) != category and rng.random() < 0.5:
            moment = _midnight(day_in_month(), 12)
            self.change(
                account_id, moment, a.avg_response_hours_field, round(_hours(rng, category), 1)
            )
        # Churn signals: detected this month, more often the unhealthier the account; each stays
        # open a while (perhaps moving to Monitoring), then is resolved — at the latest on the
        # churn day.
        chance = next(v for floor, v in _NEW_SIGNAL_CHANCE.items() if health >= floor)
        if rng.random() < chance:
            self._new_signal(rng, account_id, life, day_in_month())

    def _new_signal(
        self, rng: random.Random, account_id: str, life: AccountLife, detected: date
    ) -> None:
        c = self.c
        severity = rng.choices(
            (c.critical_values[0], c.moderate_values[0], c.watch_values[0]), (0.35, 0.4, 0.25)
        )[0]
        confidence = c.confirmed_values[0] if rng.random() < 0.5 else "Suspected"
        first = rng.choices((c.active_values[0], c.monitoring_values[0]), (0.7, 0.3))[0]
        moment = _midnight(detected, 8)
        resolved = moment + timedelta(days=rng.randint(20, 200), hours=6)
        if life.churned_on is not None:
            resolved = min(resolved, _midnight(life.churned_on, 12))
        statuses = [(moment, first)]
        if first in c.active_values and rng.random() < 0.3:
            statuses.append((moment + (resolved - moment) / 2, c.monitoring_values[0]))
        statuses.append((resolved, c.resolved_values[0]))
        self.signal(account_id, severity, confidence, detected, statuses)

    def _prospects(self, rng: random.Random, accounts: int) -> None:
        """Prospects and former customers nobody maps: their records must never be read."""
        start = self.starts[-1]
        for number in range(max(3, accounts // 30)):
            prospect = salesforce_id("001Sc", number + 1)
            created = _midnight(add_months(self.starts[0], -6))
            self.accounts.records.append(
                {
                    "Id": prospect,
                    "Name": f"Prospect {number + 1:04d}",
                    "Type": "Prospect",
                    self.a.renewal_date_field: None,
                    self.a.arr_field: None,
                    self.a.prior_year_arr_field: None,
                    self.a.support_tier_field: None,
                    self.a.champion_changed_date_field: None,
                    self.a.avg_response_hours_field: round(rng.uniform(1, 120), 1),
                    self.a.churn_date_field: None,
                    "IsDeleted": False,
                    "CreatedDate": created,
                }
            )
            day = start + timedelta(days=rng.randint(0, 20))
            kind = self.o.contraction_types[0]
            self.opportunity(rng, prospect, kind, "Closed Won", day, _midnight(day, 9))
            critical, confirmed = self.c.critical_values[0], self.c.confirmed_values[0]
            active = self.c.active_values[0]
            self.signal(prospect, critical, confirmed, day, [(_midnight(day, 8), active)])

    def _history_rows(self) -> None:
        """``AccountHistory``: a row per change of a tracked field after the Account was
        created, kept for :data:`HISTORY_MONTHS` months before the sandbox date."""
        parent = history_object(self.a.object_name)[1]
        kept_from = _midnight(months_before(self.today, HISTORY_MONTHS))
        for account_id, changes in self.states.items():
            created = self.created[account_id]
            previous: dict[str, Any] = {}
            for moment, name, value in sorted(changes, key=lambda change: change[0]):
                if moment > created and moment >= kept_from:
                    self.account_history.records.append(
                        {
                            "Id": self.ids.next("017"),
                            parent: account_id,
                            "Field": name,
                            "OldValue": previous.get(name),
                            "NewValue": value,
                            "IsDeleted": False,
                            "CreatedDate": moment,
                        }
                    )
                previous[name] = value


def _hours(rng: random.Random, category: int) -> float:
    """Average response hours in a responsiveness category (1: < 24, 2: 24–48, 3: > 48)."""
    return {1: rng.uniform(1, 23), 2: rng.uniform(25, 47), 3: rng.uniform(49, 120)}[category]


def _category(hours: float) -> int:
    return 1 if hours < 24 else (2 if hours <= 48 else 3)


def _year_before(day: date) -> date:
    return date(day.year - 1, day.month, min(day.day, 28))


def _year_after(day: date) -> date:
    return date(day.year + 1, day.month, min(day.day, 28))


# --------------------------------------------------------------------------------------------
# The server


_DATA_PATH = re.compile(r"^/services/data(?:/v(\d+)\.0(/.*)?)?/?$")
_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_SOAP_PATH = re.compile(r"^/services/Soap/u/(\d+\.\d)(?:/.*)?$")
_FOLD = re.compile(r"/(?:[A-Za-z0-9]{15}|[A-Za-z0-9]{18})(?:-\d+)?(?=/|$)")
_GENERIC_CODES = {
    400: "BAD_REQUEST",
    401: "INVALID_SESSION_ID",
    404: "NOT_FOUND",
    500: "UNKNOWN_EXCEPTION",
    502: "SERVER_UNAVAILABLE",
    503: "SERVER_UNAVAILABLE",
}


def _xml_value(body: str, tag: str) -> str | None:
    match = re.search(rf"<(?:\w+:)?{tag}>(.*?)</(?:\w+:)?{tag}>", body, re.DOTALL)
    return html.unescape(match.group(1)) if match else None


def _sf_error(status: int, code: str, message: str) -> Response:
    return Response(status, [{"message": message, "errorCode": code}])


@dataclass
class _Cursor:
    rows: list[dict[str, Any]]
    total: int
    batch: int


class App(VendorApp):
    """Salesforce's REST API (read side) and logins over the generated org."""

    name = "salesforce"

    def __init__(self, data: Data, section: SectionLike = None) -> None:
        super().__init__()
        self.data = data
        self.settings = Settings.of(section)
        self.org = data.org
        self.daily_api_limit = DEFAULT_DAILY_API_LIMIT
        self.api_usage = 0
        self.client_id = FAKE_CLIENT_ID
        self.client_secret = FAKE_CLIENT_SECRET
        self.username = FAKE_USERNAME
        self.password = FAKE_PASSWORD
        self.security_token = FAKE_SECURITY_TOKEN
        #: PEM public key accepted for OAuth 2.0 JWT bearer assertions (None: flow refused).
        self.jwt_public_key: bytes | None = None
        #: errorCode of the too-many-groups refusal (its message is fixed; its code is not
        #: something a client may rely on).
        self.aggregate_cap_code = "MALFORMED_QUERY"
        self.tokens: dict[str, int] = {}  # session id → authorised calls made with it
        self.logins = 0
        self.writes = WriteApi()
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        #: The SOQL of every query received (the latest QUERY_LOG), for tests to read.
        self.queries: deque[str] = deque(maxlen=QUERY_LOG)
        self._sequence = 0
        self._lock = threading.Lock()

    # -- knobs ----------------------------------------------------------------------------------

    def drop_field(self, object_name: str, field_name: str) -> None:
        """Remove a field from the org (queries naming it then fail with INVALID_FIELD)."""
        sobject = self.org.get(object_name)
        if sobject is not None:
            sobject.drop_field(field_name)

    def drop_object(self, object_name: str) -> None:
        """Remove an object from the org (queries on it then fail with INVALID_TYPE)."""
        self.org.drop_object(object_name)

    # -- vendor shapes --------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str) -> Response:
        if code == code.lower():  # the shared server's generic codes → Salesforce's
            code = _GENERIC_CODES.get(status, "UNKNOWN_EXCEPTION")
        return _sf_error(status, code, message)

    def too_many_requests(self, retry_after: float, reset_epoch: float) -> Response:
        response = _sf_error(
            429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
        )
        response.headers["Retry-After"] = f"{max(retry_after, 1):.0f}"
        return response

    def unauthorized(self) -> Response:
        return _sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def decorate(
        self, response: Response, limit: int | None, remaining: int | None, reset_epoch: float
    ) -> None:
        response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_usage}/{self.daily_api_limit}"

    def endpoint_label(self, request: Request) -> str:
        return f"{request.method} {_FOLD.sub('/{id}', request.path)}"

    # -- routing --------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path
        is_login = path.rstrip("/") == "/services/oauth2/token" or (
            _SOAP_PATH.match(path) is not None and request.method == "POST"
        )
        if is_login and self.faults.login_status is not None:
            return self.login_outage(path, self.faults.login_status)
        if path.rstrip("/") == "/services/oauth2/token":
            if request.method != "POST":
                return self.error(405, "METHOD_NOT_ALLOWED", "HTTP Method 'GET' not allowed")
            return self.oauth_token(request)
        soap = _SOAP_PATH.match(path)
        if soap and request.method == "POST":
            return self.soap_login(request, soap.group(1))
        match = _DATA_PATH.match(path)
        if match is None:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        if match.group(1) is None:
            return Response(200, [self._version_info(v) for v in range(*SUPPORTED_VERSIONS)])
        version = int(match.group(1))
        if not SUPPORTED_VERSIONS[0] <= version <= SUPPORTED_VERSIONS[1]:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        target = len(path) + (1 + len(urlencode(request.query, doseq=True)) if request.query else 0)
        if target > URI_LIMIT:
            return self.error(
                414, "URI_TOO_LONG", f"The length of the URI exceeds the {URI_LIMIT} byte limit"
            )
        self.authorise(request)
        self.charge()
        subpath = match.group(2) or ""
        written = self.writes.handle(request, subpath)
        if written is not None:
            return written
        return self.read(request, f"{version}.0", [p for p in subpath.split("/") if p])

    def read(self, request: Request, version: str, parts: list[str]) -> Response:
        if request.method != "GET":
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        if parts and parts[0] in ("query", "queryAll"):
            if len(parts) == 1:
                return self.query(request, version, parts[0])
            if len(parts) == 2:
                return self.query_more(version, parts[1], parts[0])
        if parts == ["limits"]:
            used = self.api_usage
            return Response(
                200,
                {
                    "DailyApiRequests": {
                        "Max": self.daily_api_limit,
                        "Remaining": max(self.daily_api_limit - used, 0),
                    }
                },
            )
        if len(parts) == 3 and parts[0] == "sobjects" and parts[2] == "describe":
            return self.describe(parts[1])
        if len(parts) == 3 and parts[0] == "sobjects":
            return self.record(version, parts[1], parts[2])
        return self.error(404, "NOT_FOUND", "The requested resource does not exist")

    # -- auth -----------------------------------------------------------------------------------

    def _issue_token(self) -> str:
        with self._lock:
            self.logins += 1
            token = f"{ORG_ID[:15]}!AQ{self.logins:06d}.sandbox.session"
            self.tokens[token] = 0
        return token

    def login_outage(self, path: str, status: int) -> Response:
        """A login endpoint failing: SOAP's generic server fault in a 500, else a plain page."""
        if status == 500 and path.startswith("/services/Soap/"):
            fault = (
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
                "<faultcode>sf:UNKNOWN_EXCEPTION</faultcode><faultstring>UNKNOWN_EXCEPTION: An "
                "unexpected error occurred. Please include this ErrorId if you contact support"
                "</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
            )
            return Response(500, fault, content_type="text/xml; charset=utf-8")
        page = f"<html><body><h1>{status} Service Unavailable</h1></body></html>"
        return Response(status, page, content_type="text/html; charset=utf-8")

    def oauth_token(self, request: Request) -> Response:
        form = request.form()
        grant = form.get("grant_type")
        host = (request.header("Host") or "").rsplit(":", 1)[0].lower()
        if grant == "client_credentials" and host in GENERIC_LOGIN_HOSTS:
            # Salesforce takes the client credentials flow only on the org's My Domain.
            return Response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "request not supported on this domain",
                },
            )
        if grant == "client_credentials":
            ok = (
                form.get("client_id") == self.client_id
                and form.get("client_secret") == self.client_secret
            )
            if not ok or self.faults.auth_rejected:
                return Response(
                    400,
                    {"error": "invalid_client", "error_description": "invalid client credentials"},
                )
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            if not self._jwt_ok(form.get("assertion", "")) or self.faults.auth_rejected:
                return Response(
                    400, {"error": "invalid_grant", "error_description": "invalid assertion"}
                )
        else:
            return Response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
            )
        assert self.server is not None
        token = self._issue_token()
        return Response(
            200,
            {
                "access_token": token,
                "signature": "c2FuZGJveA==",
                "scope": "api",
                "instance_url": self.server.url,
                "id": f"{self.server.url}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
            },
        )

    def _jwt_ok(self, assertion: str) -> bool:
        if self.jwt_public_key is None or not assertion:
            return False
        import jwt  # PyJWT comes with simple-salesforce; only this optional flow needs it

        try:
            claims = jwt.decode(
                assertion,
                self.jwt_public_key,
                algorithms=["RS256"],
                options={"require": ["iss", "sub", "aud", "exp"], "verify_aud": False},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("iss") == self.client_id and claims.get("sub") == self.username)

    def soap_login(self, request: Request, version: str) -> Response:
        body = request.body.decode("utf-8", "replace")
        username, password = _xml_value(body, "username"), _xml_value(body, "password")
        assert self.server is not None
        if (
            username != self.username
            or password != self.password + self.security_token
            or self.faults.auth_rejected
        ):
            fault = (
                '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
                'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
                'xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
                "<faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid "
                "username, password, security token; or user locked out.</faultstring>"
                "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
            )
            return Response(500, fault, content_type="text/xml; charset=utf-8")
        token = self._issue_token()
        url = self.server.url
        result = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
            f"<metadataServerUrl>{url}/services/Soap/m/{version}/{ORG_ID[:15]}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{url}/services/Soap/u/{version}/{ORG_ID[:15]}</serverUrl>"
            f"<sessionId>{html.escape(token)}</sessionId><userId>{USER_ID}</userId>"
            f"<userInfo><organizationId>{ORG_ID}</organizationId><userName>{html.escape(self.username)}"
            "</userName></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(200, result, content_type="text/xml; charset=utf-8")

    def authorise(self, request: Request) -> None:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        with self._lock:
            uses = self.tokens.get(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
            expiry = self.faults.token_expiry_after
            if uses is None or self.faults.auth_rejected or (expiry is not None and uses >= expiry):
                raise HttpError(self.unauthorized())
            self.tokens[token.strip()] = uses + 1

    def charge(self) -> None:
        """Count one API call against the daily allowance, or refuse when it is spent."""
        with self._lock:
            if self.api_usage >= self.daily_api_limit:
                raise HttpError(
                    _sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                )
            self.api_usage += 1

    # -- reads ----------------------------------------------------------------------------------

    def _version_info(self, version: int) -> dict[str, str]:
        return {
            "label": f"v{version}.0",
            "url": f"/services/data/v{version}.0",
            "version": f"{version}.0",
        }

    def query(self, request: Request, version: str, endpoint: str) -> Response:
        soql = request.arg("q")
        if soql is None:
            return self.error(400, "MALFORMED_QUERY", "A query string must be provided")
        self.queries.append(soql)
        try:
            result = execute(
                self.org,
                soql,
                today=self.data.as_of,
                version=version,
                include_deleted=endpoint == "queryAll",
            )
        except SoqlError as exc:
            body = exc.body()
            if exc.message == AGGREGATE_CAP_MESSAGE:
                body[0]["errorCode"] = self.aggregate_cap_code
            return Response(exc.status, body)
        batch = PAGE_SIZE
        options = request.header("Sforce-Query-Options") or ""
        size = re.search(r"batchSize=(\d+)", options)
        if size and MIN_BATCH_SIZE <= int(size.group(1)) <= PAGE_SIZE:
            batch = int(size.group(1))
        if result.aggregate or len(result.records) <= batch:
            return Response(
                200, {"totalSize": result.total_size, "done": True, "records": result.records}
            )
        with self._lock:
            self._sequence += 1
            locator = salesforce_id("01gSb", self._sequence)
            self._cursors[locator] = _Cursor(result.records, result.total_size, batch)
            while len(self._cursors) > MAX_CURSORS:
                self._cursors.popitem(last=False)
        return self._page(version, endpoint, locator, 0)

    def query_more(self, version: str, locator_and_offset: str, endpoint: str) -> Response:
        locator, _, offset = locator_and_offset.partition("-")
        with self._lock:
            cursor = self._cursors.get(locator)
        if (
            cursor is None
            or not offset.isdigit()
            or int(offset) % cursor.batch
            or int(offset) >= len(cursor.rows)
        ):
            return self.error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(version, endpoint, locator, int(offset))

    def _page(self, version: str, endpoint: str, locator: str, offset: int) -> Response:
        cursor = self._cursors[locator]
        end = offset + cursor.batch
        body: dict[str, Any] = {
            "totalSize": cursor.total,
            "done": end >= len(cursor.rows),
            "records": cursor.rows[offset:end],
        }
        if end < len(cursor.rows):
            body["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{locator}-{end}"
        return Response(200, body)

    def record(self, version: str, object_name: str, record_id: str) -> Response:
        """``GET /sobjects/{Object}/{Id}``: every field of one record (or one written)."""
        sobject = self.org.get(object_name)
        if sobject is not None and _ID.fullmatch(record_id):
            columns = ", ".join(sobject.fields)
            try:
                found = execute(
                    self.org,
                    f"SELECT {columns} FROM {sobject.name} WHERE Id = '{record_id}'",  # noqa: S608 - validated id
                    today=self.data.as_of,
                    version=version,
                ).records
            except SoqlError:
                found = []
            if found:
                return Response(200, found[0])
        written = self.writes.stored(object_name, record_id)
        if written is not None:
            url = f"/services/data/v{version}/sobjects/{object_name}/{written['Id']}"
            return Response(200, {"attributes": {"type": object_name, "url": url}, **written})
        return self.error(404, "NOT_FOUND", "The requested resource does not exist")

    def describe(self, object_name: str) -> Response:
        sobject = self.org.get(object_name)
        if sobject is None:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        types = {"reference": "reference", "id": "id", "picklist": "picklist"}
        fields = [
            {
                "name": f.name,
                "type": types.get(f.type, f.type),
                "label": f.label or f.name.removesuffix("__c").replace("_", " "),
                "length": 255
                if f.type in ("string", "picklist")
                else 18
                if f.type in ("id", "reference")
                else 0,
                "createable": f.type != "id" and not f.name.startswith("Is"),
                "updateable": f.type != "id" and not f.name.startswith("Is"),
                "nillable": f.type not in ("id", "boolean"),
                "unique": False,
                "externalId": False,
                "referenceTo": [f.reference_to] if f.reference_to else [],
                **({"relationshipName": f.relationship_name} if f.relationship_name else {}),
            }
            for f in sobject.fields.values()
        ]
        return Response(
            200,
            {
                "name": sobject.name,
                "label": sobject.label or sobject.name,
                "labelPlural": (sobject.label or sobject.name) + "s",
                "keyPrefix": sobject.key_prefix,
                "custom": sobject.name.endswith("__c"),
                "createable": True,
                "updateable": True,
                "deletable": True,
                "queryable": True,
                "fields": fields,
            },
        )


def environment(url: str, ca_bundle: str) -> dict[str, str]:
    """Variables that point the pipeline at this stand-in (OAuth client credentials)."""
    return {
        "SF_LOGIN_URL": url,
        "SF_CLIENT_ID": FAKE_CLIENT_ID,
        "SF_CLIENT_SECRET": FAKE_CLIENT_SECRET,
        "SF_CA_BUNDLE": ca_bundle,
    }


def login(
    session: requests.Session, url: str, *, verify: str | bool | None = None
) -> tuple[str, str]:
    """Log in to this stand-in with its fake client credentials: (instance_url, access token).

    For tests and benchmarks that talk to the stand-in directly rather than through the
    extractor or loader (which have authentication code of their own).
    """
    answer = session.post(
        f"{url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": FAKE_CLIENT_ID,
            "client_secret": FAKE_CLIENT_SECRET,
        },
        timeout=10,
        verify=session.verify if verify is None else verify,
    )
    answer.raise_for_status()
    body = answer.json()
    return str(body["instance_url"]), str(body["access_token"])
