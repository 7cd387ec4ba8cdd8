"""Context from Salesforce in scores.csv: the account owner's name (``Owner.Name``), ARR, the
renewal date and the days to it, read in the Account query against the stand-in's real server,
equal to the stand-in's Account and User records; a past period's ARR as it stood then (field
history on); a formula-like owner name guarded; a missing field noted, its column empty."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest

from health_score.dashboard.frames import dimension_columns, parse_scores
from health_score.pipeline import RunOptions, run
from health_score.sources.salesforce.settings import Settings
from health_score_sandbox.salesforce import Data
from health_score_sandbox.sandbox import Sandbox
from tests.conftest import sandbox_config

SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)
CONTEXT = ("owner", "arr", "renewal_date", "days_to_renewal")


def records(data: Data, object_name: str) -> list[dict[str, Any]]:
    sobject = data.org.get(object_name)
    assert sobject is not None
    return sobject.records


def scores_run(
    sandbox: Sandbox, folder: Path, period: str, edit: Any = None
) -> tuple[dict[str, dict[str, str]], dict[str, Any], list[str]]:
    """One dry run: scores.csv by account_id, the manifest, scores.csv's header (the run
    folder's scores.csv is kept as ``folder / "run-scores.csv"``)."""
    summary = run(
        RunOptions(
            config_dir=sandbox_config(folder / "config", sandbox, edit),
            env=sandbox.env(),
            output=folder / "scores.csv",
            runs_dir=str(folder / "runs"),
            period=period,
            now=SANDBOX_DATE,
            dry_run=True,
        )
    )
    assert summary.run_location is not None, summary.messages
    run_folder = Path(summary.run_location)
    (folder / "run-scores.csv").write_bytes((run_folder / "scores.csv").read_bytes())
    with (run_folder / "scores.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {r["account_id"]: r for r in reader}
        header = list(reader.fieldnames or ())
    manifest = json.loads((run_folder / "manifest.json").read_text(encoding="utf-8"))
    return rows, manifest, header


def mapped_sf_ids(sandbox: Sandbox) -> dict[str, str]:
    """account_id → its 18-character Salesforce id (mapped accounts only)."""
    data = sandbox.data["salesforce"]
    assert isinstance(data, Data)
    by15 = {sf[:15]: sf for sf in data.mapped_ids}
    return {
        p.account_id: by15[p.account.sf_account_id[:15]]
        for p in sandbox.portfolio.profiles
        if p.account.sf_account_id
    }


# --------------------------------------------------------------------------------------------
# The sandbox's date


@pytest.fixture(scope="module")
def today_sandbox() -> Iterator[Sandbox]:
    with Sandbox(60, seed=11) as sb:
        users = records(sb.data["salesforce"], "User")  # type: ignore[arg-type]
        users[0]["Name"] = '=HYPERLINK("http://evil.example","x")'  # CSV injection
        yield sb


def test_scores_csv_carries_owner_arr_and_renewal_of_every_account(
    today_sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox = today_sandbox
    data = sandbox.data["salesforce"]
    assert isinstance(data, Data)
    rows, manifest, header = scores_run(sandbox, tmp_path, "2026-10")
    assert header[-4:] == list(CONTEXT)  # after every existing column
    assert header.index("low_coverage") == len(header) - 5
    assert manifest["sources"]["salesforce"]["status"] == "ok"
    # The expectation, from the stand-in's records with a plain loop.
    user_names: dict[str, str] = {}
    for user in records(data, "User"):
        user_names[user["Id"]] = user["Name"]
    accounts: dict[str, dict[str, Any]] = {}
    for account in records(data, "Account"):
        accounts[account["Id"]] = account
    as_of = date(2026, 11, 1)
    in_org = 0
    injected = 0
    for account_id, sf_id in mapped_sf_ids(sandbox).items():
        row = rows[account_id]
        account = accounts.get(sf_id)
        if account is None:  # mapped, but the org has no such account: no context
            assert [row[c] for c in CONTEXT] == ["", "", "", ""], account_id
            continue
        in_org += 1
        owner = user_names[account["OwnerId"]]
        if owner.startswith("="):
            injected += 1
            assert row["owner"] == "'" + owner  # guarded: a spreadsheet shows it as text
        else:
            assert row["owner"] == owner
        assert Decimal(row["arr"]) == Decimal(repr(account["ARR__c"])), account_id
        renewal = account["Renewal_Date__c"]
        if renewal is None:
            assert (row["renewal_date"], row["days_to_renewal"]) == ("", ""), account_id
        else:
            assert row["renewal_date"] == renewal.isoformat()
            assert int(row["days_to_renewal"]) == (renewal - as_of).days
    assert in_org >= 50
    assert injected >= 1
    assert any(r["renewal_date"] == "" for r in rows.values())  # a 3% gap the stand-in draws
    # The dashboard loads them: owner as text (guard undone), ARR and days as numbers, and
    # none of them taken for a dimension.
    frame = parse_scores("run", (tmp_path / "run-scores.csv").read_bytes()).set_index("account_id")
    assert not set(CONTEXT) & set(dimension_columns(frame.reset_index()))
    assert frame["arr"].dtype == "float64" and frame["days_to_renewal"].dtype == "float64"
    assert '=HYPERLINK("http://evil.example","x")' in set(frame["owner"])
    some = next(a for a, r in rows.items() if r["arr"] and r["renewal_date"])
    assert frame.loc[some, "arr"] == float(rows[some]["arr"])
    assert frame.loc[some, "renewal_date"] == rows[some]["renewal_date"]


def test_context_fields_are_api_names_or_relationship_paths() -> None:
    assert Settings.model_validate({}).context_fields == {
        "owner": "Owner.Name",
        "arr": "ARR__c",
        "renewal_date": "Renewal_Date__c",
    }
    mine = {"owner_field": "CSM__r.Name", "arr_field": "Contract_ARR__c"}
    assert Settings.model_validate({"context": mine}).context_fields["arr"] == "Contract_ARR__c"
    assert Settings.model_validate({"context": {"enabled": False}}).context_fields == {}
    for bad in ("Owner.Name, Id", "Owner..Name", "Owner.Name FROM User", ".Name"):
        with pytest.raises(pydantic.ValidationError, match="owner_field"):
            Settings.model_validate({"context": {"owner_field": bad}})


def test_context_is_read_in_the_account_query_not_per_account(
    today_sandbox: Sandbox, tmp_path: Path
) -> None:
    app = today_sandbox.servers["salesforce"].app
    app.queries.clear()  # type: ignore[attr-defined]
    scores_run(today_sandbox, tmp_path, "2026-10")
    soql = [str(q) for q in app.queries]  # type: ignore[attr-defined]
    assert not [q for q in soql if " FROM User" in q]
    account_queries = [q for q in soql if " FROM Account WHERE Id IN" in q]
    assert len(account_queries) == 1  # 60 accounts: one id list
    assert "Owner.Name" in account_queries[0]


def test_a_missing_context_field_is_noted_and_its_column_left_empty(
    today_sandbox: Sandbox, tmp_path: Path
) -> None:
    def owner_elsewhere(sources: dict[str, Any]) -> None:
        sources["salesforce"]["context"] = {"owner_field": "Account_Manager__r.Name"}

    rows, manifest, _ = scores_run(today_sandbox, tmp_path, "2026-10", owner_elsewhere)
    report = manifest["sources"]["salesforce"]
    assert report["status"] == "ok"  # context is not scored: the run is not degraded
    assert [n for n in report["notes"] if "Account_Manager__r" in n and "owner" in n], report
    assert {r["owner"] for r in rows.values()} == {""}
    assert sum(1 for r in rows.values() if r["arr"]) >= 50  # the rest is still read


# --------------------------------------------------------------------------------------------
# A past period


@pytest.fixture(scope="module")
def history_sandbox() -> Iterator[Sandbox]:
    with Sandbox(60, history_months=24) as sb:
        yield sb


def arr_at(data: Data, sf_id: str, at: datetime) -> Any:
    """The ARR the stand-in's generation gave the Account from before ``at`` (its own record of
    every value a field took, independent of the AccountHistory rows)."""
    assert data.history is not None
    value = None
    for since, name, taken in data.history.states[sf_id]:
        if name == "ARR__c" and since < at:
            value = taken
    return value


def test_a_past_period_carries_the_arr_of_then(history_sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox = history_sandbox
    data = sandbox.data["salesforce"]
    assert isinstance(data, Data) and data.history is not None
    at = datetime(2026, 6, 1, tzinfo=UTC)
    rows, manifest, _ = scores_run(sandbox, tmp_path, "2026-05")  # field history on
    notes = manifest["sources"]["salesforce"]["notes"]
    assert [n for n in notes if "current Account owner" in n], notes
    current = {r["Id"]: r for r in records(data, "Account")}
    users = {u["Id"]: u["Name"] for u in records(data, "User")}
    compared = changed = 0
    for account_id, sf_id in mapped_sf_ids(sandbox).items():
        row = rows[account_id]
        created = data.history.created.get(sf_id)
        if created is None or created >= at:  # not in the org then: no context
            assert [row[c] for c in CONTEXT] == ["", "", "", ""], account_id
            continue
        want = arr_at(data, sf_id, at)
        assert (Decimal(row["arr"]) if row["arr"] else None) == (
            None if want is None else Decimal(repr(want))
        ), account_id
        assert row["owner"] == users[current[sf_id]["OwnerId"]]  # today's owner
        compared += 1
        changed += want != current[sf_id]["ARR__c"]
    assert compared >= 40
    assert changed >= 5  # ARR moved since then for some: the history was read


def test_a_past_period_without_field_history_leaves_arr_and_renewal_empty(
    history_sandbox: Sandbox, tmp_path: Path
) -> None:
    def no_history(sources: dict[str, Any]) -> None:
        sources["salesforce"]["field_history"] = False

    rows, manifest, _ = scores_run(history_sandbox, tmp_path, "2026-05", no_history)
    notes = manifest["sources"]["salesforce"]["notes"]
    assert [n for n in notes if "context arr, renewal_date, days_to_renewal" in n], notes
    assert {(r["arr"], r["renewal_date"], r["days_to_renewal"]) for r in rows.values()} == {
        ("", "", "")
    }
    assert sum(1 for r in rows.values() if r["owner"]) >= 40
