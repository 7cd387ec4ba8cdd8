"""Intercom and Jira through time: records dated over the months, nothing while an account is
inactive, and past periods read by the real pipeline exactly as the stand-ins recount them."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as clock
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from health_score.pipeline import RunOptions, run
from health_score.records import Account
from health_score.sources.http import HttpPolicy, SourceClient
from health_score.sources.intercom import Settings as IntercomSettings
from health_score.sources.intercom import extractor as intercom_http
from health_score_sandbox import intercom, jira
from health_score_sandbox.jql import Index
from health_score_sandbox.portfolio import Account as SandboxAccount
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.server import VendorServer
from health_score_sandbox.timeline import month_of
from tests.conftest import DEFAULT_CONFIG
from tests.intercom_support import company

# One worker builds this module's sandbox history (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_history_intercom_jira")

SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)
MONTHS = 6
DAY = 86_400
SEP_1 = 1_788_220_800  # 2026-09-01T00:00Z in epoch seconds
FAST = HttpPolicy(wait_initial=0.02, wait_max=0.1, wait_jitter=0.02)


def epoch(day: date) -> int:
    return int(datetime.combine(day, clock(), UTC).timestamp())


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(60, seed=3, history_months=MONTHS) as sb:
        yield sb


def months(sb: Sandbox) -> list[tuple[str, int, int]]:
    """(YYYY-MM, start, end) of every month, in epoch seconds."""
    assert sb.timeline is not None
    out = []
    for k, period in enumerate(sb.timeline.periods):
        start, end = month_of(sb.slices, k)
        out.append((period, epoch(start), epoch(end)))
    return out


def month_index(sb: Sandbox, instant: int) -> int | None:
    for k, (_, start, end) in enumerate(months(sb)):
        if start <= instant < end:
            return k
    return None


def stamp(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp())


# -- (a) records span the months -------------------------------------------------------------------


def test_conversations_are_created_in_every_month_of_the_history(sandbox: Sandbox) -> None:
    data: intercom.Data = sandbox.data["intercom"]
    per_month = [0] * MONTHS
    for conversation in data.conversations:
        k = month_index(sandbox, conversation.created_at)
        if k is not None:
            per_month[k] += 1
    # About 60 accounts × 10-20 conversations a month each.
    assert all(n > 300 for n in per_month), per_month
    ids = [c.id for c in data.conversations]
    assert len(set(ids)) == len(ids)
    assert len({c.id for c in data.contacts}) == len(data.contacts)
    assert len({c.company_id for c in data.companies}) == len(data.companies)
    # Timings are real durations: a conversation of an earlier month was answered in the next one.
    later = [
        c
        for c in data.conversations
        if c.time_to_admin_reply is not None
        and month_index(sandbox, c.created_at) is not None
        and month_index(sandbox, c.created_at)
        != month_index(sandbox, c.created_at + c.time_to_admin_reply)
    ]
    assert later


def test_bugs_are_created_over_time_and_resolved_later(sandbox: Sandbox) -> None:
    data: jira.Data = sandbox.data["jira"]
    bugs = [i for i in data.issues if i.issuetype == "Bug"]
    created = [month_index(sandbox, stamp(i.created)) for i in bugs]
    assert all(created.count(k) > 20 for k in range(1, MONTHS)), created
    assert sum(k is None for k in created) > 20  # the first month's backlog, reported before it
    resolved_later = [
        i
        for i in bugs
        if i.resolved is not None
        and month_index(sandbox, stamp(i.resolved)) != month_index(sandbox, stamp(i.created))
    ]
    still_open = [
        i for i in bugs if i.resolved is None and stamp(i.created) < months(sandbox)[3][1]
    ]
    assert len(resolved_later) > 50 and len(still_open) > 20
    # A resolved issue is done at the sandbox date; an open one is not. Ids grow with creation.
    for issue in data.issues:
        assert (issue.resolved is None) == (issue.status not in ("Done", "Closed"))
        if issue.resolved is not None:
            assert stamp(issue.created) < stamp(issue.resolved) <= epoch(SANDBOX_DATE.date())
    assert [stamp(i.created) for i in data.issues] == sorted(stamp(i.created) for i in data.issues)
    assert [i.id for i in data.issues] == list(range(10001, 10001 + len(data.issues)))


# -- (b) nothing while an account is inactive ------------------------------------------------------


def test_an_inactive_account_has_no_conversation_and_no_new_bug_in_its_inactive_months(
    sandbox: Sandbox,
) -> None:
    assert sandbox.timeline is not None
    ic: intercom.Data = sandbox.data["intercom"]
    jr: jira.Data = sandbox.data["jira"]
    internal = {c.company_id: c.id for c in ic.companies}
    first_company = {c.id: c.company_ids[0] for c in ic.contacts if c.company_ids}
    inactive = 0
    for profile in sandbox.portfolio.profiles:
        account = profile.account
        life = sandbox.timeline.lives[account.account_id]
        for k, (_, start, end) in enumerate(months(sandbox)):
            if life.active(sandbox.timeline.month_starts[k]):
                continue
            if account.intercom_company_id in internal:
                inactive += 1
                mine = internal[account.intercom_company_id]
                assert not [
                    c
                    for c in ic.conversations
                    if start <= c.created_at < end
                    and (c.company or first_company.get(c.contact)) == mine
                ], (account.account_id, k)
            if account.jira_component:
                assert not [
                    i
                    for i in jr.issues
                    if start <= stamp(i.created) < end
                    and account.jira_component in (*i.components, i.customer)
                ], (account.account_id, k)
    assert inactive >= 5  # accounts that join during the history, before they do
    # A company that joined during the history was created near its join date.
    joined = {
        p.account.intercom_company_id: sandbox.timeline.lives[p.account_id].joined
        for p in sandbox.portfolio.profiles
        if sandbox.timeline.lives[p.account_id].joined > sandbox.timeline.month_starts[0]
    }
    joiners = [c for c in ic.companies if c.company_id in joined]
    assert len(joiners) >= 3
    for record in joiners:
        day = epoch(joined[record.company_id])
        assert day - 14 * DAY <= record.created_at <= day, record.company_id


# -- (c) past periods through the real pipeline ----------------------------------------------------

INTERCOM_METRICS = intercom.METRICS
JIRA_METRICS = jira.METRICS


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Path:
    folder = tmp_path_factory.mktemp("config")
    for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
        shutil.copy(DEFAULT_CONFIG / name, folder / name)
    sandbox.write_mapping(folder / "account_mapping.csv")
    return folder


def raw_of(
    sandbox: Sandbox, config_dir: Path, folder: Path, period: str
) -> dict[str, dict[str, str]]:
    summary = run(
        RunOptions(
            config_dir=config_dir,
            env=sandbox.env(),
            output=folder / period / "scores.csv",
            runs_dir=str(folder / period / "runs"),
            period=period,
            now=SANDBOX_DATE,
            dry_run=True,
        )
    )
    assert summary.run_location is not None, summary.messages
    assert summary.sources["intercom"].status == "ok"
    assert summary.sources["jira"].status == "ok"
    with (Path(summary.run_location) / "raw.csv").open() as handle:
        return {r["account_id"]: r for r in csv.DictReader(handle)}


def late_events(data: intercom.Data, as_of: date) -> int:
    """Conversations of the window ending at ``as_of`` answered or closed from ``as_of`` on."""
    end = epoch(as_of)
    start = end - 30 * DAY
    return sum(
        1
        for c in data.conversations
        if start <= c.created_at < end
        and any(
            t is not None and c.created_at + t >= end
            for t in (c.time_to_admin_reply, c.time_to_first_close, c.time_to_last_close)
        )
    )


def test_two_past_periods_match_the_stand_ins_recount_exactly_and_differ(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    found: dict[str, dict[str, dict[str, Decimal | None]]] = {}
    for period, as_of in (("2026-07", date(2026, 8, 1)), ("2026-09", date(2026, 10, 1))):
        # The window holds replies and closes made after as_of: the dated rule is exercised.
        assert late_events(sandbox.data["intercom"], as_of) > 10
        rows = raw_of(sandbox, config_dir, tmp_path, period)
        expected = sandbox.expected_metrics(as_of)
        got: dict[str, dict[str, Decimal | None]] = {}
        for account_id, row in rows.items():
            got[account_id] = {
                m: Decimal(row[m]) if row[m] else None for m in (*INTERCOM_METRICS, *JIRA_METRICS)
            }
            wanted = {m: expected[account_id][m] for m in (*INTERCOM_METRICS, *JIRA_METRICS)}
            assert got[account_id] == wanted, (period, account_id)
        assert set(rows) == set(expected)
        found[period] = got
    for metric in (*INTERCOM_METRICS, *JIRA_METRICS):
        assert any(
            found["2026-07"][a][metric] != found["2026-09"][a][metric] for a in found["2026-07"]
        ), metric


# -- (d) literal cases: the dated open-bug count and a reply after as_of ---------------------------


def _issue(
    number: int, issuetype: str, priority: str, created: str, resolved: str | None
) -> jira.Issue:
    return jira.Issue(
        id=10000 + number,
        key=f"SUP-{number}",
        project="SUP",
        issuetype=issuetype,
        status="Done" if resolved else "In Progress",
        priority=priority,
        components=("cust-1",),
        customer=None,
        created=created,
        summary="a bug",
        resolved=resolved,
    )


def test_bugs_open_at_an_instant_by_their_dates() -> None:
    issues = (
        # Open at Sep 1 (resolved in September), not at Oct 1.
        _issue(1, "Bug", "High", "2026-08-15T10:00:00.000+0000", "2026-09-10T08:00:00.000+0000"),
        # Reported exactly at Sep 1 00:00: not open at Sep 1 (created < as_of fails), open at Oct 1.
        _issue(2, "Bug", "Highest", "2026-09-01T00:00:00.000+0000", None),
        # Resolved exactly at Sep 1 00:00: still open at Sep 1 (resolved >= as_of), open at Aug 1.
        _issue(3, "Bug", "Medium", "2026-07-01T09:30:00.000+0000", "2026-09-01T00:00:00.000+0000"),
        # Not a bug.
        _issue(4, "Task", "High", "2026-07-01T09:30:00.000+0000", None),
    )
    data = jira.Data(
        issues=issues,
        projects={"SUP": jira.Project("SUP", "10000", "Customer Support")},
        component_ids={("SUP", "cust-1"): "10100"},
        customer_field=jira.DEFAULT_CUSTOM_FIELD,
        customer_options={},
        mapped=frozenset({("SUP", "cust-1")}),
        index=Index(),
        accounts=(
            SandboxAccount(
                "acct-1", "One", "paid", jira_project_key="SUP", jira_component="cust-1"
            ),
        ),
    )
    data.index = jira.build_index(data)

    def count(day: date) -> dict[str, Decimal | None]:
        return data.expected_at(day)["acct-1"]

    assert count(date(2026, 8, 1)) == {"open_bugs_total": 1, "open_bugs_p1_p2": 0}
    assert count(date(2026, 9, 1)) == {"open_bugs_total": 2, "open_bugs_p1_p2": 1}
    assert count(date(2026, 10, 1)) == {"open_bugs_total": 1, "open_bugs_p1_p2": 1}
    assert count(date(2026, 7, 1)) == {"open_bugs_total": 0, "open_bugs_p1_p2": 0}


def _late_data() -> intercom.Data:
    a = company("65a0000000000000000000aa", "cmp_aa", "Company A", SEP_1 - 400 * DAY)
    contact = intercom.Contact(
        id="66b000000000000000000001",
        external_id=None,
        role="user",
        name="Contact 1",
        email="one@example.com",
        created_at=SEP_1 - 100 * DAY,
        company_ids=(a.id,),
    )

    def conversation(
        number: int, created: int, reply: int, first: int, last: int, reopens: int
    ) -> intercom.Conversation:
        return intercom.Conversation(
            id=str(900 + number),
            created_at=created,
            company=a.id,
            contact=contact.id,
            state="closed",
            priority="none",
            attributes=(),
            tags=(),
            admin_id=991_267_700,
            team_id=5_017_690,
            time_to_admin_reply=reply,
            time_to_first_close=first,
            time_to_last_close=last,
            count_reopens=reopens,
        )

    conversations = (
        # Aug 20: answered after 10 minutes, closed after 2 hours, all in August.
        conversation(1, SEP_1 - 11 * DAY - 12 * 3600, 600, 7200, 7200, 0),
        # Aug 31 22:00: answered Sep 1 01:00, closed Sep 1 22:00 (both after as_of).
        conversation(2, SEP_1 - 7200, 10_800, 86_400, 86_400, 0),
        # Aug 31 23:00: answered 23:30, closed 23:50, reopened, closed for good Sep 1 03:00.
        conversation(3, SEP_1 - 3600, 1800, 3000, 14_400, 1),
    )
    return intercom.Data(
        as_of=date(2026, 11, 1),
        companies=(a,),
        contacts=(contact,),
        conversations=conversations,
        accounts=(("acct-a", "cmp_aa"),),
    )


def _extract_late(data: intercom.Data, now: datetime | None) -> dict[str, object]:
    settings = IntercomSettings()
    with VendorServer(intercom.App(data)) as server, requests.Session() as session:
        client = SourceClient(
            "intercom",
            server.url,
            session=session,
            policy=FAST,
            authenticate=lambda: {
                "Authorization": f"Bearer {intercom.TOKEN}",
                "Intercom-Version": "2.16",
            },
            credential_hint="INTERCOM_API_TOKEN",
        )
        as_of = datetime(2026, 9, 1, tzinfo=UTC)
        extractor = intercom_http.IntercomExtractor(client, settings, as_of=as_of, now=now)
        result = extractor.extract(
            [Account("acct-a", "A", "standard", intercom_company_id="cmp_aa")]
        )
    return dict(result.metrics["acct-a"])


def test_a_past_period_counts_no_reply_or_close_made_after_its_end() -> None:
    data = _late_data()
    past = {
        "p1_p2_volume": Decimal(0),
        "first_response_minutes": Decimal(20),  # median of 600 s and 1800 s
        "close_time_hours": Decimal(2),  # only #1 was closed for good before Sep 1
        "reopen_rate_pct": Decimal(50),  # #1 and #3 closed once before Sep 1; #3 reopened
        "escalation_rate_pct": Decimal(0),
    }
    assert data.expected_at(date(2026, 9, 1))["acct-a"] == past
    assert _extract_late(data, now=SANDBOX_DATE) == past
    # Read at as_of itself (no later reference now), the statistics count as they are.
    assert _extract_late(data, now=None) == {
        "p1_p2_volume": Decimal(0),
        "first_response_minutes": Decimal(30),  # median of 600, 1800 and 10 800 s
        "close_time_hours": Decimal(4),  # median of 7200, 14 400 and 86 400 s
        "reopen_rate_pct": Decimal("33.3333"),
        "escalation_rate_pct": Decimal(0),
    }


def test_the_month_just_ended_matches_the_sandbox_dates_expectation(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    """2026-10 ends at the sandbox date, the runs' reference now: the statistics as read."""
    rows = raw_of(sandbox, config_dir, tmp_path, "2026-10")
    expected = sandbox.expected_metrics()
    for account_id, row in rows.items():
        for metric in (*INTERCOM_METRICS, *JIRA_METRICS):
            cell = row[metric]
            assert (Decimal(cell) if cell else None) == expected[account_id][metric], account_id
