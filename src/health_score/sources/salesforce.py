"""Salesforce: financial and relationship metrics and churn signals, read with SOQL.

One pass over all mapped accounts: the account ids are validated and widened to 18 characters
(:mod:`health_score.salesforce_ids`, the rule the mapping check and the loader use too) and
split into id lists of ``id_chunk_size``; for each list five queries run concurrently — Account
fields, an Opportunity aggregate (contract changes, open expansions), a payment aggregate (failed
payments), an Event aggregate (QBR attendance, last executive touch) and a ``Churn_Signal__c``
aggregate. Object and field names come from ``sources.yaml``; every literal in a query is escaped
(:func:`soql_literal`, :func:`soql_id_list`) and identifiers are validated API names.

An object or field the org does not have (``INVALID_TYPE`` / ``INVALID_FIELD``) turns the metrics
that need it into *missing* for every account — said once in the result and the log — and the
query is rebuilt without it. The first id list of each query settles this before the others run,
so a missing field costs one extra request, not one per list.

Logins, an expired session, errors, API usage and ``nextRecordsUrl`` paging are the shared
:class:`~health_score.sources.salesforce_client.SalesforceClient`'s (the loader uses it too).
"""

from __future__ import annotations

import calendar
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import pydantic
import requests

from health_score.loaders.salesforce_settings import MOVED as WRITEBACK_MOVED
from health_score.numbers import to_decimal
from health_score.records import NO_SIGNALS, Account, MetricValue, SignalCounts, metric_value
from health_score.salesforce_ids import salesforce_id18
from health_score.sources import salesforce_auth as auth
from health_score.sources.base import SourceResult
from health_score.sources.http import AuthenticationError, SourceError
from health_score.sources.http_policy import HttpSettings
from health_score.sources.salesforce_client import (
    NO_CREDENTIALS,
    SalesforceApiError,
    SalesforceClient,
)

log = logging.getLogger(__name__)

#: An object or field API name: the only identifiers ever placed in SOQL.
ApiName = Annotated[str, pydantic.StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")]
#: A picklist value used as a SOQL literal (escaped when the query is built).
PicklistValue = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=255)]
Values = Annotated[tuple[PicklistValue, ...], pydantic.Field(min_length=1)]

_MODEL = pydantic.ConfigDict(extra="forbid", frozen=True)


class AccountFields(pydantic.BaseModel):
    """Account fields: renewal, ARR, support tier and the relationship fields."""

    model_config = _MODEL

    object_name: ApiName = "Account"
    renewal_date_field: ApiName = "Renewal_Date__c"
    arr_field: ApiName = "ARR__c"
    prior_year_arr_field: ApiName = "Prior_Year_ARR__c"
    support_tier_field: ApiName = "Support_Tier__c"
    champion_changed_date_field: ApiName = "Champion_Changed_Date__c"
    avg_response_hours_field: ApiName = "Avg_Response_Hours__c"


class OpportunityFields(pydantic.BaseModel):
    """Opportunities: closed-won contractions in the look-back window, open expansions."""

    model_config = _MODEL

    object_name: ApiName = "Opportunity"
    account_field: ApiName = "AccountId"
    type_field: ApiName = "Type"
    close_date_field: ApiName = "CloseDate"
    is_won_field: ApiName = "IsWon"
    is_closed_field: ApiName = "IsClosed"
    contraction_types: Values = ("Downgrade", "Contraction")
    expansion_types: Values = ("Expansion", "Upsell")


class PaymentFields(pydantic.BaseModel):
    """The payment object: failed payments in the look-back window."""

    model_config = _MODEL

    object_name: ApiName = "Payment__c"
    account_field: ApiName = "Account__c"
    status_field: ApiName = "Status__c"
    date_field: ApiName = "Payment_Date__c"
    failed_values: Values = ("Failed",)


class EventFields(pydantic.BaseModel):
    """Events: QBRs (attended or not) in the look-back window, executive meetings."""

    model_config = _MODEL

    object_name: ApiName = "Event"
    account_field: ApiName = "AccountId"
    type_field: ApiName = "Type"
    date_field: ApiName = "ActivityDate"
    attended_field: ApiName = "Attended__c"
    qbr_types: Values = ("QBR",)
    exec_types: Values = ("Executive Meeting",)


class ChurnSignalFields(pydantic.BaseModel):
    """``Churn_Signal__c``: severity, confidence and status picklists and their values."""

    model_config = _MODEL

    object_name: ApiName = "Churn_Signal__c"
    account_field: ApiName = "Account__c"
    severity_field: ApiName = "Severity__c"
    confidence_field: ApiName = "Confidence__c"
    status_field: ApiName = "Status__c"
    critical_values: Values = ("Critical",)
    moderate_values: Values = ("Moderate",)
    watch_values: Values = ("Watch",)
    confirmed_values: Values = ("Confirmed",)
    active_values: Values = ("Active",)
    monitoring_values: Values = ("Monitoring",)  # count one severity lower


class TierAlignment(pydantic.BaseModel):
    """Misaligned (1) when ARR is above the threshold on one of the standard support tiers."""

    model_config = _MODEL

    standard_tiers: Values = ("Standard",)
    arr_threshold: Decimal = pydantic.Field(Decimal(200000), ge=0)


class Responsiveness(pydantic.BaseModel):
    """Average response hours → category 1 (< fast), 2 (fast … slow inclusive), 3 (> slow)."""

    model_config = _MODEL

    fast_below_hours: Decimal = pydantic.Field(Decimal(24), gt=0)
    slow_above_hours: Decimal = pydantic.Field(Decimal(48), gt=0)

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> Responsiveness:
        if self.slow_above_hours < self.fast_below_hours:
            raise ValueError("slow_above_hours must not be below fast_below_hours")
        return self


class Settings(pydantic.BaseModel):
    """The ``salesforce:`` section of sources.yaml (the write-back has its own, ``writeback:``)."""

    model_config = _MODEL

    api_version: str = pydantic.Field("62.0", pattern=r"^\d{2,3}\.0$")
    lookback_months: int = pydantic.Field(12, ge=1, le=60)
    #: Ids per query: bounded by Salesforce's 16,384-byte URI limit (an 18-character id costs
    #: 27 bytes URL-encoded as ``'…',``), so at most 550.
    id_chunk_size: int = pydantic.Field(500, ge=1, le=550)
    account: AccountFields = AccountFields.model_validate({})
    opportunity: OpportunityFields = OpportunityFields.model_validate({})
    payment: PaymentFields = PaymentFields.model_validate({})
    event: EventFields = EventFields.model_validate({})
    churn_signal: ChurnSignalFields = ChurnSignalFields.model_validate({})
    tier_alignment: TierAlignment = TierAlignment.model_validate({})
    responsiveness: Responsiveness = Responsiveness.model_validate({})
    http: HttpSettings = HttpSettings.model_validate({})

    @pydantic.model_validator(mode="before")
    @classmethod
    def _writeback_moved(cls, data: Any) -> Any:
        """The write-back settings are the top-level ``writeback:`` section now."""
        if isinstance(data, Mapping) and "writeback" in data:
            raise ValueError(WRITEBACK_MOVED)
        return data


# --------------------------------------------------------------------------------------------
# Metric names and credentials

DAYS_TO_RENEWAL = "days_to_renewal"
PAYMENT_HEALTH = "payment_health"
CONTRACT_CHANGES = "contract_changes"
ARR_TRAJECTORY_PCT = "arr_trajectory_pct"
TIER_ALIGNMENT = "tier_alignment"
QBR_ATTENDANCE_PCT = "qbr_attendance_pct"
RESPONSIVENESS = "responsiveness"
CHAMPION_STABILITY = "champion_stability"
EXEC_ENGAGEMENT = "exec_engagement"
EXPANSION_SIGNALS = "expansion_signals"
FINANCIAL = (DAYS_TO_RENEWAL, PAYMENT_HEALTH, CONTRACT_CHANGES, ARR_TRAJECTORY_PCT, TIER_ALIGNMENT)
RELATIONSHIP = (
    QBR_ATTENDANCE_PCT,
    RESPONSIVENESS,
    CHAMPION_STABILITY,
    EXEC_ENGAGEMENT,
    EXPANSION_SIGNALS,
)
METRICS = FINANCIAL + RELATIONSHIP
SIGNALS = "churn_signals"  # the signal query's pseudo-metric (not a scored metric)

CREDENTIAL_VARS = auth.CREDENTIAL_VARS


# --------------------------------------------------------------------------------------------
# SOQL text: validated ids and escaped literals only

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def soql_literal(value: str) -> str:
    """A SOQL string literal: quoted, with quotes, backslashes and control characters escaped."""
    if any((ord(ch) < 32 and ch not in _ESCAPES) or ch == "\x7f" for ch in value):
        raise ValueError("control characters cannot appear in a SOQL literal")
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def soql_list(values: Iterable[str]) -> str:
    """``('a','b')`` from escaped literals."""
    return "(" + ",".join(soql_literal(v) for v in values) + ")"


def soql_id_list(ids: Iterable[str]) -> str:
    """``('001…','001…')`` from ids that pass :func:`salesforce_id18` (refused otherwise)."""
    return "(" + ",".join(soql_literal(salesforce_id18(v)) for v in ids) + ")"


def _api_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}", name):
        raise ValueError(f"not an API name: {name[:40]!r}")
    return name


def months_before(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


# --------------------------------------------------------------------------------------------
# Values


def _decimal(value: Any) -> Decimal | None:
    return to_decimal(value)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _field(row: Mapping[str, Any], name: str) -> Any:
    """A column of a result row, matched case-insensitively (Salesforce answers canonical names)."""
    if name in row:
        return row[name]
    lowered = name.lower()
    for key, value in row.items():
        if key.lower() == lowered:
            return value
    return None


def _folded(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.casefold() for v in values)


# --------------------------------------------------------------------------------------------
# Query plans: one per object, built from the metrics still available


@dataclass(frozen=True, slots=True)
class Window:
    """The look-back window for date fields: ``start`` inclusive to ``end`` exclusive."""

    start: date
    end: date


class Plan:
    """One object's query for an id list, and how its rows become per-account values."""

    object_name: str
    aggregate = True
    #: metric → the fields it needs (a missing one makes the metric missing).
    needs: dict[str, tuple[str, ...]]

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        raise NotImplementedError

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        raise NotImplementedError


class AccountPlan(Plan):
    aggregate = False

    def __init__(self, settings: Settings, window: Window) -> None:
        f = settings.account
        self.settings = settings
        self.window = window
        self.object_name = f.object_name
        self.needs = {
            DAYS_TO_RENEWAL: (f.renewal_date_field,),
            ARR_TRAJECTORY_PCT: (f.arr_field, f.prior_year_arr_field),
            TIER_ALIGNMENT: (f.support_tier_field, f.arr_field),
            CHAMPION_STABILITY: (f.champion_changed_date_field,),
            RESPONSIVENESS: (f.avg_response_hours_field,),
        }

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        fields = ["Id"]
        for metric, needed in self.needs.items():
            if metric in metrics:
                fields.extend(n for n in needed if n not in fields)
        columns = ", ".join(_api_name(f) for f in fields)
        return (
            f"SELECT {columns} FROM {_api_name(self.object_name)} WHERE Id IN {soql_id_list(ids)}"  # noqa: S608 - API names and escaped literals
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        f, today = self.settings.account, self.window.end
        tiers = self.settings.tier_alignment
        standard = _folded(tiers.standard_tiers)
        fast = self.settings.responsiveness.fast_below_hours
        slow = self.settings.responsiveness.slow_above_hours
        out: dict[str, dict[str, Decimal | None]] = {}
        for row in rows:
            values: dict[str, Decimal | None] = {}
            if DAYS_TO_RENEWAL in metrics:
                renewal = _date(_field(row, f.renewal_date_field))
                values[DAYS_TO_RENEWAL] = Decimal((renewal - today).days) if renewal else None
            arr = _decimal(_field(row, f.arr_field))
            if ARR_TRAJECTORY_PCT in metrics:
                prior = _decimal(_field(row, f.prior_year_arr_field))
                values[ARR_TRAJECTORY_PCT] = (
                    metric_value((arr - prior) / prior * 100) if arr is not None and prior else None
                )
            if TIER_ALIGNMENT in metrics:
                tier = _field(row, f.support_tier_field)
                values[TIER_ALIGNMENT] = (
                    None
                    if not isinstance(tier, str) or arr is None
                    else Decimal(int(tier.casefold() in standard and arr > tiers.arr_threshold))
                )
            if CHAMPION_STABILITY in metrics:
                changed = _date(_field(row, f.champion_changed_date_field))
                values[CHAMPION_STABILITY] = Decimal((today - changed).days) if changed else None
            if RESPONSIVENESS in metrics:
                hours = _decimal(_field(row, f.avg_response_hours_field))
                values[RESPONSIVENESS] = (
                    None
                    if hours is None
                    else Decimal(1 if hours < fast else 2 if hours <= slow else 3)
                )
            out[salesforce_id18(str(row["Id"]))] = values
        return out


class OpportunityPlan(Plan):
    """Closed-won contractions in the window and open expansions, grouped by account and
    ``IsClosed`` (contractions are closed, expansions open, so the flag tells them apart)."""

    def __init__(self, settings: Settings, window: Window) -> None:
        f = settings.opportunity
        self.f, self.window = f, window
        self.object_name = f.object_name
        self.needs = {
            CONTRACT_CHANGES: (
                f.account_field,
                f.type_field,
                f.is_won_field,
                f.close_date_field,
                f.is_closed_field,
            ),
            EXPANSION_SIGNALS: (f.account_field, f.type_field, f.is_closed_field),
        }

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f, w = self.f, self.window
        account, kind, closed = (
            _api_name(n) for n in (f.account_field, f.type_field, f.is_closed_field)
        )
        branches = []
        if CONTRACT_CHANGES in metrics:
            won, close = _api_name(f.is_won_field), _api_name(f.close_date_field)
            branches.append(
                f"({kind} IN {soql_list(f.contraction_types)} AND {won} = TRUE"
                f" AND {close} >= {w.start.isoformat()} AND {close} < {w.end.isoformat()})"
            )
        if EXPANSION_SIGNALS in metrics:
            branches.append(f"({kind} IN {soql_list(f.expansion_types)} AND {closed} = FALSE)")
        return (
            f"SELECT {account}, {closed}, COUNT(Id) n FROM {_api_name(self.object_name)}"  # noqa: S608 - API names and escaped literals
            f" WHERE {account} IN {soql_id_list(ids)} AND ({' OR '.join(branches)})"
            f" GROUP BY {account}, {closed}"
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        out: dict[str, dict[str, int]] = {}
        for row in rows:
            account_id = salesforce_id18(str(_field(row, self.f.account_field)))
            metric = CONTRACT_CHANGES if _field(row, self.f.is_closed_field) else EXPANSION_SIGNALS
            counts = out.setdefault(account_id, {})
            counts[metric] = counts.get(metric, 0) + int(_field(row, "n") or 0)
        return out


class PaymentPlan(Plan):
    """Failed payments in the window, counted per account."""

    def __init__(self, settings: Settings, window: Window) -> None:
        f = settings.payment
        self.f, self.window = f, window
        self.object_name = f.object_name
        self.needs = {PAYMENT_HEALTH: (f.account_field, f.status_field, f.date_field)}

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f, w = self.f, self.window
        account, status, day = (
            _api_name(n) for n in (f.account_field, f.status_field, f.date_field)
        )
        return (
            f"SELECT {account}, COUNT(Id) n FROM {_api_name(self.object_name)}"  # noqa: S608 - API names and escaped literals
            f" WHERE {account} IN {soql_id_list(ids)} AND {status} IN {soql_list(f.failed_values)}"
            f" AND {day} >= {w.start.isoformat()} AND {day} < {w.end.isoformat()}"
            f" GROUP BY {account}"
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        return {
            salesforce_id18(str(_field(row, self.f.account_field))): {
                PAYMENT_HEALTH: int(_field(row, "n") or 0)
            }
            for row in rows
        }


class EventPlan(Plan):
    """QBRs in the window (held and attended) and the last executive meeting before the end."""

    def __init__(self, settings: Settings, window: Window) -> None:
        f = settings.event
        self.f, self.window = f, window
        self.object_name = f.object_name
        self.needs = {
            QBR_ATTENDANCE_PCT: (f.account_field, f.type_field, f.date_field, f.attended_field),
            EXEC_ENGAGEMENT: (f.account_field, f.type_field, f.date_field),
        }
        self.qbr, self.exec = _folded(f.qbr_types), _folded(f.exec_types)

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f, w = self.f, self.window
        account, kind, day = (_api_name(n) for n in (f.account_field, f.type_field, f.date_field))
        groups = [account, kind]
        branches = []
        if QBR_ATTENDANCE_PCT in metrics:
            groups.append(_api_name(f.attended_field))
            branches.append(
                f"({kind} IN {soql_list(f.qbr_types)} AND {day} >= {w.start.isoformat()})"
            )
        if EXEC_ENGAGEMENT in metrics:
            branches.append(f"{kind} IN {soql_list(f.exec_types)}")
        grouped = ", ".join(groups)
        return (
            f"SELECT {grouped}, COUNT(Id) n, MAX({day}) latest FROM {_api_name(self.object_name)}"  # noqa: S608 - API names and escaped literals
            f" WHERE {account} IN {soql_id_list(ids)} AND {day} < {w.end.isoformat()}"
            f" AND ({' OR '.join(branches)}) GROUP BY {grouped}"
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            account_id = salesforce_id18(str(_field(row, self.f.account_field)))
            kind = str(_field(row, self.f.type_field) or "").casefold()
            values = out.setdefault(account_id, {"held": 0, "attended": 0, "last": None})
            count = int(_field(row, "n") or 0)
            if QBR_ATTENDANCE_PCT in metrics and kind in self.qbr:
                values["held"] += count
                if _field(row, self.f.attended_field) is True:
                    values["attended"] += count
            last = _date(_field(row, "latest"))
            if EXEC_ENGAGEMENT in metrics and kind in self.exec and last is not None:
                values["last"] = max(last, values["last"] or last)
        return out


class SignalPlan(Plan):
    """Active and Monitoring churn signals per account, severity, confidence and status."""

    def __init__(self, settings: Settings) -> None:
        f = settings.churn_signal
        self.f = f
        self.object_name = f.object_name
        self.needs = {
            SIGNALS: (f.account_field, f.severity_field, f.confidence_field, f.status_field)
        }
        self.levels = {
            **dict.fromkeys(_folded(f.watch_values), 0),
            **dict.fromkeys(_folded(f.moderate_values), 1),
            **dict.fromkeys(_folded(f.critical_values), 2),
        }
        self.active, self.monitoring = _folded(f.active_values), _folded(f.monitoring_values)
        self.confirmed = _folded(f.confirmed_values)
        self.unknown_severities: set[str] = set()

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f = self.f
        names = (f.account_field, f.severity_field, f.confidence_field, f.status_field)
        account, severity, confidence, status = (_api_name(n) for n in names)
        statuses = soql_list((*f.active_values, *f.monitoring_values))
        return (
            f"SELECT {account}, {severity}, {confidence}, {status}, COUNT(Id) n"  # noqa: S608 - API names and escaped literals
            f" FROM {_api_name(self.object_name)}"
            f" WHERE {account} IN {soql_id_list(ids)} AND {status} IN {statuses}"
            f" GROUP BY {account}, {severity}, {confidence}, {status}"
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        names = ("watch", "moderate", "critical")
        out: dict[str, SignalCounts] = {}
        for row in rows:
            account_id = salesforce_id18(str(_field(row, self.f.account_field)))
            severity = str(_field(row, self.f.severity_field) or "")
            status = str(_field(row, self.f.status_field) or "").casefold()
            level = self.levels.get(severity.casefold())
            if level is None:
                self.unknown_severities.add(severity[:40])
                continue
            if status in self.monitoring and status not in self.active:
                level -= 1  # Monitoring counts one severity lower; Watch + Monitoring drops
            if level < 0:
                continue
            count = int(_field(row, "n") or 0)
            confirmed = str(_field(row, self.f.confidence_field) or "").casefold() in self.confirmed
            name = names[level]
            counts = {name: count, f"{name}_confirmed": count if confirmed else 0}
            out[account_id] = out.get(account_id, NO_SIGNALS) + SignalCounts(**counts)
        return out


# --------------------------------------------------------------------------------------------
# The extractor


_MISSING_PATTERNS = (
    re.compile(r"No such column '([A-Za-z0-9_]+)'"),
    re.compile(r"Didn't understand relationship '([A-Za-z0-9_]+)'"),
    re.compile(r"field '([A-Za-z0-9_]+)' must be of type"),
)


def _missing_field(error: SalesforceApiError) -> str | None:
    for pattern in _MISSING_PATTERNS:
        match = pattern.search(error.api_message)
        if match:
            return match.group(1)
    return None


@dataclass
class _PlanState:
    plan: Plan
    metrics: frozenset[str]
    results: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class SalesforceExtractor:
    """Financial and relationship metrics and churn signals for all mapped accounts."""

    name = "salesforce"

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        as_of: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.session = session
        self.as_of = as_of
        self._client: SalesforceClient | None = None

    @property
    def provides(self) -> frozenset[str]:
        return frozenset(METRICS)

    @property
    def requests_made(self) -> int:
        return self._client.requests if self._client is not None else 0

    def _window(self) -> Window:
        instant = self.as_of or datetime.now(UTC)
        end = instant.astimezone(UTC).date()
        return Window(months_before(end, self.settings.lookback_months), end)

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        ids: dict[str, list[str]] = {}  # 18-character id → account_ids mapped to it
        for account in accounts:
            if account.sf_account_id is None:
                continue
            try:
                ids.setdefault(salesforce_id18(account.sf_account_id), []).append(
                    account.account_id
                )
            except ValueError as exc:
                raise SourceError(
                    self.name,
                    "SOQL",
                    f"account {account.account_name[:60]!r}: sf_account_id refused ({exc}); "
                    "nothing was sent to Salesforce",
                ) from None
        window = self._window()
        client = SalesforceClient.from_env(
            self.env,
            version=self.settings.api_version,
            session=self.session,
            policy=self.settings.http.policy(),
        )
        if client is None:
            raise AuthenticationError(self.name, "login", NO_CREDENTIALS)
        self._client = client
        try:
            client.connect()
            states, notes, missing = self._run(client, sorted(ids), window)
        finally:
            client.log_usage(f"{client.requests} requests for {len(ids)} accounts")
            client.close()
        return self._result(accounts, states, notes, missing, client.requests)

    # -- querying -------------------------------------------------------------------------------

    def _query_chunk(
        self, client: SalesforceClient, state: _PlanState, chunk: Sequence[str]
    ) -> dict[str, Any]:
        """Run one plan over one id list; split the list when an aggregate has too many groups."""
        soql = state.plan.build(chunk, state.metrics)
        try:
            return state.plan.parse(client.query(soql), state.metrics)
        except SalesforceApiError as exc:
            too_many_groups = exc.error_code == "MALFORMED_QUERY" and "queryMore" in exc.api_message
            if not (too_many_groups and len(chunk) > 1):
                raise
        half = len(chunk) // 2
        return {
            **self._query_chunk(client, state, chunk[:half]),
            **self._query_chunk(client, state, chunk[half:]),
        }

    def _settle(
        self, client: SalesforceClient, state: _PlanState, chunk: Sequence[str], notes: list[str]
    ) -> dict[str, Any] | None:
        """The first id list: drop metrics whose fields or object the org lacks, then run."""
        plan = state.plan
        while True:
            if not state.metrics and not isinstance(plan, AccountPlan):
                return None
            try:
                return self._query_chunk(client, state, chunk)
            except SalesforceApiError as exc:
                if exc.error_code == "INVALID_TYPE" and not isinstance(plan, AccountPlan):
                    notes.append(
                        f"{plan.object_name} is not in the org: "
                        f"{', '.join(sorted(state.metrics))} missing"
                    )
                    state.metrics = frozenset()
                    return None
                name = _missing_field(exc) if exc.error_code == "INVALID_FIELD" else None
                lost = frozenset(
                    m
                    for m in state.metrics
                    if name and name.lower() in (n.lower() for n in plan.needs.get(m, ()))
                )
                if not lost:
                    raise
                notes.append(
                    f"{plan.object_name}.{name} is not in the org (or has another type): "
                    f"{', '.join(sorted(lost))} missing"
                )
                state.metrics -= lost

    def _run(
        self, client: SalesforceClient, ids: Sequence[str], window: Window
    ) -> tuple[list[_PlanState], list[str], set[str]]:
        settings = self.settings
        plans: list[Plan] = [
            AccountPlan(settings, window),
            OpportunityPlan(settings, window),
            PaymentPlan(settings, window),
            EventPlan(settings, window),
            SignalPlan(settings),
        ]
        states = [_PlanState(plan, frozenset(plan.needs)) for plan in plans]
        size = settings.id_chunk_size
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        notes: list[str] = []
        if not chunks:
            return states, notes, set()
        with ThreadPoolExecutor(max_workers=settings.http.max_workers) as pool:
            first = [pool.submit(self._settle, client, s, chunks[0], notes) for s in states]
            for state, future in zip(states, first, strict=True):
                result = future.result()
                if result is not None:
                    state.results.update(result)
            rest = [
                (state, pool.submit(self._query_chunk, client, state, chunk))
                for chunk in chunks[1:]
                for state in states
                if state.metrics or isinstance(state.plan, AccountPlan)
            ]
            for state, later in rest:
                state.results.update(later.result())
        initial = {m for plan in plans for m in plan.needs}
        missing = initial - {m for s in states for m in s.metrics}
        for note in notes:
            log.warning("salesforce: %s", note)
        signal_plan = plans[-1]
        assert isinstance(signal_plan, SignalPlan)
        if signal_plan.unknown_severities:
            unknown = ", ".join(sorted(signal_plan.unknown_severities))
            notes.append(f"churn signals with unknown severity ignored: {unknown}")
            log.warning("salesforce: %s", notes[-1])
        return states, notes, missing

    # -- the result -----------------------------------------------------------------------------

    def _result(
        self,
        accounts: Sequence[Account],
        states: list[_PlanState],
        notes: list[str],
        missing: set[str],
        requests_made: int,
    ) -> SourceResult:
        found, opportunities, payments, events, signals = (s.results for s in states)
        by_plan = {type(s.plan): s.metrics for s in states}
        window_end = self._window().end
        metrics: dict[str, dict[str, MetricValue]] = {}
        signal_counts: dict[str, SignalCounts] = {}
        for account in accounts:
            values: dict[str, MetricValue] = dict.fromkeys(METRICS)
            metrics[account.account_id] = values
            sf_id = salesforce_id18(account.sf_account_id) if account.sf_account_id else None
            if sf_id is None or sf_id not in found:
                continue  # not in the org: no data
            values.update(found[sf_id])
            for metric in by_plan[OpportunityPlan]:
                values[metric] = Decimal(opportunities.get(sf_id, {}).get(metric, 0))
            if PAYMENT_HEALTH in by_plan[PaymentPlan]:
                values[PAYMENT_HEALTH] = Decimal(payments.get(sf_id, {}).get(PAYMENT_HEALTH, 0))
            seen = events.get(sf_id, {})
            if QBR_ATTENDANCE_PCT in by_plan[EventPlan] and seen.get("held"):
                values[QBR_ATTENDANCE_PCT] = metric_value(
                    Decimal(seen["attended"]) / seen["held"] * 100
                )
            if EXEC_ENGAGEMENT in by_plan[EventPlan] and seen.get("last") is not None:
                values[EXEC_ENGAGEMENT] = Decimal((window_end - seen["last"]).days)
            if by_plan[SignalPlan]:
                signal_counts[account.account_id] = signals.get(sf_id, NO_SIGNALS)
        return SourceResult(
            source=self.name,
            metrics=metrics,
            requests=requests_made,
            signals=signal_counts,
            missing_metrics=frozenset(missing - {SIGNALS}),
            notes=tuple(notes),
        )


def has_credentials(env: Mapping[str, str]) -> bool:
    """Whether one login flow's variables are all present (nothing is checked remotely)."""
    try:
        return auth.credentials_from_env(env) is not None
    except SourceError:
        return True  # present but malformed: activate, and let extract() say what is wrong


def from_env(
    settings: Settings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
) -> SalesforceExtractor | None:
    """The Salesforce extractor when credentials are in ``env``, else None."""
    if not has_credentials(env):
        return None
    return SalesforceExtractor(settings, env, session=session, as_of=as_of)
