"""The Salesforce stand-in through time: Accounts whose tracked fields change when things happen
(with AccountHistory rows), renewal opportunities and churn from the timeline, each month's dated
records kept in their month, and the real pipeline reading two past periods exactly."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from health_score_sandbox import salesforce as sfs
from health_score_sandbox.portfolio import build_portfolio
from health_score_sandbox.salesforce import METRICS, Data, SignalCounts
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.timeline import build_timeline, slices
from tests.conftest import DEFAULT_CONFIG
from tests.periods_support import period_run, raw_by_account

# One worker builds this module's sandbox history (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_history_salesforce")

#: 24 months: the timeline decides renewals only a year or more after an account's first month,
#: so a 12-month history has no renewal (and no churn) at all.
HISTORY_MONTHS = 24
ACCOUNT = "001Sb0000000002IAA"  # a customer since before the history; renewed on 2026-01-23


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(60, seed=5, history_months=HISTORY_MONTHS) as sb:
        yield sb


@pytest.fixture(scope="module")
def data(sandbox: Sandbox) -> Data:
    found = sandbox.data["salesforce"]
    assert isinstance(found, Data)
    return found


def records(data: Data, object_name: str) -> list[dict[str, Any]]:
    sobject = data.org.get(object_name)
    assert sobject is not None
    return sobject.records


def in_org(data: Data) -> set[str]:
    return {r["Id"] for r in records(data, "Account")}


def dated(data: Data, account_id: str) -> list[tuple[str, date]]:
    """Every dated record of one account: (object, its date)."""
    out: list[tuple[str, date]] = []
    out += [
        ("payment", r["Payment_Date__c"])
        for r in records(data, "Payment__c")
        if r["Account__c"] == account_id
    ]
    out += [
        ("event", r["ActivityDate"]) for r in records(data, "Event") if r["AccountId"] == account_id
    ]
    out += [
        ("signal", r["Detected_Date__c"])
        for r in records(data, "Churn_Signal__c")
        if r["Account__c"] == account_id
    ]
    for r in records(data, "Opportunity"):
        if r["AccountId"] == account_id:
            out += [("opportunity", r["CloseDate"]), ("opportunity", r["CreatedDate"].date())]
    return out


# -- churn and renewals --------------------------------------------------------------------------


def test_churned_accounts_lose_their_renewal_on_the_churn_day_and_fall_silent(
    sandbox: Sandbox, data: Data
) -> None:
    assert sandbox.timeline is not None
    churned = {a: d for a, d in sandbox.timeline.churned().items() if a in in_org(data)}
    assert len(churned) >= 5
    for account_id, day in churned.items():
        renewals = [
            r
            for r in records(data, "Opportunity")
            if r["AccountId"] == account_id and r["Type"] == "Renewal" and r["CloseDate"] >= day
        ]
        assert [(r["CloseDate"], r["StageName"], r["IsClosed"], r["IsWon"]) for r in renewals] == [
            (day, "Closed Lost", True, False)
        ], account_id
        (account,) = [r for r in records(data, "Account") if r["Id"] == account_id]
        assert account["Churn_Date__c"] == day
        assert account["Renewal_Date__c"] is None and account["ARR__c"] == 0.0
        after = [(kind, d) for kind, d in dated(data, account_id) if d > day]
        assert after == [], account_id
        lost = [r for r in renewals if r["StageName"] == "Closed Lost"]
        assert (account_id, "churn", day, Decimal(repr(lost[0]["Amount"]))) in data.outcomes_at(
            sandbox.portfolio.as_of
        )
    # Live customers have no churn date.
    live = [r for r in records(data, "Account") if r["Id"] not in churned]
    assert {r["Churn_Date__c"] for r in live} == {None}


def test_renewed_anniversaries_are_closed_won_and_the_next_one_is_open(
    sandbox: Sandbox, data: Data
) -> None:
    assert sandbox.timeline is not None
    org = in_org(data)
    renewed = [
        r for r in sandbox.timeline.renewals() if r.outcome == "renewed" and r.account_id in org
    ]
    assert len(renewed) >= 20
    opportunities = records(data, "Opportunity")
    for renewal in renewed:
        (won,) = [
            r
            for r in opportunities
            if r["AccountId"] == renewal.account_id
            and r["Type"] == "Renewal"
            and r["CloseDate"] == renewal.day
        ]
        assert (won["StageName"], won["IsClosed"], won["IsWon"]) == ("Closed Won", True, True)
    outcomes = data.outcomes_at(date(2026, 6, 1))
    assert all(day < date(2026, 6, 1) for _, _, day, _ in outcomes)
    assert {(a, d) for a, e, d, _ in outcomes if e == "renewal"} >= {
        (r.account_id, r.day) for r in renewed if r.day < date(2026, 6, 1)
    }
    # Each live customer's renewal opportunity for its next anniversary is open.
    for account in records(data, "Account"):
        life = sandbox.timeline.lives.get(account["Id"])
        if life is None or life.churned_on is not None:
            continue
        (open_one,) = [
            r
            for r in opportunities
            if r["AccountId"] == account["Id"] and r["Type"] == "Renewal" and not r["IsClosed"]
        ]
        assert open_one["CloseDate"] == life.next_renewal(date(2026, 11, 1))
        assert account["Renewal_Date__c"] in (None, open_one["CloseDate"])


def test_the_account_history_rebuilds_arr_and_the_renewal_date_of_a_past_period(
    data: Data,
) -> None:
    rows = [r for r in records(data, "AccountHistory") if r["AccountId"] == ACCOUNT]
    arr = [(r["CreatedDate"], r["OldValue"], r["NewValue"]) for r in rows if r["Field"] == "ARR__c"]
    # Read by hand from the records: one change at each renewal, at the renewal day.
    assert arr == [
        (datetime(2025, 1, 23, 10, tzinfo=UTC), 466543.68, 468959.43),
        (datetime(2026, 1, 23, 10, tzinfo=UTC), 468959.43, 474871.84),
    ]
    renewal = [
        (r["CreatedDate"], r["OldValue"], r["NewValue"])
        for r in rows
        if r["Field"] == "Renewal_Date__c"
    ]
    assert renewal == [
        (datetime(2025, 1, 23, 10, tzinfo=UTC), date(2025, 1, 23), date(2026, 1, 23)),
        (datetime(2026, 1, 23, 10, tzinfo=UTC), date(2026, 1, 23), date(2027, 1, 23)),
    ]
    (account,) = [r for r in records(data, "Account") if r["Id"] == ACCOUNT]
    assert (account["ARR__c"], account["Prior_Year_ARR__c"]) == (474871.84, 468959.43)
    # At 2025-12-01 (the old value of the first change after it): ARR 468,959.43 on a prior
    # 466,543.68 → +0.5178 %, and 2026-01-23 is 53 days ahead.
    past = data.expected_at(date(2025, 12, 1))[ACCOUNT]
    assert past["arr_trajectory_pct"] == Decimal("0.5178")
    assert past["days_to_renewal"] == Decimal(53)
    # Today: 474,871.84 on 468,959.43 → +1.2608 %, next renewal 2027-01-23 (83 days).
    now = data.expected_at(date(2026, 11, 1))[ACCOUNT]
    assert now["arr_trajectory_pct"] == Decimal("1.2608")
    assert now["days_to_renewal"] == Decimal(83)
    assert now == data.expected[ACCOUNT]


def test_a_signal_is_open_while_active_or_monitoring_and_its_status_changes_are_history(
    data: Data,
) -> None:
    account = "001Sb0000000026IAA"  # churned on 2026-09-17: its open signals resolve then
    changes = [
        (r["CreatedDate"], r["OldValue"], r["NewValue"])
        for r in records(data, "Churn_Signal__History")
        if r["ParentId"] == "a0CSb0000000033MAA"
    ]
    # A Watch Confirmed signal detected 2026-04-06.
    assert changes == [
        (datetime(2026, 6, 27, 10, tzinfo=UTC), "Active", "Monitoring"),
        (datetime(2026, 9, 17, 12, tzinfo=UTC), "Monitoring", "Resolved"),
    ]
    # 2026-03-01: only its Critical Confirmed signal a0C…30 (detected 2026-02-17, Active until
    # 2026-08-01) is open.
    assert data.expected_signals_at(date(2026, 3, 1))[account] == SignalCounts(
        critical=1, critical_confirmed=1
    )
    # 2026-06-01: that one and the Watch Confirmed one, still Active.
    assert data.expected_signals_at(date(2026, 6, 1))[account] == SignalCounts(
        critical=1, watch=1, critical_confirmed=1, watch_confirmed=1
    )
    # 2026-07-01: the Watch one is Monitoring (one lower than Watch: not counted); a0C…38,
    # detected on 2026-07-01 itself, is not known yet.
    assert data.expected_signals_at(date(2026, 7, 1))[account] == SignalCounts(
        critical=1, critical_confirmed=1
    )
    # 2026-09-01: a0C…30 resolved; a0C…38 (Critical Confirmed) Monitoring from 2026-08-09 counts
    # as Moderate.
    assert data.expected_signals_at(date(2026, 9, 1))[account] == SignalCounts(
        moderate=1, moderate_confirmed=1
    )
    assert data.expected_signals_at(date(2026, 10, 1))[account] == SignalCounts()
    statuses = {r["Id"]: r["Status__c"] for r in records(data, "Churn_Signal__c")}
    assert statuses["a0CSb0000000033MAA"] == "Resolved"


def test_new_accounts_are_created_when_they_join_and_hold_nothing_before(
    sandbox: Sandbox, data: Data
) -> None:
    assert sandbox.timeline is not None
    start = sandbox.timeline.month_starts[0]
    joiners = {
        a: life.joined
        for a, life in sandbox.timeline.lives.items()
        if life.joined > start and a in in_org(data)
    }
    assert len(joiners) >= 3
    history = records(data, "AccountHistory")
    for account_id, joined in joiners.items():
        (account,) = [r for r in records(data, "Account") if r["Id"] == account_id]
        assert account["CreatedDate"] == datetime(
            joined.year, joined.month, joined.day, 9, tzinfo=UTC
        )
        assert [d for _, d in dated(data, account_id) if d < joined] == []
        assert [
            r for r in history if r["AccountId"] == account_id and r["CreatedDate"].date() < joined
        ] == []
        assert set(data.expected_at(joined)[account_id].values()) == {None}
        assert account_id not in data.expected_signals_at(joined)


def test_dated_records_stay_in_their_month_and_old_events_are_archived(data: Data) -> None:
    events = records(data, "Event")
    assert {e["IsArchived"] for e in events if e["ActivityDate"] < date(2025, 11, 1)} == {True}
    assert {e["IsArchived"] for e in events if e["ActivityDate"] >= date(2025, 11, 1)} == {False}
    for payment in records(data, "Payment__c"):
        assert payment["CreatedDate"].date() == payment["Payment_Date__c"]
    # The expected metrics move from month to month.
    june, september = data.expected_at(date(2026, 7, 1)), data.expected_at(date(2026, 10, 1))
    assert june != september


# -- the real pipeline over past periods ---------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path, sandbox: Sandbox) -> Path:
    """The default configuration, with the org's Account field history read (field_history)."""
    folder = tmp_path / "config"
    folder.mkdir()
    for name in ("weights.yaml", "thresholds.yaml"):
        shutil.copy(DEFAULT_CONFIG / name, folder / name)
    sources = (DEFAULT_CONFIG / "sources.yaml").read_text(encoding="utf-8")
    assert sources.count("field_history: false") == 1
    (folder / "sources.yaml").write_text(
        sources.replace("field_history: false", "field_history: true"), encoding="utf-8"
    )
    sandbox.write_mapping(folder / "account_mapping.csv")
    return folder


def raw_rows(sandbox: Sandbox, config_dir: Path, tmp_path: Path, period: str) -> dict[str, Any]:
    _, _, folder = period_run(sandbox, config_dir, tmp_path, period, dry_run=True)
    return raw_by_account(folder)


def cell(value: str) -> Decimal | None:
    return Decimal(value) if value else None


#: What no record holds for a past period (the pipeline marks it unavailable): nothing, with
#: field history (expansions open then are told by CreatedDate and CloseDate).
NOT_RECONSTRUCTED: set[str] = set()


def created_by(data: Data, as_of: date) -> set[str]:
    at = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    return {r["Id"] for r in records(data, "Account") if r["CreatedDate"] < at}


@pytest.mark.parametrize(
    ("period", "as_of"), [("2026-04", date(2026, 5, 1)), ("2026-08", date(2026, 9, 1))]
)
def test_the_pipeline_reads_a_past_period_exactly_as_the_sandbox_expects(
    sandbox: Sandbox, data: Data, config_dir: Path, tmp_path: Path, period: str, as_of: date
) -> None:
    rows = raw_rows(sandbox, config_dir, tmp_path, period)
    expected = sandbox.expected_metrics(as_of)
    existing = created_by(data, as_of)
    compared = 0
    for account_id, metrics in expected.items():
        if account_id in {r["Id"] for r in records(data, "Account")} - existing:
            continue  # created after as_of: see the test below
        for metric in METRICS:
            got = cell(rows[account_id][metric])
            if metric in NOT_RECONSTRUCTED:
                assert got is None, (account_id, metric)
                continue
            assert got == metrics[metric], (period, account_id, metric)
            compared += got is not None
    assert compared > 300


def test_two_past_periods_differ(sandbox: Sandbox, config_dir: Path, tmp_path: Path) -> None:
    april = raw_rows(sandbox, config_dir, tmp_path, "2026-04")
    august = raw_rows(sandbox, config_dir, tmp_path, "2026-08")
    changed = {
        metric
        for account_id in april
        for metric in METRICS
        if april[account_id][metric] != august[account_id][metric]
    }
    assert {"days_to_renewal", "champion_stability", "payment_health", "exec_engagement"} <= changed


def test_the_month_just_ended_matches_signals_and_expansions_too(
    sandbox: Sandbox, data: Data, config_dir: Path, tmp_path: Path
) -> None:
    rows = raw_rows(sandbox, config_dir, tmp_path, "2026-10")
    for account_id, metrics in sandbox.expected_metrics().items():
        for metric in METRICS:
            assert cell(rows[account_id][metric]) == metrics[metric], (account_id, metric)
    for account_id, counts in data.expected_signals.items():
        assert int(rows[account_id]["critical_count"]) == counts.critical
        assert int(rows[account_id]["moderate_count"]) == counts.moderate
        assert int(rows[account_id]["watch_count"]) == counts.watch


def test_accounts_created_after_a_past_period_have_no_metrics_for_it(
    sandbox: Sandbox, data: Data, config_dir: Path, tmp_path: Path
) -> None:
    rows = raw_rows(sandbox, config_dir, tmp_path, "2026-04")
    later = {r["Id"] for r in records(data, "Account")} - created_by(data, date(2026, 5, 1))
    assert later
    for account_id in later:
        for metric in METRICS:
            assert cell(rows[account_id][metric]) is None, (account_id, metric)


def test_the_history_is_the_same_for_the_same_seed() -> None:
    def snapshot(seed: int) -> str:
        base = build_portfolio(20, seed=seed)
        timeline = build_timeline(base, 14)
        generated = sfs.generate_history(timeline, slices(base, timeline))
        objects = {o.name: o.records for o in generated.org.objects.values()}
        return repr([objects, generated.expected, generated.expected_signals])

    assert snapshot(3) == snapshot(3)
    assert snapshot(3) != snapshot(4)
