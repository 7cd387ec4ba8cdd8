"""``alerts.csv`` and the alerts stage of a run: evaluate the rules, write the file, deliver.

Called by the pipeline after ``changes.csv`` (:func:`run_alerts`). It reads the run's own
``scores.csv`` (given), ``raw.csv`` and ``changes.csv`` and the compared run's ``scores.csv``
back from the store, so it sees exactly what the files say. Delivery (Salesforce
``Health_Alert__c``, Slack) happens only when the run may act (``send``: not a dry run, not
failed, degraded only with ``--allow-degraded``), skipping what an earlier run of the same period
already delivered (read from those runs' manifests).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from health_score.alerts.evaluation import Alert, account_views, build_alerts
from health_score.alerts.rules import ALERTS_FILE, AlertsConfig, load_alerts
from health_score.csvsafe import safe_cell
from health_score.loaders.artifacts import MANIFEST, LocalRunStore, RunStore, RunWriter, csv_bytes
from health_score.loaders.changes_output import CHANGES
from health_score.loaders.s3_store import S3RunStore
from health_score.loaders.salesforce_settings import WritebackSettings
from health_score.records import Account

if TYPE_CHECKING:
    # Delivery (Salesforce, Slack) only: the HTTP stack is imported when a run sends, so
    # evaluating and writing alerts.csv (every dry run) never loads it.
    from health_score.alerts.delivery import Delivered, SalesforceAlertResult, SlackResult

log = logging.getLogger(__name__)

ALERTS = "alerts.csv"
ALERT_COLUMNS = (
    "period",
    "account_id",
    "account_name",
    "rule",
    "kind",
    "alert",
    "reason",
    "previous_tier",
    "tier",
    "previous_final",
    "final",
    "change",
    "drivers",
)
RAW = "raw.csv"
SCORES = "scores.csv"


def _number(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def alerts_csv(alerts: Sequence[Alert]) -> bytes:
    """One row per alert; every text cell guarded for spreadsheets (numbers stay numbers)."""
    rows = [
        [
            a.period,
            safe_cell(a.account_id),
            safe_cell(a.account_name),
            a.rule_id,
            a.rule_kind,
            safe_cell(a.title),
            safe_cell(a.reason),
            safe_cell(a.previous_tier),
            safe_cell(a.tier),
            _number(a.previous_final),
            _number(a.final),
            _number(a.change),
            safe_cell(a.drivers_text()),
        ]
        for a in alerts
    ]
    return csv_bytes(ALERT_COLUMNS, rows)


def _read(store: RunStore, run_id: str, name: str) -> bytes | None:
    if isinstance(store, LocalRunStore | S3RunStore):
        return store.read(run_id, name)
    return None


def delivered_before(store: RunStore, period: str, run_id: str) -> Delivered:
    """Alert keys the earlier runs of ``period`` delivered (their manifests' ``alerts``)."""
    from health_score.alerts.delivery import Delivered

    delivered = Delivered()
    if not isinstance(store, LocalRunStore | S3RunStore):
        return delivered
    for rid in store.run_ids():
        if rid == run_id or not rid.startswith(f"{period}_"):
            continue
        data = store.read(rid, MANIFEST)
        try:
            manifest = json.loads(data) if data else None
        except ValueError:
            continue
        if not isinstance(manifest, dict) or manifest.get("period") != period:
            continue
        entry = manifest.get("alerts")
        if not isinstance(entry, dict):
            continue
        sf = entry.get("salesforce")
        if isinstance(sf, dict):
            delivered.salesforce.update(str(k) for k in sf.get("delivered_keys") or ())
        slack = entry.get("slack")
        if isinstance(slack, dict):
            delivered.slack.update(str(k) for k in slack.get("announced_keys") or ())
    return delivered


@dataclass
class AlertsOutcome:
    """The manifest's ``alerts`` entry, messages for the run summary, and whether all went."""

    entry: dict[str, Any]
    messages: list[str] = field(default_factory=list)
    ok: bool = True


#: ``alerts.yaml`` as parsed, and the bytes parsed (copied into the run folder).
LoadedAlerts = tuple[AlertsConfig, bytes]


def load_alerts_config(config_dir: Path, tier_labels: Sequence[str]) -> LoadedAlerts:
    """``alerts.yaml`` read once and checked (tier names against ``tier_labels``); raises
    ConfigError naming the key or row. No file: no rules. The pipeline calls it before any
    vendor and hands the result to :func:`run_alerts`."""
    return load_alerts(config_dir, tier_labels)


def run_alerts(
    *,
    writer: RunWriter,
    store: RunStore,
    loaded: LoadedAlerts | None,
    period: str,
    run_id: str,
    scores_csv: bytes,
    compared_run: str | None,
    tier_labels: Sequence[str],
    min_coverage_pct: Decimal,
    send: bool,
    not_sent_reason: str,
    accounts: Mapping[str, Account],
    env: Mapping[str, str],
    writeback: WritebackSettings | None,
    sandbox_ca: str | None = None,
) -> AlertsOutcome:
    """Evaluate, write ``alerts.csv`` and (when ``send``) deliver; never raises for a delivery
    problem (the outcome says what happened)."""
    if loaded is None:
        return AlertsOutcome({"status": "disabled", "reason": f"no {ALERTS_FILE} read"})
    config, raw_config = loaded
    if not config.enabled or not config.rules:
        return AlertsOutcome({"status": "disabled", "reason": f"no rules in {ALERTS_FILE}"})
    writer.write_bytes(f"config/{ALERTS_FILE}", raw_config)
    views = account_views(
        scores_csv,
        _read(store, run_id, RAW),
        _read(store, compared_run, SCORES) if compared_run else None,
    )
    changes = _read(store, run_id, CHANGES)
    alerts = build_alerts(config, period, views, changes, tier_labels, min_coverage_pct)
    writer.write_bytes(ALERTS, alerts_csv(alerts))
    by_rule: dict[str, int] = {}
    for alert in alerts:
        by_rule[alert.rule_id] = by_rule.get(alert.rule_id, 0) + 1
    entry: dict[str, Any] = {
        "status": "evaluated",
        "compared_with": compared_run,
        "alerts": len(alerts),
        "accounts": len({a.account_id for a in alerts}),
        "by_rule": by_rule,
    }
    outcome = AlertsOutcome(entry)
    if not send:
        skipped = {"status": "skipped", "reason": not_sent_reason}
        entry["salesforce"], entry["slack"] = dict(skipped), dict(skipped)
        return outcome
    before = delivered_before(store, period, run_id)
    sf_result, instance_url = _salesforce(config, alerts, accounts, env, writeback, run_id, before)
    link = _linker(instance_url)
    slack_result = _slack(config, alerts, env, period, run_id, before, link, sandbox_ca)
    entry["salesforce"], entry["slack"] = sf_result.as_dict(), slack_result.as_dict()
    sf, slack = entry["salesforce"], entry["slack"]
    if sf["status"] in ("failed", "stopped"):
        outcome.ok = False
        outcome.messages.append(
            f"Salesforce alerts {sf['status']}: {sf['written']} of {sf['attempted']} written, "
            f"{sf['failed']} record failure(s)"
            + (f"; {sf['stopped_reason']}" if sf["stopped_reason"] else "")
        )
    if slack["status"] == "failed":
        outcome.ok = False
        outcome.messages.append(f"Slack digest not sent: {slack['reason']}")
    return outcome


def _salesforce(
    config: AlertsConfig,
    alerts: Sequence[Alert],
    accounts: Mapping[str, Account],
    env: Mapping[str, str],
    writeback: WritebackSettings | None,
    run_id: str,
    before: Delivered,
) -> tuple[SalesforceAlertResult, str]:
    """The upsert's result and the org's instance URL ("" when not connected)."""
    from health_score.alerts.delivery import SalesforceAlertResult, deliver_salesforce
    from health_score.loaders.salesforce import SalesforceLoader

    settings = config.delivery.salesforce
    if not settings.enabled:
        return SalesforceAlertResult("skipped", reason="delivery.salesforce.enabled is false"), ""
    if not alerts:
        return SalesforceAlertResult("skipped", reason="no alerts"), ""
    # The write-back's settings and session; alerts go through sObject Collections (a few
    # records, and the Health Score reference is a nested object only JSON can carry).
    base = writeback or WritebackSettings.model_validate({})
    composite_only = base.model_copy(update={"bulk_threshold": 10**9})
    loader = SalesforceLoader.from_env(composite_only, env)
    if loader is None:
        return SalesforceAlertResult(
            "failed", reason="no Salesforce credentials are set; no alert was created"
        ), ""
    result = deliver_salesforce(
        alerts,
        accounts,
        settings,
        loader,
        run_id=run_id,
        already=frozenset(before.salesforce),
    )
    for failure in result.failures:
        log.warning(
            "salesforce: %s %s (account %s) not written: %s %s",
            failure.object_name,
            failure.key,
            failure.account_id,
            failure.error_code,
            failure.message,
        )
    return result, loader.client.instance_url or ""


def _linker(instance_url: str) -> Callable[[Alert], str]:
    """A link to the alert's Account in Salesforce (none when the org is not known)."""
    if not instance_url.startswith("https://"):
        return lambda alert: ""
    return lambda alert: f"{instance_url.rstrip('/')}/lightning/r/Account/{alert.account_id}/view"


def _slack(
    config: AlertsConfig,
    alerts: Sequence[Alert],
    env: Mapping[str, str],
    period: str,
    run_id: str,
    before: Delivered,
    link: Callable[[Alert], str],
    verify: str | None,
) -> SlackResult:
    from health_score.alerts.delivery import SlackResult, deliver_slack, register_webhook

    settings = config.delivery.slack
    if not settings.enabled:
        return SlackResult("skipped", "delivery.slack.enabled is false")
    url = env.get(settings.webhook_url_env, "")
    if not url:
        return SlackResult("skipped", f"{settings.webhook_url_env} is not set")
    register_webhook(url)
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        return SlackResult("failed", f"{settings.webhook_url_env} is not an https URL")
    return deliver_slack(
        alerts,
        settings,
        url,
        period=period,
        run_id=run_id,
        already=frozenset(before.slack),
        link=link,
        verify=verify,
    )
