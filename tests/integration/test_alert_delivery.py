"""Delivering alerts to the sandbox's Salesforce and Slack stand-ins over loopback HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from health_score.alerts.delivery import deliver_salesforce, deliver_slack
from health_score.alerts.evaluation import Alert, Driver
from health_score.alerts.rules import SalesforceDelivery, SlackDelivery
from health_score.loaders.salesforce import Prepared, SalesforceLoader
from health_score.records import Account
from health_score.redact import redact
from health_score.sources.http import HttpPolicy
from health_score_sandbox.sandbox import Sandbox

FAST = HttpPolicy(attempts=3, budget_seconds=10.0, wait_initial=0.01, wait_max=0.05, wait_jitter=0)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(3) as sb:
        yield sb


def alert(account_id: str, rule: str = "tier_worsened") -> Alert:
    return Alert(
        period="2026-10",
        account_id=account_id,
        account_name=f"Account {account_id[-6:]}",
        rule_id=rule,
        rule_kind=rule,
        title="Health tier worsened",
        reason="tier Healthy → At Risk",
        tier="At Risk",
        previous_tier="Healthy",
        final=Decimal("70.0"),
        previous_final=Decimal("81.5"),
        drivers=(Driver("p1_p2_volume", "support_health", "2", "6", Decimal("-9.0")),),
    )


def test_health_alerts_upsert_once_and_list_per_record_failures(sandbox: Sandbox) -> None:
    ids = [p.account_id for p in sandbox.portfolio.profiles]
    loader = SalesforceLoader.from_env(None, sandbox.env())
    assert loader is not None
    # Only the first account has its period's Health Score record.
    loader.write(
        "Health_Score__c",
        [
            Prepared(
                ids[0], f"{ids[0]}-2026-10", {"External_Key__c": f"{ids[0]}-2026-10", "Name": "x"}
            )
        ],
        external_id="External_Key__c",
    )
    accounts = {i: Account(i, i, "paid", sf_account_id=i) for i in ids[:2]}
    settings = SalesforceDelivery(assign_to="integration_user")
    result = deliver_salesforce(
        [alert(ids[0]), alert(ids[1]), alert("acct-without-sf-id")],
        accounts,
        settings,
        loader,
        run_id="r1",
        already=frozenset(),
    )
    assert (result.status, result.written, result.created) == ("failed", 1, 1)
    assert result.skipped_without_salesforce_id == ("acct-without-sf-id",)
    [failure] = result.failures
    assert (failure.account_id, failure.key, failure.error_code) == (
        ids[1],
        f"{ids[1]}-tier_worsened-2026-10",
        "INVALID_FIELD",
    )
    assert "Foreign key external ID" in failure.message
    assert failure.as_dict()["object"] == "Health_Alert__c"
    records = sandbox.servers["salesforce"].app.writes.records["Health_Alert__c"]  # type: ignore[attr-defined]
    stored = records[f"{ids[0]}-tier_worsened-2026-10"]
    assert stored["Drivers__c"] == "support_health.p1_p2_volume -9.0 pts (2 → 6)"
    assert stored["Score_Change__c"] == Decimal("-11.5")

    # Upserting again (a run that crashed before its manifest): the same record, updated.
    again = deliver_salesforce(
        [alert(ids[0])], accounts, settings, loader, run_id="r2", already=frozenset()
    )
    assert (again.written, again.created) == (1, 0)
    assert len(records) == 1
    # Delivered before (from an earlier manifest): not sent at all.
    skipped = deliver_salesforce(
        [alert(ids[0])],
        accounts,
        settings,
        loader,
        run_id="r3",
        already=frozenset({alert(ids[0]).key}),
    )
    assert (skipped.attempted, skipped.already_delivered, skipped.requests) == (0, 1, 0)


def test_slack_digest_retries_429_and_is_sent_once(sandbox: Sandbox) -> None:
    url = sandbox.env()["SLACK_WEBHOOK_URL"]
    sandbox.slack_server.faults.storm_429 = 2
    sandbox.slack_server.faults.storm_retry_after = 0
    alerts = [alert("001A"), alert("001B", "score_drop_10")]
    sent = deliver_slack(
        alerts,
        SlackDelivery(),
        url,
        period="2026-10",
        run_id="r1",
        already=frozenset(),
        link=lambda a: "",
        policy=FAST,
    )
    assert (sent.status, sent.requests, sent.retries) == ("sent", 3, 2)
    [message] = sandbox.slack.messages
    assert message["text"] == "Health Score alerts for 2026-10: 2 alert(s) on 2 account(s)"
    again = deliver_slack(
        alerts,
        SlackDelivery(),
        url,
        period="2026-10",
        run_id="r2",
        already=frozenset(sent.announced_keys),
        link=lambda a: "",
        policy=FAST,
    )
    assert again.status == "skipped" and len(sandbox.slack.messages) == 1


def test_a_refused_webhook_never_shows_its_url(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    url = sandbox.env()["SLACK_WEBHOOK_URL"] + "wrong"
    with caplog.at_level(logging.INFO):
        result = deliver_slack(
            [alert("001A")],
            SlackDelivery(),
            url,
            period="2026-10",
            run_id="r1",
            already=frozenset(),
            link=lambda a: "",
            policy=FAST,
        )
    assert (result.status, result.reason) == (
        "failed",
        "Slack webhook refused the digest (HTTP 403)",
    )
    secret = url.rsplit("/", 1)[-1]
    assert secret not in caplog.text
    # Registered: any line or file quoting the URL or its path is redacted.
    path = url.split("127.0.0.1", 1)[1].split("/", 1)[1]
    assert secret not in redact(f"POST {url} and /{path}")
    assert sandbox.slack.messages == []
