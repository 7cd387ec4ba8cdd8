"""The stand-in's SOQL subset: what it accepts, how it evaluates, and what it refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from health_score.sources.salesforce import soql_literal
from health_score_sandbox.soql import (
    AGGREGATE_GROUP_CAP,
    FieldDef,
    Org,
    SObject,
    SoqlError,
    date_range,
    execute,
    parse,
    to_id18,
)

TODAY = date(2026, 11, 1)


def account_id(number: int) -> str:
    return to_id18(f"001Sb{number:010d}")


def build_org(opportunities: int = 6) -> Org:
    org = Org()
    accounts = org.add(SObject("Account", "001"))
    for definition in (
        FieldDef("Id", "id"),
        FieldDef("Name", "string"),
        FieldDef("IsDeleted", "boolean"),
        FieldDef("ARR__c", "currency"),
        FieldDef("Renewal_Date__c", "date"),
        FieldDef("Tier__c", "picklist"),
    ):
        accounts.add_field(definition)
    opps = org.add(SObject("Opportunity", "006"))
    for definition in (
        FieldDef("Id", "id"),
        FieldDef("AccountId", "reference", "Account", "Account"),
        FieldDef("Type", "picklist"),
        FieldDef("CloseDate", "date"),
        FieldDef("LastModifiedDate", "datetime"),
        FieldDef("IsWon", "boolean"),
        FieldDef("Amount", "currency"),
        FieldDef("IsDeleted", "boolean"),
    ):
        opps.add_field(definition)
    accounts.records += [
        {"Id": account_id(1), "Name": "Acme", "ARR__c": 250000.0, "Tier__c": "Standard",
         "Renewal_Date__c": date(2027, 1, 1), "IsDeleted": False},
        {"Id": account_id(2), "Name": "O'Brien & Co", "ARR__c": None, "Tier__c": None,
         "Renewal_Date__c": None, "IsDeleted": False},
    ]  # fmt: skip
    for n in range(opportunities):
        opps.records.append(
            {
                "Id": to_id18(f"006Sb{n:010d}"),
                "AccountId": account_id(1 + n % 2),
                "Type": "Downgrade" if n % 3 == 0 else "Expansion",
                "CloseDate": date(2026, 10, 1 + n % 28),
                "LastModifiedDate": datetime(2026, 10, 1 + n % 28, 12, tzinfo=UTC),
                "IsWon": n % 2 == 0,
                "Amount": 1000.0 * (n + 1),
                "IsDeleted": n == 5,
            }
        )
    return org


def run(query: str, org: Org | None = None, **kwargs: bool) -> list[dict[str, object]]:
    return execute(org or build_org(), query, today=TODAY, **kwargs).records


def refused(query: str, org: Org | None = None) -> SoqlError:
    with pytest.raises(SoqlError) as caught:
        execute(org or build_org(), query, today=TODAY)
    return caught.value


# -- accepted --------------------------------------------------------------------------------


def test_select_returns_records_with_attributes_and_canonical_field_names() -> None:
    rows = run(f"select id, name, arr__c FROM account WHERE id = '{account_id(1)}'")  # noqa: S608
    assert rows == [
        {
            "attributes": {
                "type": "Account",
                "url": f"/services/data/v62.0/sobjects/Account/{account_id(1)}",
            },
            "Id": account_id(1),
            "Name": "Acme",
            "ARR__c": 250000.0,
        }
    ]


def test_parent_relationship_fields_nest_under_the_relationship_name() -> None:
    rows = run(
        "SELECT Id, Account.Name, Account.Tier__c FROM Opportunity ORDER BY CloseDate LIMIT 1"
    )
    assert rows[0]["Account"] == {
        "attributes": {
            "type": "Account",
            "url": f"/services/data/v62.0/sobjects/Account/{account_id(1)}",
        },
        "Name": "Acme",
        "Tier__c": "Standard",
    }


def test_a_fifteen_character_id_matches_its_eighteen_character_form() -> None:
    rows = run(f"SELECT Id FROM Account WHERE Id IN ('{account_id(2)[:15]}')")  # noqa: S608
    assert [r["Id"] for r in rows] == [account_id(2)]


def test_string_equality_is_case_insensitive_and_escapes_round_trip() -> None:
    assert len(run("SELECT Id FROM Account WHERE Name = 'ACME'")) == 1
    assert len(run("SELECT Id FROM Account WHERE Name = 'O\\'Brien & Co'")) == 1


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=0), max_size=30))
def test_any_escaped_literal_parses_back_to_the_same_text(text: str) -> None:
    try:
        literal = soql_literal(text)
    except ValueError:
        assert any(ord(ch) < 32 or ch == "\x7f" for ch in text)
        return
    query = parse(f"SELECT Id FROM Account WHERE Name = {literal}")  # noqa: S608
    assert query.where is not None
    assert query.where.value.value == text  # type: ignore[union-attr]


def test_and_or_with_parentheses_and_not_in_evaluate_like_salesforce() -> None:
    rows = run(
        "SELECT Id FROM Opportunity WHERE (Type = 'Downgrade' AND IsWon = TRUE) "
        "OR (Type NOT IN ('Downgrade') AND Amount >= 4000)"
    )
    assert sorted(r["Id"][:15] for r in rows) == ["006Sb0000000000", "006Sb0000000004"]


def test_not_equal_and_not_in_match_null_values() -> None:
    assert len(run("SELECT Id FROM Account WHERE Tier__c != 'Standard'")) == 1
    assert len(run("SELECT Id FROM Account WHERE ARR__c = null")) == 1
    assert len(run("SELECT Id FROM Account WHERE ARR__c > 0")) == 1


def test_relative_date_literals_use_the_given_today() -> None:
    assert date_range("LAST_N_MONTHS", 12, TODAY) == (date(2025, 11, 1), date(2026, 10, 31))
    assert date_range("LAST_N_DAYS", 30, TODAY) == (date(2026, 10, 2), TODAY)
    assert date_range("TODAY", None, TODAY) == (TODAY, TODAY)
    assert len(run("SELECT Id FROM Opportunity WHERE CloseDate = LAST_N_DAYS:29")) == 3
    assert len(run("SELECT Id FROM Opportunity WHERE CloseDate = LAST_N_MONTHS:1")) == 5
    assert len(run("SELECT Id FROM Opportunity WHERE LastModifiedDate > 2026-10-03T00:00:00Z")) == 3
    assert len(run("SELECT Id FROM Account WHERE Renewal_Date__c > TODAY")) == 1


def test_count_aggregates_group_by_aliases_and_order_by() -> None:
    rows = run(
        "SELECT AccountId, COUNT(Id) n, SUM(Amount), MAX(CloseDate) FROM Opportunity "
        "GROUP BY AccountId ORDER BY COUNT(Id) DESC"
    )
    assert rows == [
        {"attributes": {"type": "AggregateResult"}, "AccountId": account_id(1), "n": 3,
         "expr0": 9000.0, "expr1": "2026-10-05"},
        {"attributes": {"type": "AggregateResult"}, "AccountId": account_id(2), "n": 2,
         "expr0": 6000.0, "expr1": "2026-10-04"},
    ]  # fmt: skip


def test_count_without_fields_answers_the_total_and_no_records() -> None:
    result = execute(build_org(), "SELECT COUNT() FROM Opportunity", today=TODAY)
    assert (result.total_size, result.records) == (5, [])


def test_deleted_records_show_only_through_query_all() -> None:
    assert len(run("SELECT Id FROM Opportunity")) == 5
    assert len(run("SELECT Id FROM Opportunity", include_deleted=True)) == 6


def test_archived_records_show_only_through_query_all_and_is_deleted_filters_the_bin() -> None:
    org = build_org()
    opportunities = org.get("Opportunity")
    assert opportunities is not None
    opportunities.add_field(FieldDef("IsArchived", "boolean"))
    opportunities.records[0]["IsArchived"] = True
    assert len(execute(org, "SELECT Id FROM Opportunity", today=TODAY).records) == 4
    every = execute(org, "SELECT Id FROM Opportunity", today=TODAY, include_deleted=True)
    assert len(every.records) == 6
    live = execute(
        org, "SELECT Id FROM Opportunity WHERE IsDeleted = false", today=TODAY, include_deleted=True
    )
    assert len(live.records) == 5  # the archived one included, the deleted one not


def test_order_by_puts_nulls_first_ascending_and_last_descending() -> None:
    ascending = run("SELECT Name FROM Account ORDER BY ARR__c")
    descending = run("SELECT Name FROM Account ORDER BY ARR__c DESC")
    assert [r["Name"] for r in ascending] == ["O'Brien & Co", "Acme"]
    assert [r["Name"] for r in descending] == ["Acme", "O'Brien & Co"]


def test_aggregates_beyond_two_thousand_groups_are_refused_as_salesforce_does() -> None:
    org = build_org(opportunities=AGGREGATE_GROUP_CAP + 2)  # one is deleted
    error = refused("SELECT Id, COUNT(Type) FROM Opportunity GROUP BY Id", org)
    assert error.code == "MALFORMED_QUERY"
    assert "does not support queryMore" in error.message
    assert len(run("SELECT Id, COUNT(Type) FROM Opportunity GROUP BY Id LIMIT 2000", org)) == 2000


# -- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "SELECT FROM Account",
        "SELECT Id FROM Account WHERE",
        "SELECT Id FROM Account WHERE Name = 'a' AND ARR__c > 1 OR Name = 'b'",
        "SELECT Id FROM Account WHERE Name LIKE 'A%'",
        "SELECT Id, (SELECT Id FROM Opportunities) FROM Account",
        "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Opportunity)",
        "SELECT Id FROM Account WHERE Name = :name",
        "SELECT Id FROM Account WHERE Name = 'unterminated",
        "SELECT Id FROM Account WHERE Name = 'bad \\q escape'",
        "SELECT Id FROM Account LIMIT ten",
        "SELECT Id FROM Account OFFSET 5",
        "SELECT Type, Amount FROM Opportunity GROUP BY Type",
        "SELECT Amount, COUNT(Id) FROM Opportunity GROUP BY Amount",
        "SELECT COUNT(), Id FROM Account",
        "SELECT Id FROM Opportunity WHERE CloseDate = LAST_N_FORTNIGHTS:2",
        "SELECT Id FROM Account; DELETE FROM Account",
        "SELECT toLabel(Tier__c) FROM Account",
    ],
)
def test_what_the_subset_does_not_understand_is_malformed_query(query: str) -> None:
    assert refused(query).code == "MALFORMED_QUERY"


def test_unknown_fields_and_relationships_are_invalid_field() -> None:
    error = refused("SELECT Id, Champion__c FROM Account")
    assert error.code == "INVALID_FIELD"
    assert "No such column 'Champion__c' on entity 'Account'" in error.message
    assert refused("SELECT Owner.Name FROM Opportunity").code == "INVALID_FIELD"


def test_literals_of_the_wrong_type_are_invalid_field() -> None:
    assert refused("SELECT Id FROM Account WHERE ARR__c = '5'").code == "INVALID_FIELD"
    assert refused("SELECT Id FROM Opportunity WHERE CloseDate = 2026-01-01T00:00:00Z").code == (
        "INVALID_FIELD"
    )
    assert refused("SELECT Id FROM Opportunity WHERE IsWon = 'true'").code == "INVALID_FIELD"


def test_unknown_objects_are_invalid_type() -> None:
    error = refused("SELECT Id FROM Payment__c")
    assert error.code == "INVALID_TYPE"
    assert "sObject type 'Payment__c' is not supported" in error.message


def test_an_injection_shaped_id_is_an_invalid_id_not_a_wider_filter() -> None:
    error = refused("SELECT Id FROM Account WHERE Id = '001' OR Name != ''")
    assert error.code == "INVALID_QUERY_FILTER_OPERATOR"


def test_error_messages_point_at_the_row_and_column() -> None:
    error = refused("SELECT Id\nFROM Account WHERE Nme = 'x'")
    assert "ERROR at Row:2:Column:20" in error.message
