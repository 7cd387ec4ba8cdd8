"""Alert rules: the ``alerts.yaml`` config and the pure evaluation of one run against the last.

A rule looks at one account as this run and the previous ``ok`` run scored it
(:class:`AccountView`) and says whether it fires. The kinds:

- ``tier_worsened``: the tier is worse than the previous run's (Insufficient Data on either side
  is no comparison);
- ``score_dropped``: the final score fell by at least ``points`` (published one-decimal scores);
- ``entered_tier``: the tier is ``tier`` (default Critical) and was not in the previous run
  (an account new to the portfolio does not count: there is no "before");
- ``confirmed_critical_signal``: more confirmed Critical churn signals than the previous run had
  (none before when the account is new);
- ``coverage_below``: coverage fell below ``floor_pct`` (default ``min_coverage_pct`` of
  thresholds.yaml) from at or above it;
- ``renewal_within``: ``days_to_renewal`` is between 0 and ``days`` while the tier is one of
  ``tiers`` (default At Risk and Critical); a state, so it fires each period it holds.

Each rule has an ``id`` (its key in ``External_Key__c`` and ``alerts.csv``) unique in the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pydantic

from health_score.config import (
    ConfigError,
    ConfigProblem,
    Problems,
    parse_yaml,
    read_config_files,
)
from health_score.scoring.spec import INSUFFICIENT_DATA

ALERTS_FILE = "alerts.yaml"
RULE_KINDS = (
    "tier_worsened",
    "score_dropped",
    "entered_tier",
    "confirmed_critical_signal",
    "coverage_below",
    "renewal_within",
)
_RULE_ID = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: Environment variable holding the Slack incoming-webhook URL (a secret: never logged).
SLACK_WEBHOOK_ENV = "SLACK_WEBHOOK_URL"


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    """One alert rule (see the module doc for the kinds and their parameters)."""

    id: str
    kind: Literal[
        "tier_worsened",
        "score_dropped",
        "entered_tier",
        "confirmed_critical_signal",
        "coverage_below",
        "renewal_within",
    ]
    description: str = ""
    points: Decimal | None = pydantic.Field(default=None, gt=0, le=100)
    tier: str | None = None
    floor_pct: Decimal | None = pydantic.Field(default=None, gt=0, le=100)
    days: int | None = pydantic.Field(default=None, ge=0, le=3660)
    tiers: tuple[str, ...] | None = None

    @pydantic.field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _RULE_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a rule id (lower case letters, digits and _, starting with a "
                "letter, at most 40 characters)"
            )
        return value

    @pydantic.model_validator(mode="after")
    def _parameters(self) -> Rule:
        allowed = {
            "tier_worsened": set(),
            "score_dropped": {"points"},
            "entered_tier": {"tier"},
            "confirmed_critical_signal": set(),
            "coverage_below": {"floor_pct"},
            "renewal_within": {"days", "tiers"},
        }[self.kind]
        given = {
            name
            for name in ("points", "tier", "floor_pct", "days", "tiers")
            if getattr(self, name) is not None
        }
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(f"{', '.join(extra)} does not apply to a {self.kind} rule")
        if self.kind == "score_dropped" and self.points is None:
            raise ValueError("a score_dropped rule needs points (e.g. points: 10)")
        if self.kind == "renewal_within" and self.days is None:
            raise ValueError("a renewal_within rule needs days (e.g. days: 90)")
        return self


class SalesforceDelivery(_Strict):
    """One ``Health_Alert__c`` per alert, upserted by ``External_Key__c``."""

    enabled: bool = True
    object_name: str = "Health_Alert__c"
    external_id_field: str = "External_Key__c"
    #: account_owner: the alert's OwnerId is the Account's (read with one query per 200
    #: accounts); integration_user: left to Salesforce (the user the run logs in as).
    assign_to: Literal["account_owner", "integration_user"] = "account_owner"


class SlackDelivery(_Strict):
    """A digest per run to a Slack incoming webhook (URL in the environment, never in config)."""

    enabled: bool = True
    webhook_url_env: str = SLACK_WEBHOOK_ENV
    top_accounts: int = pydantic.Field(default=10, ge=1, le=50)


class Delivery(_Strict):
    salesforce: SalesforceDelivery = SalesforceDelivery()
    slack: SlackDelivery = SlackDelivery()


class AlertsConfig(_Strict):
    """The whole ``alerts.yaml``."""

    enabled: bool = True
    #: Top contributing changes listed with each alert (from changes.csv).
    drivers: int = pydantic.Field(default=3, ge=0, le=20)
    rules: tuple[Rule, ...] = ()
    delivery: Delivery = Delivery()

    @pydantic.field_validator("rules")
    @classmethod
    def _unique(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for index, rule in enumerate(value):
            if rule.id in seen:
                raise ValueError(f"rules[{index}]: id {rule.id!r} is used by an earlier rule")
            seen.add(rule.id)
        return value


def parse_alerts(raw: object, where: Problems, tier_labels: Sequence[str] = ()) -> AlertsConfig:
    """The parsed file, or problems added to ``where`` (each naming the key, e.g.
    ``rules[2].points``); an empty file is no rules."""
    if raw is None:
        return AlertsConfig()
    if not isinstance(raw, Mapping):
        where.add("", "expected a mapping with rules: and (optional) delivery:")
        return AlertsConfig()
    try:
        config = AlertsConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            location = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
            ).lstrip(".")
            where.add(location, str(error["msg"]).removeprefix("Value error, "))
        return AlertsConfig()
    if tier_labels:
        known = set(tier_labels) - {INSUFFICIENT_DATA}
        for index, rule in enumerate(config.rules):
            for name in [rule.tier] if rule.tier else list(rule.tiers or ()):
                if name not in known:
                    where.add(
                        f"rules[{index}].{'tier' if rule.tier else 'tiers'}",
                        f"unknown tier {name!r} (the tiers are {', '.join(sorted(known))})",
                    )
    return config


def load_alerts(config_dir: Path, tier_labels: Sequence[str] = ()) -> tuple[AlertsConfig, bytes]:
    """``alerts.yaml`` of ``config_dir`` and its bytes (absent: no rules, b""); raises
    :class:`ConfigError` naming the file and key of each problem."""
    files = read_config_files(config_dir, (ALERTS_FILE,))
    if ALERTS_FILE not in files.contents and ALERTS_FILE not in files.unreadable:
        return AlertsConfig(enabled=False), b""
    problems: list[ConfigProblem] = []
    where = Problems(ALERTS_FILE, problems)
    raw = parse_yaml(files, ALERTS_FILE, where)
    config = parse_alerts(raw, where, tier_labels) if not problems else AlertsConfig()
    if problems:
        raise ConfigError(problems)
    return config, files.contents[ALERTS_FILE]


# --------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True, slots=True)
class AccountView:
    """One account as this run (``final`` …) and the previous ok run (``previous_*``) saw it.

    ``previous_tier`` is None when the account was not in the previous run (or there was none).
    """

    account_id: str
    account_name: str
    tier: str
    final: Decimal | None
    coverage_pct: Decimal | None
    critical_confirmed: int
    days_to_renewal: Decimal | None = None
    previous_tier: str | None = None
    previous_final: Decimal | None = None
    previous_coverage_pct: Decimal | None = None
    previous_critical_confirmed: int = 0


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that fired for an account, and why in words."""

    rule: Rule
    reason: str


DEFAULT_ENTERED_TIER = "Critical"
DEFAULT_RENEWAL_TIERS = ("At Risk", "Critical")


def _rank(tier: str | None, labels: Sequence[str]) -> int | None:
    """Position of a tier, best first (None for Insufficient Data or an unknown tier)."""
    if tier is None or tier == INSUFFICIENT_DATA or tier not in labels:
        return None
    return list(labels).index(tier)


def fires(
    rule: Rule, view: AccountView, labels: Sequence[str], min_coverage_pct: Decimal
) -> str | None:
    """Why ``rule`` fires for ``view`` (None: it does not). ``labels``: tiers best first."""
    before = view.previous_tier is not None
    if rule.kind == "tier_worsened":
        now, then = _rank(view.tier, labels), _rank(view.previous_tier, labels)
        if now is not None and then is not None and now > then:
            return f"tier {view.previous_tier} → {view.tier}"
        return None
    if rule.kind == "score_dropped":
        assert rule.points is not None
        if view.final is None or view.previous_final is None:
            return None
        drop = view.previous_final - view.final
        if drop >= rule.points:
            return f"final score {view.previous_final} → {view.final} (−{drop})"
        return None
    if rule.kind == "entered_tier":
        target = rule.tier or DEFAULT_ENTERED_TIER
        if before and view.tier == target and view.previous_tier != target:
            return f"new {target}: tier {view.previous_tier} → {view.tier}"
        return None
    if rule.kind == "confirmed_critical_signal":
        if view.critical_confirmed > view.previous_critical_confirmed:
            return (
                f"confirmed Critical signals {view.previous_critical_confirmed} → "
                f"{view.critical_confirmed}"
            )
        return None
    if rule.kind == "coverage_below":
        floor = rule.floor_pct if rule.floor_pct is not None else min_coverage_pct
        now_cov, then_cov = view.coverage_pct, view.previous_coverage_pct
        if before and now_cov is not None and then_cov is not None and now_cov < floor <= then_cov:
            return f"coverage {then_cov}% → {now_cov}% (floor {floor}%)"
        return None
    assert rule.kind == "renewal_within" and rule.days is not None
    tiers = rule.tiers or DEFAULT_RENEWAL_TIERS
    days = view.days_to_renewal
    if days is not None and 0 <= days <= rule.days and view.tier in tiers:
        return f"renewal in {days} days while {view.tier}"
    return None


def evaluate(
    rules: Sequence[Rule],
    views: Sequence[AccountView],
    labels: Sequence[str],
    min_coverage_pct: Decimal,
) -> list[tuple[AccountView, Firing]]:
    """Every (account, rule) that fires, in account order then rule order."""
    fired: list[tuple[AccountView, Firing]] = []
    for view in views:
        for rule in rules:
            reason = fires(rule, view, labels, min_coverage_pct)
            if reason is not None:
                fired.append((view, Firing(rule, reason)))
    return fired


def describe(rule: Rule) -> str:
    """The rule in words (its description when it has one)."""
    if rule.description:
        return rule.description
    words: dict[str, Any] = {
        "tier_worsened": "Health tier worsened",
        "score_dropped": f"Final score dropped by {rule.points} points or more",
        "entered_tier": f"New {rule.tier or DEFAULT_ENTERED_TIER}",
        "confirmed_critical_signal": "New confirmed Critical churn signal",
        "coverage_below": "Data coverage fell below the floor",
        "renewal_within": f"Renewal within {rule.days} days while "
        + " or ".join(rule.tiers or DEFAULT_RENEWAL_TIERS),
    }
    return str(words[rule.kind])
