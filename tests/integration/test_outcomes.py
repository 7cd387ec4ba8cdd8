"""outcomes.csv against the sandbox's real Salesforce server: the closed renewal opportunities
(and, when configured, the Accounts' churn dates) known at each run's as_of.

The default sandbox's renewals are all Closed Won, so the module's sandbox gets a few records
written straight into the stand-in's org before its first query (``sandbox.data["salesforce"]
.org``): two Closed Lost renewals before the sandbox date (one without an Amount), one closed on
the sandbox date itself (not yet known), a deleted one, and a ``Churn_Date__c`` Account field.
The expectations are recounted from the org's records with a plain loop.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from health_score.pipeline import RunSummary
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.server import Faults
from health_score_sandbox.soql import FieldDef, to_id18
from tests.conftest import DEFAULT_CONFIG
from tests.periods_support import period_run

ACCOUNTS = 40

# Records written into the org (15-character ids; the org answers their 18-character form).
LOST_EARLY = to_id18("006Sb00000LOST1")  # Closed Lost 2026-02-10, Amount 12345.67
LOST_LATE = to_id18("006Sb00000LOST2")  # Closed Lost 2026-09-15, no Amount → the Account's ARR
LOST_ON_AS_OF = to_id18("006Sb00000LOST3")  # closed on 2026-11-01: not known at as_of
LOST_DELETED = to_id18("006Sb00000LOST4")  # deleted: no event


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(ACCOUNTS, seed=11) as sb:
        _add_records(sb)
        yield sb


def _org_object(sandbox: Sandbox, name: str) -> Any:
    sobject = sandbox.data["salesforce"].org.get(name)
    assert sobject is not None
    return sobject


def _mapped(sandbox: Sandbox) -> list[dict[str, str]]:
    """The mapping's rows that name a Salesforce account, in the mapping's order."""
    rows = list(csv.DictReader(sandbox.portfolio.mapping_csv().splitlines()))
    return [r for r in rows if r["sf_account_id"]]


def _add_records(sandbox: Sandbox) -> None:
    opportunities = _org_object(sandbox, "Opportunity")
    accounts = _org_object(sandbox, "Account")
    # Today's default sandbox has no Closed Lost renewal: that is why these are added.
    assert not [
        r
        for r in opportunities.records
        if r["Type"] == "Renewal" and r["StageName"] == "Closed Lost"
    ]
    first, second, third, fourth = (to_id18(r["sf_account_id"]) for r in _mapped(sandbox)[:4])
    created = datetime(2023, 1, 15, 9, tzinfo=UTC)

    def lost(
        record_id: str, account: str, close: date, amount: float | None, deleted: bool
    ) -> None:
        opportunities.records.append(
            {
                "Id": record_id,
                "Name": f"Renewal {close.isoformat()}",
                "AccountId": account,
                "Type": "Renewal",
                "StageName": "Closed Lost",
                "CloseDate": close,
                "IsWon": False,
                "IsClosed": True,
                "Amount": amount,
                "IsDeleted": deleted,
                "CreatedDate": created,
            }
        )

    lost(LOST_EARLY, first, date(2026, 2, 10), 12345.67, False)
    lost(LOST_LATE, second, date(2026, 9, 15), None, False)
    lost(LOST_ON_AS_OF, third, date(2026, 11, 1), 999.0, False)
    lost(LOST_DELETED, fourth, date(2026, 3, 3), 555.0, True)
    # An Account churn-date field (read only when outcomes.churn_date_field names it).
    accounts.add_field(FieldDef("Churn_Date__c", "date"))
    churn_dates = {
        first: date(2026, 2, 20),  # 10 days after its lost renewal: the same churn
        third: date(2026, 6, 30),  # no lost renewal before as_of: a churn of its own
        fourth: date(2026, 11, 1),  # on as_of: not known
    }
    for record in accounts.records:
        record["Churn_Date__c"] = churn_dates.get(to_id18(record["Id"]))


@pytest.fixture
def config_dir(tmp_path: Path, sandbox: Sandbox) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
        shutil.copy(DEFAULT_CONFIG / name, folder / name)
    sandbox.write_mapping(folder / "account_mapping.csv")
    return folder


def _configure(config_dir: Path, **outcomes: Any) -> None:
    path = config_dir / "sources.yaml"
    sources = yaml.safe_load(path.read_text(encoding="utf-8"))
    sources["salesforce"]["outcomes"] = outcomes
    path.write_text(yaml.safe_dump(sources, sort_keys=False), encoding="utf-8")


def _run(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path, period: str
) -> tuple[RunSummary, dict[str, Any], Path]:
    return period_run(sandbox, config_dir, tmp_path, period, dry_run=True)


Row = tuple[str, str, str, str, Decimal | None, str]


def _csv_rows(folder: Path) -> list[Row]:
    with (folder / "outcomes.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == [
            "account_id",
            "account_name",
            "event",
            "date",
            "arr",
            "evidence",
        ]
        return [
            (
                r["account_id"],
                r["account_name"],
                r["event"],
                r["date"],
                Decimal(r["arr"]) if r["arr"] else None,
                r["evidence"],
            )
            for r in reader
        ]


def _expected(sandbox: Sandbox, start: date, end: date) -> set[Row]:
    """The org's closed renewal opportunities of mapped accounts closed in [start, end)."""
    mapped = {to_id18(r["sf_account_id"]): r for r in _mapped(sandbox)}
    arr = {to_id18(r["Id"]): r["ARR__c"] for r in _org_object(sandbox, "Account").records}
    out: set[Row] = set()
    for record in _org_object(sandbox, "Opportunity").records:
        account = to_id18(record["AccountId"])
        if record["IsDeleted"] or record["Type"] != "Renewal" or not record["IsClosed"]:
            continue
        if not start <= record["CloseDate"] < end or account not in mapped:
            continue
        amount = record["Amount"] if record["Amount"] is not None else arr[account]
        out.add(
            (
                mapped[account]["sf_account_id"],  # the sandbox's account_id is its 18-char id
                mapped[account]["account_name"],
                "renewal" if record["IsWon"] else "churn",
                record["CloseDate"].isoformat(),
                None if amount is None else Decimal(str(amount)),
                to_id18(record["Id"]),
            )
        )
    return out


def test_a_default_run_lists_the_closed_renewals_before_as_of(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    app = sandbox.servers["salesforce"].app
    app.queries.clear()  # type: ignore[attr-defined]
    summary, manifest, folder = _run(sandbox, config_dir, tmp_path, "2026-10")
    assert summary.status == "ok"
    rows = _csv_rows(folder)
    expected = _expected(sandbox, date(2023, 11, 1), date(2026, 11, 1))
    assert len(rows) == len(set(rows)) == len(expected)
    assert set(rows) == expected
    assert rows == sorted(rows, key=lambda r: (r[3], r[0], r[2], r[5]))
    by_evidence = {r[5]: r for r in rows}
    first, second = (r["sf_account_id"] for r in _mapped(sandbox)[:2])
    account_arr = {r["Id"]: r["ARR__c"] for r in _org_object(sandbox, "Account").records}
    assert by_evidence[LOST_EARLY][2:5] == ("churn", "2026-02-10", Decimal("12345.67"))
    assert by_evidence[LOST_EARLY][0] == first
    assert by_evidence[LOST_LATE][2:5] == (
        "churn",
        "2026-09-15",
        Decimal(str(account_arr[second])),  # no Amount: the Account's ARR
    )
    assert LOST_ON_AS_OF not in by_evidence and LOST_DELETED not in by_evidence
    renewals = sum(r[2] == "renewal" for r in rows)
    assert renewals > 20
    assert manifest["outcomes"] == {
        "status": "ok",
        "events": len(expected),
        "churn": 2,
        "renewal": renewals,
        "file": "outcomes.csv",
        "window": {"from": "2023-11-01", "to": "2026-11-01"},
        "requests": 3,  # a login, the Opportunity query, the Account ARR of one account
        "seconds": manifest["outcomes"]["seconds"],
        "error": None,
        "notes": [],
    }

    # The SOQL sent: validated identifiers, escaped literals, one query per id list.
    ids = ",".join(sorted(f"'{to_id18(r['sf_account_id'])}'" for r in _mapped(sandbox)))
    sent = [q for q in app.queries if "'Renewal'" in q or q.startswith("SELECT Id, ARR__c ")]  # type: ignore[attr-defined]
    assert sent == [
        "SELECT Id, AccountId, Type, CloseDate, IsClosed, IsWon, Amount FROM Opportunity"  # noqa: S608
        f" WHERE AccountId IN ({ids}) AND Type IN ('Renewal')"
        " AND IsClosed = TRUE AND CloseDate < 2026-11-01",
        f"SELECT Id, ARR__c FROM Account WHERE Id IN ('{to_id18(second)}')",  # noqa: S608
    ]
    words = {
        w for q in sent for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"'[^']*'", "", q))
    }
    assert words == {
        "SELECT", "FROM", "WHERE", "IN", "AND", "TRUE",
        "Id", "AccountId", "Type", "CloseDate", "IsClosed", "IsWon", "Amount", "ARR__c",
        "Opportunity", "Account",
    }  # fmt: skip


def test_a_past_period_never_includes_later_events(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    _, _, latest = _run(sandbox, config_dir, tmp_path, "2026-10")
    _, manifest, past = _run(sandbox, config_dir, tmp_path, "2026-03")
    now_rows, past_rows = _csv_rows(latest), _csv_rows(past)
    assert [r for r in now_rows if r[3] >= "2026-04-01"]  # later events exist…
    assert all(r[3] < "2026-04-01" for r in past_rows)  # …and the past period has none
    assert set(past_rows) == _expected(sandbox, date(2023, 4, 1), date(2026, 4, 1))
    assert set(past_rows) == {r for r in now_rows if "2023-04-01" <= r[3] < "2026-04-01"}
    evidence = {r[5] for r in past_rows}
    assert LOST_EARLY in evidence and LOST_LATE not in evidence
    assert manifest["outcomes"]["window"] == {"from": "2023-04-01", "to": "2026-04-01"}
    assert manifest["as_of"] == "2026-04-01T00:00:00+00:00"


def test_stage_names_and_a_quote_in_a_stage_are_escaped(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    _, _, by_flags = _run(sandbox, config_dir, tmp_path, "2026-10")
    _configure(
        config_dir,
        match="stages",
        won_stages=["Closed Won"],
        lost_stages=["Closed Lost", "Lost 'late'"],
        renewal_types=["Renewal", "Won't renew"],
    )
    app = sandbox.servers["salesforce"].app
    app.queries.clear()  # type: ignore[attr-defined]
    _, manifest, by_stages = _run(sandbox, config_dir, tmp_path / "stages", "2026-10")
    assert manifest["outcomes"]["status"] == "ok", manifest["outcomes"]
    assert _csv_rows(by_stages) == _csv_rows(by_flags)  # the sandbox's stages match its flags
    (sent,) = [q for q in app.queries if "'Renewal'" in q]  # type: ignore[attr-defined]
    assert sent.startswith("SELECT Id, AccountId, Type, CloseDate, StageName, Amount FROM ")
    assert (
        " AND Type IN ('Renewal','Won\\'t renew')"
        " AND StageName IN ('Closed Won','Closed Lost','Lost \\'late\\'')"
        " AND CloseDate < 2026-11-01"
    ) in sent


def test_an_account_churn_date_is_an_event_unless_a_lost_renewal_is_the_same_churn(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    _, _, without = _run(sandbox, config_dir, tmp_path, "2026-10")
    _configure(config_dir, churn_date_field="Churn_Date__c", dedupe_days=45)
    _, manifest, folder = _run(sandbox, config_dir, tmp_path / "dated", "2026-10")
    rows = _csv_rows(folder)
    mapped = _mapped(sandbox)
    third = mapped[2]
    arr = {r["Id"]: r["ARR__c"] for r in _org_object(sandbox, "Account").records}
    added = set(rows) - set(_csv_rows(without))
    # The first account's churn date (10 days after its lost renewal) is that same churn; the
    # fourth's is on as_of (not known); the third's is a churn of its own.
    assert added == {
        (
            third["sf_account_id"],
            third["account_name"],
            "churn",
            "2026-06-30",
            Decimal(str(arr[third["sf_account_id"]])),
            "Account.Churn_Date__c",
        )
    }
    assert len(rows) == len(_csv_rows(without)) + 1
    assert manifest["outcomes"]["churn"] == 3


def test_a_hidden_opportunity_object_fails_the_outcomes_with_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    faults = {"salesforce": Faults(hidden_objects=["Opportunity"])}
    with Sandbox(8, seed=5, faults=faults) as hidden:
        config = tmp_path / "config"
        config.mkdir()
        for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
            shutil.copy(DEFAULT_CONFIG / name, config / name)
        hidden.write_mapping(config / "account_mapping.csv")
        with caplog.at_level(logging.INFO):
            summary, manifest, folder = _run(hidden, config, tmp_path, "2026-10")
    assert summary.status == "degraded"  # the opportunity metrics are unavailable too
    assert manifest["outcomes"] == {
        "status": "failed",
        "events": None,
        "churn": None,
        "renewal": None,
        "file": None,
        "window": {"from": "2023-11-01", "to": "2026-11-01"},
        "requests": 2,  # a login and the refused query
        "seconds": manifest["outcomes"]["seconds"],
        "error": "salesforce: SOQL: Opportunity cannot be read (INVALID_TYPE: not in the org, "
        "or hidden from this user); outcomes unavailable",
        "notes": [],
    }
    assert not (folder / "outcomes.csv").exists()  # never an empty file that reads "no events"
    assert not [r for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


def test_a_churn_date_field_the_org_lacks_fails_the_outcomes(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    _configure(config_dir, churn_date_field="Lost_On__c")
    summary, manifest, folder = _run(sandbox, config_dir, tmp_path, "2026-10")
    assert summary.status == "ok"  # outcomes are not a scored input
    outcomes = manifest["outcomes"]
    assert (outcomes["status"], outcomes["events"], outcomes["file"]) == ("failed", None, None)
    assert outcomes["error"].startswith(
        "salesforce: SOQL: a field of Account cannot be read (INVALID_FIELD: "
    )
    assert "Lost_On__c" in outcomes["error"]
    assert not (folder / "outcomes.csv").exists()


def test_outcomes_are_disabled_when_salesforce_is_not_read(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    path = config_dir / "sources.yaml"
    sources = yaml.safe_load(path.read_text(encoding="utf-8"))
    sources["salesforce"]["enabled"] = False
    path.write_text(yaml.safe_dump(sources, sort_keys=False), encoding="utf-8")
    _, manifest, folder = _run(sandbox, config_dir, tmp_path, "2026-10")
    assert manifest["outcomes"] == {
        "status": "disabled",
        "events": None,
        "churn": None,
        "renewal": None,
        "file": None,
        "window": None,
        "requests": 0,
        "seconds": 0.0,
        "error": None,
        "notes": ["salesforce.enabled is false in sources.yaml"],
    }
    assert not (folder / "outcomes.csv").exists()


def test_the_queries_go_by_id_list_and_give_the_same_rows(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    _, _, whole = _run(sandbox, config_dir, tmp_path, "2026-10")
    path = config_dir / "sources.yaml"
    sources = yaml.safe_load(path.read_text(encoding="utf-8"))
    sources["salesforce"]["id_chunk_size"] = 15
    path.write_text(yaml.safe_dump(sources, sort_keys=False), encoding="utf-8")
    app = sandbox.servers["salesforce"].app
    app.queries.clear()  # type: ignore[attr-defined]
    _, manifest, chunked = _run(sandbox, config_dir, tmp_path / "chunked", "2026-10")
    mapped = len(_mapped(sandbox))
    lists = -(-mapped // 15)
    sent = [q for q in app.queries if "'Renewal'" in q]  # type: ignore[attr-defined]
    assert len(sent) == lists >= 2
    assert sorted(q.count("'001") for q in sent) == sorted(
        [15] * (mapped // 15) + ([mapped % 15] if mapped % 15 else [])
    )
    assert _csv_rows(chunked) == _csv_rows(whole)
    assert manifest["outcomes"]["requests"] == 1 + lists + 1  # login, lists, one Account ARR
