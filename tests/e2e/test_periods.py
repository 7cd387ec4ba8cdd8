"""Periods against the sandbox's real servers: each month is read with its own window, and a
past-period run sends no window of another month to any vendor."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from health_score.pipeline import RunSummary
from health_score_sandbox.sandbox import Sandbox
from tests.conftest import sandbox_config
from tests.explanation_support import metric_rows
from tests.periods_support import period_run as run_period

ACCOUNTS = 60
SEPT_END = 1_790_812_800  # 2026-10-01T00:00Z in epoch seconds
AUG_END = 1_788_220_800  # 2026-09-01T00:00Z
DAY = 86_400


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(ACCOUNTS, seed=5) as sb:
        yield sb


@pytest.fixture
def config_dir(tmp_path: Path, sandbox: Sandbox) -> Path:
    return sandbox_config(tmp_path / "config", sandbox)


def period_run(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path, period: str, **options: Any
) -> tuple[RunSummary, dict[str, Any]]:
    summary, manifest, _ = run_period(sandbox, config_dir, tmp_path, period, **options)
    return summary, manifest


class Sent:
    """What the stand-ins received: conversation searches, JQL, SOQL and Looker queries."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.apps = {name: server.app for name, server in sandbox.servers.items()}
        for app in self.apps.values():
            getattr(app, "queries", []).clear()

    def searches(self) -> list[Any]:
        return list(self.apps["intercom"].queries)  # type: ignore[attr-defined]

    def jql(self) -> list[str]:
        return list(self.apps["jira"].queries)  # type: ignore[attr-defined]

    def soql(self) -> list[str]:
        return list(self.apps["salesforce"].queries)  # type: ignore[attr-defined]

    def looker(self) -> list[Any]:
        """The bodies of the inline queries Looker ran (run_inline_query)."""
        return list(self.apps["looker"].queries)  # type: ignore[attr-defined]


def created_bounds(query: Any) -> tuple[int, int]:
    """The ``created_at`` > and < values of a conversation search."""
    bounds = {c["operator"]: c["value"] for c in query["value"] if c["field"] == "created_at"}
    return bounds[">"], bounds["<"]


def test_two_past_months_are_read_with_their_own_windows(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    sent = Sent(sandbox)
    _, august = period_run(sandbox, config_dir, tmp_path, "2026-08", dry_run=True)
    august_sent = (sent.searches(), sent.jql(), sent.soql())
    sent = Sent(sandbox)
    _, september = period_run(sandbox, config_dir, tmp_path, "2026-09", dry_run=True)
    september_sent = (sent.searches(), sent.jql(), sent.soql())

    assert august["as_of"] == "2026-09-01T00:00:00+00:00"
    assert september["as_of"] == "2026-10-01T00:00:00+00:00"
    assert august["reference_now"] == september["reference_now"] == "2026-11-01T00:00:00+00:00"
    # Intercom: 30 days (lookback_days) before as_of; Jira: the bugs open at as_of;
    # Salesforce: 12 months (lookback_months) before as_of.
    assert {n: s["window"] for n, s in august["sources"].items() if n != "looker"} == {
        "intercom": {"from": "2026-08-02T00:00:00+00:00", "to": "2026-09-01T00:00:00+00:00"},
        "jira": {"from": None, "to": "2026-09-01T00:00:00+00:00"},
        "salesforce": {"from": "2025-09-01T00:00:00+00:00", "to": "2026-09-01T00:00:00+00:00"},
    }
    assert september["sources"]["intercom"]["window"] == {
        "from": "2026-09-01T00:00:00+00:00",
        "to": "2026-10-01T00:00:00+00:00",
    }
    assert september["sources"]["jira"]["window"] == {
        "from": None,
        "to": "2026-10-01T00:00:00+00:00",
    }
    # Not one dated query of one month is sent again for the other.
    for first, second in zip(august_sent, september_sent, strict=True):
        dated = [{json.dumps(q, sort_keys=True) for q in s if _dated(q)} for s in (first, second)]
        assert dated[0] and dated[1]
        assert not dated[0] & dated[1]


def _dated(query: Any) -> bool:
    """A query naming an instant (a search or JQL always does; SOQL for dated records)."""
    return not isinstance(query, str) or bool(re.search(r"\d{4}-\d\d-\d\d", query))


def test_a_past_period_live_run_sends_no_window_of_another_month(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    sent = Sent(sandbox)
    sandbox.reset_stats()
    summary, manifest = period_run(
        sandbox, config_dir, tmp_path, "2026-09", dry_run=False, allow_degraded=True
    )
    assert manifest["dry_run"] is False
    # Looker: every default Look names its date_field, so each is run for September: its saved
    # query with the date filter replaced by the month's range (1 login + 4 Looks × 2 requests).
    assert sandbox.requests("looker") == 1 + 4 * 2
    assert manifest["sources"]["looker"]["status"] == "ok"
    assert manifest["sources"]["looker"]["window"] == {
        "from": "2026-09-01T00:00:00+00:00",
        "to": "2026-10-01T00:00:00+00:00",
    }
    assert sorted((q["view"], q["filters"]) for q in sent.looker()) == [
        (view, {f"{view}.activity_month": "2026-09-01 to 2026-10-01"})
        for view in ("account_usage", "automations", "integrations", "platform_value")
    ]
    # The run is degraded by Salesforce's current-state metrics only, and is written anyway.
    assert manifest["status"] == "degraded"
    assert [n for n, s in manifest["sources"].items() if s["status"] != "ok"] == ["salesforce"]
    assert summary.writeback is not None and summary.writeback["status"] == "ok"
    # Intercom: every conversation search lies within [as_of − 30 days, as_of).
    searches = sent.searches()
    assert searches
    for query in searches:
        above, below = created_bounds(query)
        assert SEPT_END - 30 * DAY - 1 <= above < below <= SEPT_END
    assert max(created_bounds(q)[1] for q in searches) == SEPT_END
    assert min(created_bounds(q)[0] for q in searches) == SEPT_END - 30 * DAY - 1
    # Jira: one instant, the period's end, and never today's status.
    for jql in sent.jql():
        assert set(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", jql)) == {"2026-10-01 00:00"}, jql
        assert "statusCategory" not in jql
    # Salesforce: every date literal is the window's start or end, none after as_of.
    soql = [q for q in sent.soql() if not q.lstrip().upper().startswith(("SELECT ID, NAME",))]
    dates = {d for q in soql for d in re.findall(r"\b\d{4}-\d\d-\d\d\b", q)}
    assert dates == {"2025-10-01", "2026-10-01"}
    assert AUG_END < SEPT_END  # (the constants are the two months' ends, in order)


CURRENT_STATE = [
    "arr_trajectory_pct",
    "champion_stability",
    "days_to_renewal",
    "expansion_signals",
    "responsiveness",
    "tier_alignment",
]


def test_a_past_period_marks_salesforce_current_state_unavailable_and_degrades_the_run(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    """2026-09 ends 31 days before the sandbox date: more than the 7 days of grace."""
    sent = Sent(sandbox)
    summary, manifest = period_run(sandbox, config_dir, tmp_path, "2026-09", dry_run=True)
    assert manifest["status"] == "degraded"
    report = manifest["sources"]["salesforce"]
    assert report["status"] == "degraded"
    assert report["missing_metrics"] == CURRENT_STATE
    (note,) = [n for n in report["notes"] if "past period" in n]
    assert note == (
        "not reconstructable for a past period (as_of 2026-10-01 is more than 7 days before "
        "now): no field history; current-state metrics unavailable: arr_trajectory_pct, "
        "champion_stability, days_to_renewal, expansion_signals, responsiveness, "
        "tier_alignment; churn signal status (caps cannot be applied)"
    )
    # Only the account ids and creation dates (who was in the org then) are asked of Account,
    # with the owner's name (context: today's owner), and no signal is read.
    account = [q for q in sent.soql() if " FROM Account " in q]
    assert account and all(
        q.startswith("SELECT Id, CreatedDate, Owner.Name FROM Account WHERE") for q in account
    )
    assert not [q for q in sent.soql() if "Churn_Signal__c" in q]
    status = {
        (r["account_id"], r["metric"]): r["status"]
        for r in metric_rows(Path(summary.run_location or ""))
    }
    for profile in sandbox.portfolio.profiles:
        for metric in CURRENT_STATE:
            assert status[(profile.account_id, metric)] == "unavailable"
    # Dated records still count: the metrics of payments, closed deals and events are there.
    assert any(
        status[(p.account_id, "payment_health")] != "unavailable"
        for p in sandbox.portfolio.profiles
    )


def test_the_month_just_ended_reads_current_state_within_the_grace_days(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    """2026-10 ends on the sandbox date: current-state fields still describe it."""
    _, manifest = period_run(sandbox, config_dir, tmp_path, "2026-10", dry_run=True)
    assert manifest["status"] == "ok"
    assert manifest["sources"]["salesforce"]["missing_metrics"] == []
