"""The Salesforce extractor over past periods of a sandbox that lives through time, with
``field_history: true``: Accounts as they stood (created before ``as_of``, fields rolled back),
churn signals open then with their status rolled back from ``Churn_Signal__History``,
expansions open then — read exactly as the stand-in's records say, the source not degraded."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from health_score.sources.salesforce.settings import ChurnSignalFields, OpportunityFields
from health_score_sandbox.salesforce import METRICS, Data
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.server import Faults
from tests.conftest import sandbox_config
from tests.periods_support import period_run as run_period
from tests.periods_support import raw_by_account

# One worker builds this module's sandbox history (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_salesforce_periods")

#: Two past periods: (period, as_of, the window's start: as_of − 12 months).
PERIODS = [
    ("2026-05", date(2026, 6, 1), date(2025, 6, 1)),
    ("2026-08", date(2026, 9, 1), date(2025, 9, 1)),
]
SIGNAL_COLUMNS = ("critical_count", "moderate_count", "watch_count", "critical_confirmed")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(60, seed=5, history_months=24) as sb:
        yield sb


@pytest.fixture(scope="module")
def data(sandbox: Sandbox) -> Data:
    found = sandbox.data["salesforce"]
    assert isinstance(found, Data)
    return found


def with_history(sources: dict[str, Any]) -> None:
    sources["salesforce"]["field_history"] = True


def period_run(
    sandbox: Sandbox, tmp_path: Path, period: str
) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """One dry run of ``period`` on the sandbox's date: raw.csv by account_id, the manifest."""
    config_dir = sandbox_config(tmp_path / period / "config", sandbox, with_history)
    _, manifest, folder = run_period(sandbox, config_dir, tmp_path, period, dry_run=True)
    return raw_by_account(folder), manifest


def cell(value: str) -> Decimal | None:
    return Decimal(value) if value else None


def records(data: Data, object_name: str) -> list[dict[str, Any]]:
    sobject = data.org.get(object_name)
    assert sobject is not None
    return sobject.records


def created_after(data: Data, as_of: date) -> set[str]:
    at = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    return {r["Id"] for r in records(data, "Account") if r["CreatedDate"] >= at}


@pytest.mark.parametrize(("period", "as_of", "start"), PERIODS)
def test_a_past_period_reads_metrics_and_signals_exactly_and_is_not_degraded(
    sandbox: Sandbox, data: Data, tmp_path: Path, period: str, as_of: date, start: date
) -> None:
    app = sandbox.servers["salesforce"].app
    app.queries.clear()  # type: ignore[attr-defined]
    rows, manifest = period_run(sandbox, tmp_path, period)
    report = manifest["sources"]["salesforce"]
    assert report["status"] == "ok", report
    assert report["missing_metrics"] == []
    assert not [n for n in report["notes"] if "past period" in n or "cannot be read" in n]
    expected = data.expected_at(as_of)
    compared = 0
    for account_id, metrics in expected.items():
        for metric in METRICS:
            got = cell(rows[account_id][metric])
            assert got == metrics[metric], (period, account_id, metric)
            compared += got is not None
    assert compared > 300
    signals = data.expected_signals_at(as_of)
    assert sum(c.critical + c.moderate + c.watch for c in signals.values()) >= 3
    for account_id, counts in signals.items():
        got = tuple(int(rows[account_id][c]) for c in SIGNAL_COLUMNS)
        want = (counts.critical, counts.moderate, counts.watch, counts.critical_confirmed)
        assert got == want, (period, account_id)
    # An account created after as_of had no Salesforce data then.
    later = created_after(data, as_of)
    assert later
    for account_id in later:
        assert {cell(rows[account_id][m]) for m in METRICS} == {None}, account_id
        assert account_id not in signals
    sent: list[str] = list(app.queries)  # type: ignore[attr-defined]
    assert any("FROM Churn_Signal__History" in q for q in sent)
    assert_validated(sent, as_of, start)


def test_signals_are_counted_as_they_stood_read_by_hand(sandbox: Sandbox, tmp_path: Path) -> None:
    """001Sb…26 (churned 2026-09-17), read by hand from its records: on 2026-06-01 a Critical
    Confirmed signal (Active) and a Watch Confirmed one (Active, Monitoring from 2026-06-27);
    on 2026-09-01 only a Critical Confirmed one, Monitoring since 2026-08-09 (counted Moderate).
    Today all of them are Resolved."""
    account = "001Sb0000000026IAA"
    june, _ = period_run(sandbox, tmp_path, "2026-05")
    assert tuple(june[account][c] for c in SIGNAL_COLUMNS) == ("1", "0", "1", "1")
    september, _ = period_run(sandbox, tmp_path, "2026-08")
    assert tuple(september[account][c] for c in SIGNAL_COLUMNS) == ("0", "1", "0", "0")


def test_expansions_open_then_but_closed_now_count_for_the_period(data: Data) -> None:
    """The rule matters: some expansions open at 2026-06-01 are closed today."""
    at = datetime(2026, 6, 1, tzinfo=UTC)
    open_then_closed_now = [
        r
        for r in records(data, "Opportunity")
        if r["Type"] in ("Expansion", "Upsell")
        and not r["IsDeleted"]
        and r["CreatedDate"] < at
        and r["IsClosed"]
        and r["CloseDate"] >= at.date()
    ]
    assert len(open_then_closed_now) >= 3


#: Every identifier the default sources.yaml names, and SOQL's own words.
IDENTIFIERS = {
    *[
        "SELECT",
        "FROM",
        "WHERE",
        "IN",
        "AND",
        "OR",
        "GROUP",
        "BY",
        "ORDER",
        "ASC",
        "LIMIT",
        "COUNT",
        "MAX",
        "TRUE",
        "FALSE",
        "true",
        "false",
    ],
    *[
        "Id",
        "CreatedDate",
        "IsDeleted",
        "IsChild",
        "Field",
        "OldValue",
        "ParentId",
        "AccountId",
        "n",
        "latest",
    ],
    *["Account", "AccountHistory", "Opportunity", "Payment__c", "Event", "Churn_Signal__c"],
    "Churn_Signal__History",
    "Amount",  # outcomes.csv: the renewal opportunities' ARR
    *["Owner", "Name"],  # scores.csv context: the Account owner's name (Owner.Name)
    *[
        "Renewal_Date__c",
        "ARR__c",
        "Prior_Year_ARR__c",
        "Support_Tier__c",
        "Champion_Changed_Date__c",
    ],
    *["Avg_Response_Hours__c", "Type", "CloseDate", "IsWon", "IsClosed", "Account__c", "Status__c"],
    *["Payment_Date__c", "ActivityDate", "Attended__c", "Severity__c", "Confidence__c"],
}


def assert_validated(sent: list[str], as_of: date, start: date) -> None:
    """Every word outside a literal is a known API name or keyword; every date is the period's
    end or its window's start, and every datetime the period's end."""
    for soql in sent:
        bare = re.sub(r"'(?:[^'\\]|\\.)*'", "''", soql)  # escaped literals out
        datetimes = re.findall(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", bare)
        assert set(datetimes) <= {f"{as_of.isoformat()}T00:00:00Z"}, soql
        bare = re.sub(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", " ", bare)
        dates = re.findall(r"\d{4}-\d{2}-\d{2}", bare)
        assert set(dates) <= {as_of.isoformat(), start.isoformat()}, soql
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"\d{4}-\d{2}-\d{2}", " ", bare)))
        assert words <= IDENTIFIERS, (words - IDENTIFIERS, soql)


def test_a_hidden_signal_history_makes_signal_status_unavailable_and_degrades(
    tmp_path: Path,
) -> None:
    faults = {"salesforce": Faults(hidden_objects=["Churn_Signal__History"])}
    with Sandbox(12, seed=5, history_months=24, faults=faults) as hidden:
        rows, manifest = period_run(hidden, tmp_path, "2026-05")
    assert manifest["status"] == "degraded"
    report = manifest["sources"]["salesforce"]
    assert report["status"] == "degraded"
    (note,) = [n for n in report["notes"] if "Churn_Signal__History" in n]
    assert note == (
        "Churn_Signal__History cannot be read (INVALID_TYPE: field history not tracked for "
        "Churn_Signal__c, not in the org, or hidden from this user): the churn signals' status "
        "at 2026-06-01 is not reconstructable for a past period; churn signal status "
        "unavailable (caps cannot be applied)"
    )
    # The metrics are still read (only the signals are unknown).
    assert any(r["days_to_renewal"] for r in rows.values())


def test_the_signal_history_object_is_derived_from_the_object_name_unless_configured() -> None:
    assert ChurnSignalFields().history == ("Churn_Signal__History", "ParentId")
    assert ChurnSignalFields(object_name="Risk").history == ("RiskHistory", "RiskId")
    configured = ChurnSignalFields(
        history_object_name="Signal_Audit__c", history_parent_field="Signal__c"
    )
    assert configured.history == ("Signal_Audit__c", "Signal__c")
    with pytest.raises(ValueError, match="String should match pattern"):
        ChurnSignalFields(history_object_name="Churn_Signal__History WHERE")
    # A past period tells contractions from expansions by type: they must not share one.
    with pytest.raises(ValueError, match="both a contraction and an expansion: upsell"):
        OpportunityFields(contraction_types=("Downgrade", "Upsell"))
