"""``health-score mapping suggest`` against the sandbox's real servers.

The sandbox's own mapping is the ground truth: the suggestion's links (two ids in one row) are
compared with it for precision and recall. Recall counts the links whose two records the
systems actually hold (an account absent from a source has an id in the mapping but nothing a
reader could find). Some stand-in records are edited first, so that names differ the way real
systems' do ("Mollie's Bistro, Inc." against "MOLLIES BISTRO") and a website links two records.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from health_score.cli import main
from health_score.config import ConfigProblem, parse_mapping
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.soql import FieldDef
from tests.conftest import sandbox_config

ACCOUNTS = 60
COLUMNS = {
    "salesforce": "sf_account_id",
    "intercom": "intercom_company_id",
    "looker": "looker_customer_id",
    "jira": "jira_component",
}
#: (Salesforce's name, Intercom's name) for the first accounts both systems hold: no customer
#: number left in Salesforce's, so only the normalised names can join them.
VARIANTS = (
    ("Mollie's Bistro, Inc.", "MOLLIES BISTRO"),
    ("Villa D'Este S.p.A.", "villa d'este"),
    ("Café Zürich GmbH", "CAFE ZURICH"),
    ("Smith & Sons Ltd", "Smith and Sons"),
    ("The Acme Labs, Inc.", "ACME LABS"),
)
#: Accounts whose Salesforce record gets a Website instead of a name anyone shares.
WEBSITES = 3

Link = tuple[tuple[str, str], tuple[str, str]]


def links(
    rows: list[dict[str, str]], present: dict[str, frozenset[str]] | None = None
) -> set[Link]:
    """Every pair of ids in one row; with ``present``, only ids of systems holding the account."""
    out: set[Link] = set()
    for row in rows:
        ids = [(system, row[column]) for system, column in COLUMNS.items() if row[column]]
        if present is not None:
            account = row["sf_account_id"] or f"intercom:{row['intercom_company_id']}"
            ids = [i for i in ids if i[0] in present[account]]
        out |= {(a, b) for a, b in itertools.combinations(sorted(ids), 2)}
    return out


def read_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Sandbox, dict[str, tuple[str, str]]]]:
    with Sandbox(ACCOUNTS, seed=3) as sb:
        edited = edit_stand_ins(sb)
        yield sb, edited


def edit_stand_ins(sb: Sandbox) -> dict[str, tuple[str, str]]:
    """Rename some accounts in Salesforce and Intercom, give some a Website; returns
    sf id → (Salesforce name, Intercom name) of the renamed ones."""
    org = sb.data["salesforce"].org
    account_object = org.get("Account")
    account_object.add_field(FieldDef("Website", "url"))
    by_id = {r["Id"]: r for r in account_object.records}
    companies = sb.servers["intercom"].app._companies  # the stand-in's served records
    by_company_id = {c["company_id"]: c for c in companies.values()}
    both = [
        p.account
        for p in sb.portfolio.profiles
        if p.account.sf_account_id
        and {"salesforce", "intercom"} <= p.present
        and p.account.intercom_company_id in by_company_id
    ]
    edited: dict[str, tuple[str, str]] = {}
    for account, (sf_name, ic_name) in zip(both, VARIANTS, strict=False):
        by_id[account.sf_account_id]["Name"] = sf_name
        by_company_id[account.intercom_company_id]["name"] = ic_name
        edited[str(account.sf_account_id)] = (sf_name, ic_name)
    for account in both[len(VARIANTS) : len(VARIANTS) + WEBSITES]:
        record = by_id[account.sf_account_id]
        record["Name"] = f"Holding {len(edited)} Group"  # a name Intercom does not share
        company = by_company_id[account.intercom_company_id]
        record["Website"] = company["website"].replace("https://", "http://www.") + "/about"
        company["name"] = f"Brand {len(edited)}"
        edited[str(account.sf_account_id)] = (record["Name"], company["name"])
    return edited


@pytest.fixture
def suggested(
    tmp_path: Path,
    sandbox: tuple[Sandbox, dict[str, tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[dict[str, str]], Path, dict[str, int]]:
    sb, _ = sandbox
    for name, value in sb.env().items():
        monkeypatch.setenv(name, value)
    config = sandbox_config(tmp_path / "config", sb)
    sb.reset_stats()
    assert main(["mapping", "suggest", "--config-dir", str(config), "--jira-project", "SUP"]) == 0
    requests = {v: sb.requests(v) for v in COLUMNS}
    output = config / "account_mapping.suggested.csv"
    return read_rows(output.read_text(encoding="utf-8")), config, requests


def test_precision_and_recall_against_the_sandboxs_mapping(
    sandbox: tuple[Sandbox, dict[str, tuple[str, str]]],
    suggested: tuple[list[dict[str, str]], Path, dict[str, int]],
) -> None:
    sb, _ = sandbox
    rows, _, _ = suggested
    truth_rows = read_rows(sb.portfolio.mapping_csv())
    present = {p.account_id: p.present for p in sb.portfolio.profiles}
    truth = links(truth_rows, present)
    got = links(rows)
    right = got & truth
    precision, recall = len(right) / len(got), len(right) / len(truth)
    assert len(truth) > 200
    assert precision >= 0.99, sorted(got - truth)  # 293 of 294 (seed 3)
    assert recall >= 0.99, sorted(truth - got)  # 293 of 293
    # Every wrong link is one of the sandbox's look-alikes (a prospect and an unmapped
    # Intercom company of the same name), never a mapped account joined to another.
    mapped = {(s, v) for r in truth_rows for s, c in COLUMNS.items() if (v := r[c])}
    for a, b in got - truth:
        assert not (a in mapped and b in mapped), (a, b)


def test_name_variants_and_websites_are_joined(
    sandbox: tuple[Sandbox, dict[str, tuple[str, str]]],
    suggested: tuple[list[dict[str, str]], Path, dict[str, int]],
) -> None:
    sb, edited = sandbox
    rows, _, _ = suggested
    truth = {r["sf_account_id"]: r for r in read_rows(sb.portfolio.mapping_csv())}
    by_sf = {r["sf_account_id"]: r for r in rows if r["sf_account_id"]}
    assert len(edited) == len(VARIANTS) + WEBSITES
    for sf_id, (sf_name, _) in edited.items():
        row = by_sf[sf_id]
        assert row["intercom_company_id"] == truth[sf_id]["intercom_company_id"], (sf_name, row)
        assert row["account_name"] == sf_name
        assert row["match"] == "matched"
    mollie = by_sf[next(k for k, v in edited.items() if v[0] == "Mollie's Bistro, Inc.")]
    assert "salesforce↔intercom 0.90: same normalised name 'mollies bistro'" in mollie["evidence"]
    holding = by_sf[next(k for k, v in edited.items() if v[0].startswith("Holding"))]
    assert "salesforce↔intercom 0.95: same domain 'cmp-" in holding["evidence"]
    # Segments come from Intercom's company attribute, in the config's spelling.
    assert {r["segment"] for r in rows if r["intercom_company_id"]} <= {"paid", "standard"}


def test_requests_grow_with_pages_not_accounts(
    suggested: tuple[list[dict[str, str]], Path, dict[str, int]],
) -> None:
    _, _, requests = suggested
    # Salesforce: login, describe, one query page; Intercom: the scroll's pages and its empty
    # end; Looker: login and one Look run; Jira: pages of 100 issues.
    assert requests["salesforce"] <= 4
    assert requests["intercom"] <= 3
    assert requests["looker"] == 2
    assert requests["jira"] <= 10


def test_never_overwrites(
    suggested: tuple[list[dict[str, str]], Path, dict[str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, config, _ = suggested
    output = config / "account_mapping.suggested.csv"
    before = output.read_bytes()
    mapping = (config / "account_mapping.csv").read_bytes()
    capsys.readouterr()
    assert main(["mapping", "suggest", "--config-dir", str(config)]) == 2
    assert "exists: the suggestion never overwrites a file" in capsys.readouterr().err
    assert output.read_bytes() == before
    argv = ["mapping", "suggest", "--config-dir", str(config), "--output"]
    assert main([*argv, str(config / "account_mapping.csv")]) == 2
    assert (config / "account_mapping.csv").read_bytes() == mapping
    # A new name is written, and its rows are rows the mapping's loader takes: every row with
    # a segment loads as it is (the extra columns are kept as extras).
    fresh = config / "proposed.csv"
    assert main([*argv, str(fresh), "--sf-type", "Customer"]) == 0
    text = fresh.read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert header == (
        "sf_account_id,intercom_company_id,looker_customer_id,account_name,segment,"
        "jira_project_key,jira_component,confidence,match,evidence"
    )
    with_segment = [r for r in read_rows(text) if r["segment"]]
    out = io.StringIO()
    writer = csv.DictWriter(out, header.split(","), lineterminator="\n")
    writer.writeheader()
    writer.writerows(with_segment)
    problems: list[ConfigProblem] = []
    accounts = parse_mapping(out.getvalue(), frozenset({"paid", "standard"}), problems)
    assert problems == []
    assert len(accounts) == len(with_segment) > 40


def test_no_credentials_is_a_usage_error(
    tmp_path: Path,
    sandbox: tuple[Sandbox, dict[str, tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb, _ = sandbox
    for name in sb.env():
        monkeypatch.delenv(name, raising=False)
    config = sandbox_config(tmp_path / "config", sb)
    monkeypatch.chdir(tmp_path)  # no .env file here
    assert main(["mapping", "suggest", "--config-dir", str(config)]) == 2
    assert "no source has credentials" in capsys.readouterr().err


def test_identifiers_are_validated_before_any_request(
    sandbox: tuple[Sandbox, dict[str, tuple[str, str]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb, _ = sandbox
    for name, value in sb.env().items():
        monkeypatch.setenv(name, value)
    config = sandbox_config(tmp_path / "config", sb)
    sb.reset_stats()
    argv = ["mapping", "suggest", "--config-dir", str(config), "--jira-project"]
    assert main([*argv, 'SUP" OR project = "OPS']) == 2
    assert "is not a Jira project key" in capsys.readouterr().err
    assert sum(sb.requests(v) for v in COLUMNS) == 0
    assert not (config / "account_mapping.suggested.csv").exists()
