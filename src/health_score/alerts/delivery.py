"""Delivering a run's alerts: ``Health_Alert__c`` records in Salesforce and a Slack digest.

Both are idempotent per account, rule and period:

- Salesforce: each alert is upserted by ``External_Key__c`` =
  ``<18-character account id>-<rule id>-<YYYY-MM>`` through the write-back loader's sObject
  Collections path (:meth:`SalesforceLoader.write`, per-record failures and the transient retry
  included), so a re-run updates the same record instead of creating another; alerts an earlier
  run of the period already delivered are not sent again at all (the CSM's edits stay);
- Slack: one message per run listing only alerts no earlier run of the period announced; none
  new → nothing is posted. Sent through :class:`SourceClient` (the shared HTTP policy: retries on
  429/5xx honouring ``Retry-After``).

The webhook URL is a secret: it is registered for redaction (whole and its path, which an error
message would otherwise quote) and never written anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast
from urllib.parse import urlsplit

import requests

from health_score.alerts.evaluation import Alert
from health_score.alerts.rules import SalesforceDelivery, SlackDelivery
from health_score.loaders.salesforce import (
    LOCAL_ERROR,
    FieldValue,
    Prepared,
    RecordFailure,
    SalesforceLoader,
)
from health_score.records import Account
from health_score.redact import register_secret
from health_score.salesforce_ids import id_problem, salesforce_id18
from health_score.sources.http import HttpPolicy, SourceClient, SourceError
from health_score.sources.salesforce.soql_text import soql_id_list

log = logging.getLogger(__name__)

NAME_LENGTH = 80
TEXT_LENGTH = 255
DRIVERS_LENGTH = 32_000
OWNER_QUERY_CHUNK = 200
#: The Health Score record an alert points at (the write-back's upsert key).
HEALTH_SCORE_RELATIONSHIP = "Health_Score__r"
HEALTH_SCORE_KEY_FIELD = "External_Key__c"
#: Slack: a digest's policy (a webhook is one call; a short budget, the same retry rules).
SLACK_POLICY = HttpPolicy(attempts=5, budget_seconds=60.0, read_timeout=15.0, wait_max=10.0)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def alert_key(sf_account_id: str, rule_id: str, period: str) -> str:
    return f"{salesforce_id18(sf_account_id)}-{rule_id}-{period}"


@dataclass(frozen=True, slots=True)
class SalesforceAlertResult:
    """What the alert upsert did (the manifest's ``alerts.salesforce``)."""

    status: str  # ok | failed | stopped | skipped
    attempted: int = 0
    written: int = 0
    created: int = 0
    already_delivered: int = 0
    skipped_without_salesforce_id: tuple[str, ...] = ()
    failures: tuple[RecordFailure, ...] = ()
    delivered_keys: tuple[str, ...] = ()  # alert keys (account|rule|period) now in Salesforce
    requests: int = 0
    stopped_reason: str | None = None
    owner_lookup: str = "not needed"
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "attempted": self.attempted,
            "written": self.written,
            "created": self.created,
            "updated": self.written - self.created,
            "already_delivered": self.already_delivered,
            "failed": len(self.failures),
            "skipped_without_salesforce_id": list(self.skipped_without_salesforce_id),
            "owner_lookup": self.owner_lookup,
            "requests": self.requests,
            "stopped_reason": self.stopped_reason,
            "failures": [f.as_dict() for f in self.failures],
            "delivered_keys": list(self.delivered_keys),
        }


def alert_values(
    alert: Alert,
    sf_account_id: str,
    *,
    run_id: str,
    external_id_field: str,
    owner_id: str | None,
) -> dict[str, FieldValue]:
    """The field values of one ``Health_Alert__c``."""
    full = salesforce_id18(sf_account_id)
    values: dict[str, Any] = {
        external_id_field: alert_key(full, alert.rule_id, alert.period),
        "Name": _cut(f"{alert.title}: {alert.account_name}", NAME_LENGTH),
        "Account__c": full,
        # The period's Health Score record, by its external id (written by this run's write-back).
        HEALTH_SCORE_RELATIONSHIP: {HEALTH_SCORE_KEY_FIELD: f"{full}-{alert.period}"},
        "Rule__c": alert.rule_id,
        "Period__c": alert.period,
        "Health_Tier__c": alert.tier,
        "Previous_Tier__c": alert.previous_tier or None,
        "Final_Score__c": alert.final,
        "Score_Change__c": alert.change,
        "Reason__c": _cut(alert.reason, TEXT_LENGTH),
        "Drivers__c": _cut("\n".join(d.text() for d in alert.drivers), DRIVERS_LENGTH) or None,
        "Run_Id__c": run_id,
    }
    if owner_id:
        values["OwnerId"] = owner_id
    # A relationship reference is a nested object in the JSON body (sObject Collections).
    return cast(dict[str, FieldValue], values)


def account_owners(loader: SalesforceLoader, sf_ids: Iterable[str]) -> tuple[dict[str, str], str]:
    """Account Id (18) → OwnerId, and how the lookup went ("ok" or why it failed)."""
    ids = sorted({salesforce_id18(i) for i in sf_ids})
    owners: dict[str, str] = {}
    try:
        for start in range(0, len(ids), OWNER_QUERY_CHUNK):
            chunk = ids[start : start + OWNER_QUERY_CHUNK]
            soql = f"SELECT Id, OwnerId FROM Account WHERE Id IN {soql_id_list(chunk)}"  # noqa: S608 - validated ids
            for row in loader.client.query(soql):
                owner = row.get("OwnerId")
                if isinstance(owner, str) and owner and id_problem(owner) is None:
                    owners[salesforce_id18(str(row.get("Id", "")))] = owner
    except (SourceError, requests.RequestException, ValueError) as exc:
        reason = str(exc) if isinstance(exc, SourceError) else type(exc).__name__
        log.warning("alerts: account owners not read (%s); alerts stay unassigned", reason)
        return {}, f"failed: {reason}"
    return owners, "ok"


def deliver_salesforce(
    alerts: Sequence[Alert],
    accounts: Mapping[str, Account],
    settings: SalesforceDelivery,
    loader: SalesforceLoader,
    *,
    run_id: str,
    already: frozenset[str],
) -> SalesforceAlertResult:
    """Upsert one ``Health_Alert__c`` per alert not yet delivered for its period."""
    requests_before = loader.client.requests
    pending = [a for a in alerts if a.key not in already]
    skipped: list[str] = []
    local: list[RecordFailure] = []
    targets: list[tuple[Alert, str]] = []
    for alert in pending:
        account = accounts.get(alert.account_id)
        sf_id = account.sf_account_id if account is not None else None
        if not sf_id:
            skipped.append(alert.account_id)
            continue
        problem = id_problem(sf_id)
        if problem is not None:
            local.append(
                RecordFailure(
                    alert.account_id,
                    sf_id,
                    LOCAL_ERROR,
                    f"the mapping's Salesforce account id is not a Salesforce id: {problem}",
                    ("Account__c",),
                    settings.object_name,
                )
            )
            continue
        targets.append((alert, salesforce_id18(sf_id)))
    owners: dict[str, str] = {}
    owner_lookup = "not needed"
    if settings.assign_to == "account_owner" and targets:
        owners, owner_lookup = account_owners(loader, (sf for _, sf in targets))
    prepared = []
    by_key: dict[str, Alert] = {}
    for alert, sf_id in targets:
        values = alert_values(
            alert,
            sf_id,
            run_id=run_id,
            external_id_field=settings.external_id_field,
            owner_id=owners.get(sf_id),
        )
        key = str(values[settings.external_id_field])
        by_key[key] = alert
        prepared.append(Prepared(alert.account_id, key, values))
    outcome = loader.write(settings.object_name, prepared, external_id=settings.external_id_field)
    failures = (*local, *outcome.failures.values())
    status = "ok"
    if outcome.stopped_reason:
        status = "stopped"
    elif failures or len(outcome.written) < len(prepared):
        status = "failed"
    return SalesforceAlertResult(
        status=status,
        attempted=len(prepared) + len(local),
        written=len(outcome.written),
        created=sum(1 for created in outcome.written.values() if created),
        already_delivered=len(alerts) - len(pending),
        skipped_without_salesforce_id=tuple(skipped),
        failures=tuple(failures),
        delivered_keys=tuple(by_key[k].key for k in outcome.written),
        requests=loader.client.requests - requests_before,
        stopped_reason=outcome.stopped_reason,
        owner_lookup=owner_lookup,
    )


# --------------------------------------------------------------------------------------------
# Slack


@dataclass(frozen=True, slots=True)
class SlackResult:
    status: str  # sent | skipped | failed
    reason: str | None = None
    alerts: int = 0
    announced_keys: tuple[str, ...] = ()
    requests: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "alerts": self.alerts,
            "requests": self.requests,
            "retries": self.retries,
            "announced_keys": list(self.announced_keys),
        }


def register_webhook(url: str) -> None:
    """Keep the webhook URL (and its path, the secret part) out of every log line and file."""
    register_secret(url)
    register_secret(urlsplit(url).path)


def _score(value: Decimal | None) -> str:
    return "–" if value is None else str(value)


def digest(
    alerts: Sequence[Alert], period: str, run_id: str, top: int, link: Callable[[Alert], str]
) -> dict[str, Any]:
    """The Slack message (Block Kit with a text fallback): counts per rule, the top accounts by
    score drop, each with its rules and top drivers."""
    by_rule: dict[str, int] = {}
    for alert in alerts:
        by_rule[alert.title] = by_rule.get(alert.title, 0) + 1
    accounts: dict[str, list[Alert]] = {}
    for alert in alerts:
        accounts.setdefault(alert.account_id, []).append(alert)

    def drop(items: list[Alert]) -> tuple[Decimal, str]:
        change = items[0].change
        return (change if change is not None else Decimal(0), items[0].account_name)

    ranked = sorted(accounts.values(), key=drop)[:top]
    headline = (
        f"Health Score alerts for {period}: {len(alerts)} alert(s) on {len(accounts)} account(s)"
    )
    counts = "\n".join(f"• {title}: {n}" for title, n in sorted(by_rule.items()))
    lines = []
    for items in ranked:
        first = items[0]
        rules = ", ".join(a.title for a in items)
        drivers = first.drivers_text()
        url = link(first)
        name = _mrkdwn(first.account_name)
        lines.append(
            f"• {f'<{url}|{name}>' if url else name} "
            f"{_score(first.previous_final)} → {_score(first.final)} ({first.tier}): {rules}"
            + (f"\n    {_mrkdwn(drivers)}" if drivers else "")
        )
    more = len(accounts) - len(ranked)
    top_text = "\n".join(lines) + (f"\n…and {more} more account(s)" if more > 0 else "")
    return {
        "text": headline,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(headline, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(counts, 3000)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(top_text, 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run {run_id}"}]},
        ],
    }


def _mrkdwn(text: str) -> str:
    """Slack's three control characters escaped (an account name cannot forge a link)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def deliver_slack(
    alerts: Sequence[Alert],
    settings: SlackDelivery,
    webhook_url: str,
    *,
    period: str,
    run_id: str,
    already: frozenset[str],
    link: Callable[[Alert], str],
    policy: HttpPolicy = SLACK_POLICY,
    verify: str | bool | None = None,
) -> SlackResult:
    """Post the digest of the alerts no earlier run of the period announced."""
    new = [a for a in alerts if a.key not in already]
    if not new:
        return SlackResult("skipped", "no new alerts for this period", 0)
    register_webhook(webhook_url)
    client = SourceClient("slack", webhook_url, policy=policy, verify=verify)
    body = digest(new, period, run_id, settings.top_accounts, link)
    try:
        client.request("POST", webhook_url, json=body)
    except SourceError as exc:
        # The message names the status, never the URL (its path is the secret).
        reason = (
            f"Slack webhook refused the digest (HTTP {exc.status})"
            if exc.status
            else ("Slack webhook not reachable")
        )
        log.error("alerts: %s", reason)
        return SlackResult("failed", reason, len(new), (), client.requests, client.retries)
    return SlackResult(
        "sent", None, len(new), tuple(a.key for a in new), client.requests, client.retries
    )


@dataclass
class Delivered:
    """Alert keys earlier runs of a period delivered, per channel (from their manifests)."""

    salesforce: set[str] = field(default_factory=set)
    slack: set[str] = field(default_factory=set)
