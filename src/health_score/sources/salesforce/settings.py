"""The ``salesforce:`` section of sources.yaml, the metric names and the credential variables.

Pure data (pydantic and the standard library): reading sources.yaml never loads the HTTP stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic

from health_score.loaders.salesforce_settings import MOVED as WRITEBACK_MOVED
from health_score.sources.http_policy import HttpSettings
from health_score.sources.salesforce.declarative import CustomMetrics

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


#: A field of the object or of a parent reached through its relationships, e.g. ``Owner.Name``
#: (at most five levels, as Salesforce allows).
FieldPath = Annotated[
    str,
    pydantic.StringConstraints(
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}(?:\.[A-Za-z][A-Za-z0-9_]{0,79}){0,5}$"
    ),
]


class ContextFields(pydantic.BaseModel):
    """``context``: what ``scores.csv`` shows beside the score (not scored), read in the
    Account query: the owner's name, ARR and the renewal date."""

    model_config = _MODEL

    #: false: no context is read (the columns stay empty).
    enabled: bool = True
    #: The owner's name: an Account field or a relationship path (``Owner.Name``: the
    #: owning User's name); null: not read.
    owner_field: FieldPath | None = "Owner.Name"
    #: ARR and the renewal date; null: ``account.arr_field`` / ``account.renewal_date_field``.
    arr_field: ApiName | None = None
    renewal_date_field: ApiName | None = None


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

    @pydantic.model_validator(mode="after")
    def _types_apart(self) -> OpportunityFields:
        both = {t.casefold() for t in self.contraction_types} & {
            t.casefold() for t in self.expansion_types
        }
        if both:
            raise ValueError(
                f"a type cannot be both a contraction and an expansion: {', '.join(sorted(both))}"
            )
        return self


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
    #: The object's field history (a past period reads each signal's status as it stood at
    #: ``as_of`` from it) and its parent field; null: derived from ``object_name``
    #: (``Churn_Signal__c`` → ``Churn_Signal__History`` / ``ParentId``, ``X`` → ``XHistory`` /
    #: ``XId``).
    history_object_name: ApiName | None = None
    history_parent_field: ApiName | None = None

    @property
    def history(self) -> tuple[str, str]:
        """The field history object and its parent field."""
        derived = history_names(self.object_name)
        return (
            self.history_object_name or derived[0],
            self.history_parent_field or derived[1],
        )


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


class OutcomeRules(pydantic.BaseModel):
    """``outcomes``: which Salesforce records are churn and renewal events (``outcomes.csv``).

    A renewal opportunity (``type_field`` in ``renewal_types``) closed before ``as_of`` is an
    event: won → ``renewal``, lost → ``churn``, told by ``IsClosed``/``IsWon``
    (``match: flags``) or by the stage names (``match: stages``). With ``churn_date_field``, an
    Account whose churn date lies before ``as_of`` is a ``churn`` event too, unless the same
    account has a lost renewal within ``dedupe_days`` days of that date.
    """

    model_config = _MODEL

    #: ``false``: no outcomes are read (``outcomes.csv`` is not written; the manifest says so).
    enabled: bool = True
    #: Opportunity types that are renewals (the opportunity object and fields are the ones of
    #: ``opportunity:``).
    renewal_types: Values = ("Renewal",)
    match: Literal["flags", "stages"] = "flags"
    stage_field: ApiName = "StageName"
    won_stages: Values = ("Closed Won",)
    lost_stages: Values = ("Closed Lost",)
    #: The opportunity field whose value is the event's ARR; the Account's ``arr_field`` when the
    #: opportunity has none (or when this is null).
    amount_field: ApiName | None = "Amount"
    #: Only events of the last N months before ``as_of`` (null: every event before it).
    lookback_months: int | None = pydantic.Field(36, ge=1, le=600)
    #: An Account date field holding the churn date (null: not read).
    churn_date_field: ApiName | None = None
    #: An Account churn date within this many days of a lost renewal of the same account is the
    #: same event: only the opportunity's row is kept.
    dedupe_days: int = pydantic.Field(45, ge=0, le=366)

    @pydantic.model_validator(mode="after")
    def _stages_apart(self) -> OutcomeRules:
        both = {s.casefold() for s in self.won_stages} & {s.casefold() for s in self.lost_stages}
        if both:
            raise ValueError(f"a stage cannot be both won and lost: {', '.join(sorted(both))}")
        return self


class Settings(pydantic.BaseModel):
    """The ``salesforce:`` section of sources.yaml (the write-back has its own, ``writeback:``)."""

    model_config = _MODEL

    #: ``enabled: false`` switches the source off: its metrics are unavailable (never missing).
    enabled: bool = True
    api_version: str = pydantic.Field("62.0", pattern=r"^\d{2,3}\.0$")
    lookback_months: int = pydantic.Field(12, ge=1, le=60)
    #: A run whose ``as_of`` is more than this many days before its reference now scores a past
    #: period: current-state fields (ARR, renewal date, champion date, tier, response hours,
    #: open expansions, signal status) no longer describe it and are *unavailable*.
    current_state_grace_days: int = pydantic.Field(7, ge=0, le=366)
    #: The org tracks field history for the Account fields read (AccountHistory, or
    #: ``<Object>__History``) and the churn signals' status: a past period then reads them as
    #: they stood at its end, and open expansions are those created before it and not closed
    #: before it.
    field_history: bool = False
    #: How far back that history reaches (Salesforce keeps 18 months): an older period's
    #: Account-field metrics are unavailable.
    field_history_months: int = pydantic.Field(18, ge=1, le=120)
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
    outcomes: OutcomeRules = OutcomeRules.model_validate({})
    #: Declarative metrics over any object (see health_score.sources.salesforce.declarative).
    custom_metrics: CustomMetrics = CustomMetrics.model_validate({})
    context: ContextFields = ContextFields.model_validate({})
    http: HttpSettings = HttpSettings.model_validate({})

    @pydantic.field_validator("custom_metrics")
    @classmethod
    def _custom_names(cls, value: CustomMetrics) -> CustomMetrics:
        taken = sorted(value.names & set(METRICS))
        if taken:
            raise ValueError(f"{', '.join(taken)}: already a built-in Salesforce metric")
        return value

    @property
    def context_fields(self) -> dict[str, str]:
        """The context read, by column (``owner``, ``arr``, ``renewal_date``) → field (path)."""
        c = self.context
        if not c.enabled:
            return {}
        fields = {
            "owner": c.owner_field,
            "arr": c.arr_field or self.account.arr_field,
            "renewal_date": c.renewal_date_field or self.account.renewal_date_field,
        }
        return {column: name for column, name in fields.items() if name}

    @pydantic.model_validator(mode="before")
    @classmethod
    def _writeback_moved(cls, data: Any) -> Any:
        """The write-back settings are the top-level ``writeback:`` section now."""
        if isinstance(data, Mapping) and "writeback" in data:
            raise ValueError(WRITEBACK_MOVED)
        return data


def history_names(object_name: str) -> tuple[str, str]:
    """Salesforce's field history object of ``object_name`` and its parent field:
    ``AccountHistory`` / ``AccountId``; ``X__History`` / ``ParentId`` for a custom ``X__c``."""
    if object_name.casefold().endswith("__c"):
        return f"{object_name[:-3]}__History", "ParentId"
    return f"{object_name}History", f"{object_name}Id"


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


# Credentials: the variables of each login flow (names only, for messages and activation).
CLIENT_CREDENTIALS_VARS = ("SF_CLIENT_ID", "SF_CLIENT_SECRET")
JWT_VARS = ("SF_CLIENT_ID", "SF_USERNAME", "SF_JWT_KEY_FILE")
PASSWORD_VARS = ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN")
#: Every variable this module reads (names only, for messages and activation).
CREDENTIAL_VARS = (
    "SF_CLIENT_ID",
    "SF_CLIENT_SECRET",
    "SF_USERNAME",
    "SF_PASSWORD",
    "SF_SECURITY_TOKEN",
    "SF_JWT_KEY_FILE",
    "SF_LOGIN_URL",
    "SF_DOMAIN",
    "SF_CA_BUNDLE",
)

#: Login hosts on which Salesforce refuses the OAuth client credentials flow: it must be sent to
#: the org's My Domain URL ("request not supported on this domain").
GENERIC_LOGIN_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})


def client_credentials_problem(env: Mapping[str, str]) -> str | None:
    """Why the client credentials flow in ``env`` cannot log in (a generic login host), or None.

    Pure: names the variables and the host, never a secret.
    """
    if not all((env.get(name) or "").strip() for name in CLIENT_CREDENTIALS_VARS):
        return None
    url = (env.get("SF_LOGIN_URL") or "").strip()
    domain = (env.get("SF_DOMAIN") or "").strip()
    if url:
        host, where = (urlsplit(url).hostname or "").lower(), f"SF_LOGIN_URL is {url[:80]}"
    elif domain:
        host, where = f"{domain.lower()}.salesforce.com", f"SF_DOMAIN is {domain[:40]}"
    else:
        host, where = "login.salesforce.com", "neither SF_LOGIN_URL nor SF_DOMAIN is set"
    if host not in GENERIC_LOGIN_HOSTS:
        return None
    return (
        f"salesforce: the OAuth client credentials flow (SF_CLIENT_ID, SF_CLIENT_SECRET) only "
        f"works on the org's My Domain URL, not on {host} ({where}); set SF_LOGIN_URL to the "
        "My Domain URL, e.g. https://acme.my.salesforce.com (a sandbox: "
        "https://acme--uat.sandbox.my.salesforce.com)"
    )
