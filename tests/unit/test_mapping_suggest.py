"""The matching rules of ``mapping suggest`` on hand-made records (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from health_score.mapping_suggest import (
    Record,
    SuggestError,
    check_identifiers,
    domain_key,
    name_key,
    number_key,
    rows_csv,
    suggest,
    write_new,
)

SF1 = "001Sb0000000001IAA"
SF2 = "001Sb0000000002IAA"


def by_sf(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {r["sf_account_id"]: r for r in rows if r["sf_account_id"]}


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Acme Labs, Inc.", "acme labs"),
        ("ACME LABS", "acme labs"),
        ("The Acme Labs Ltd", "acme labs"),
        ("Mollie's Bistro", "mollies bistro"),
        ("Smith & Sons GmbH", "smith and sons"),
        ("Café Zürich", "cafe zurich"),
        ("Acme Labs 00042", "acme labs 42"),
    ],
)
def test_names_are_normalised(name: str, key: str) -> None:
    assert name_key(name) == key


def test_keys_of_ids_and_websites() -> None:
    assert number_key("C000123") == "123"
    assert number_key("cust-00123") == "123"
    assert number_key("cmp_12") is None  # fewer than three digits: no customer number
    assert domain_key("https://www.Acme.com/about") == "acme.com"
    assert domain_key("acme.com") == "acme.com"
    assert domain_key("localhost") is None
    assert domain_key("") is None


def test_a_variant_name_joins_salesforce_and_intercom() -> None:
    rows = suggest(
        [
            Record("salesforce", SF1, "Acme Labs, Inc."),
            Record("intercom", "acme-labs", "ACME LABS", segment="paid"),
            Record("salesforce", SF2, "Globex Corporation"),
        ]
    )
    row = by_sf(rows)[SF1]
    assert (row["intercom_company_id"], row["segment"], row["confidence"], row["match"]) == (
        "acme-labs",
        "paid",
        "0.90",
        "matched",
    )
    assert row["evidence"] == "salesforce↔intercom 0.90: same normalised name 'acme labs'"
    globex = by_sf(rows)[SF2]
    assert (globex["match"], globex["confidence"]) == ("unmatched", "")
    assert "segment: not known to any system, fill in" in globex["evidence"]


def test_a_domain_outweighs_different_names() -> None:
    rows = suggest(
        [
            Record("salesforce", SF1, "Holding Group plc", domain="acme.com"),
            Record("intercom", "42", "Acme", domain="acme.com"),
        ]
    )
    row = by_sf(rows)[SF1]
    assert row["intercom_company_id"] == "42"
    assert row["confidence"] == "0.95"


def test_an_ambiguous_name_links_nothing() -> None:
    """Two Salesforce accounts of one name: which is Intercom's is for a person to say."""
    rows = suggest(
        [
            Record("salesforce", SF1, "Acme"),
            Record("salesforce", SF2, "ACME Inc."),
            Record("intercom", "acme", "Acme"),
        ]
    )
    assert all(r["match"] == "unmatched" for r in rows)
    assert len(rows) == 3


def test_a_shared_number_links_nameless_records_but_not_different_names() -> None:
    rows = suggest(
        [
            Record("salesforce", SF1, "Wonka Analytics 00007"),
            Record("intercom", "cmp_000007", "Wonka Analytics 00007"),
            Record("looker", "C000007"),
            Record("jira", "cust-00007", "cust-00007", project="SUP"),
            # A prospect with a number nobody else has, and one whose number is taken.
            Record("salesforce", SF2, "Prospect 0008"),
            Record("intercom", "cmp_000008", "Initech Travel 00008"),
        ]
    )
    wonka = by_sf(rows)[SF1]
    assert (
        wonka["intercom_company_id"],
        wonka["looker_customer_id"],
        wonka["jira_project_key"],
        wonka["jira_component"],
    ) == ("cmp_000007", "C000007", "SUP", "cust-00007")
    assert wonka["confidence"] == "0.60"  # the weakest link: ids sharing a number
    prospect = by_sf(rows)[SF2]
    assert prospect["intercom_company_id"] == ""  # "Prospect" and "Initech Travel" disagree


def test_words_of_a_short_name_within_a_long_one() -> None:
    rows = suggest(
        [
            Record("salesforce", SF1, "Hooli"),
            Record("intercom", "h1", "Hooli Software Europe"),
        ]
    )
    row = by_sf(rows)[SF1]
    assert (row["intercom_company_id"], row["confidence"]) == ("h1", "0.60")


def test_ids_the_mapping_would_refuse_are_left_out() -> None:
    rows = suggest([Record("salesforce", SF1, "Acme"), Record("intercom", "ac'me", "Acme")])
    assert [r["intercom_company_id"] for r in rows] == [""]


def test_cells_that_look_like_formulas_are_guarded() -> None:
    text = rows_csv(suggest([Record("salesforce", SF1, "=HYPERLINK(1)")]))
    assert f"\n{SF1},,,'=HYPERLINK(1),," in text


def test_write_new_refuses_existing_files_and_the_mapping(tmp_path: Path) -> None:
    mapping = tmp_path / "account_mapping.csv"
    mapping.write_text("kept\n", encoding="utf-8")
    with pytest.raises(SuggestError, match="over the mapping itself"):
        write_new(mapping, "x", mapping)
    target = tmp_path / "new.csv"
    write_new(target, "first", mapping)
    with pytest.raises(SuggestError, match="exists"):
        write_new(target, "second", mapping)
    assert (target.read_text(), mapping.read_text()) == ("first", "kept\n")


@pytest.mark.parametrize(
    ("projects", "types", "field", "message"),
    [
        (['SUP" OR project = "OPS'], [], None, "not a Jira project key"),
        ([], ["Customer\n"], None, "not a picklist value"),
        ([], [], "view.field) OR (1", "not a view.field name"),
    ],
)
def test_identifiers_are_checked(
    projects: list[str], types: list[str], field: str | None, message: str
) -> None:
    with pytest.raises(SuggestError, match=message):
        check_identifiers(projects, types, field)
