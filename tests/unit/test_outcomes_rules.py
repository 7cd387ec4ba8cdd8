"""The outcome rules with literals by hand: won/lost mapping, the as_of cut-off and look-back,
the churn-date de-duplication window, the ARR fallback, the SOQL text and the CSV cells."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from health_score.loaders.outcomes_output import outcomes_csv
from health_score.records import Account
from health_score.sources.salesforce.outcomes import (
    CHURN,
    RENEWAL,
    Found,
    OutcomeEvent,
    account_soql,
    churn_date_events,
    deduplicated,
    lookback_start,
    opportunity_events,
    opportunity_kind,
    opportunity_soql,
    resolve,
)
from health_score.sources.salesforce.settings import Settings

ACME = "001Sb0000000001IAA"
GLOBEX = "001Sb0000000002IAA"
OPP_1 = "006Sb0000000001IAA"
OPP_2 = "006Sb0000000002IAA"
OPP_3 = "006Sb0000000003IAA"
END = date(2026, 11, 1)


def settings(**outcomes: Any) -> Settings:
    return Settings.model_validate({"outcomes": outcomes})


def opp(
    record_id: str = OPP_1,
    account: str = ACME,
    *,
    kind: str = "Renewal",
    close: str = "2026-05-04",
    closed: bool = True,
    won: bool = True,
    stage: str = "Closed Won",
    amount: Any = 1000,
) -> dict[str, Any]:
    return {
        "Id": record_id,
        "AccountId": account,
        "Type": kind,
        "CloseDate": close,
        "IsClosed": closed,
        "IsWon": won,
        "StageName": stage,
        "Amount": amount,
    }


# -- won / lost ---------------------------------------------------------------------------------


def test_flags_closed_won_is_a_renewal_and_closed_lost_a_churn() -> None:
    rules = settings()
    assert opportunity_kind(opp(won=True), rules) == RENEWAL
    assert opportunity_kind(opp(won=False, stage="Closed Lost"), rules) == CHURN
    assert opportunity_kind(opp(closed=False, won=False, stage="Negotiation"), rules) is None
    assert opportunity_kind(opp(kind="Upsell"), rules) is None  # not a renewal type
    assert opportunity_kind(opp(kind="renewal"), rules) == RENEWAL  # picklists: any case
    assert opportunity_kind(opp(kind=None), rules) is None  # type: ignore[arg-type]


def test_flags_follow_is_won_not_the_stage_name() -> None:
    assert opportunity_kind(opp(won=False, stage="Closed Won"), settings()) == CHURN


def test_stages_follow_the_configured_names_and_ignore_the_flags() -> None:
    rules = settings(match="stages", won_stages=["Signed"], lost_stages=["Gone", "Lost"])
    assert opportunity_kind(opp(stage="Signed", won=False), rules) == RENEWAL
    assert opportunity_kind(opp(stage="gone", won=True), rules) == CHURN
    assert opportunity_kind(opp(stage="Lost"), rules) == CHURN
    assert opportunity_kind(opp(stage="Closed Won"), rules) is None  # not a configured stage


def test_a_stage_cannot_be_both_won_and_lost() -> None:
    with pytest.raises(pydantic.ValidationError, match="both won and lost: closed"):
        settings(match="stages", won_stages=["Closed"], lost_stages=["closed"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("amount_field", "Amount; DELETE"),
        ("stage_field", "Stage Name"),
        ("churn_date_field", "Churn_Date__c) OR (Id"),
        ("renewal_types", []),
        ("lookback_months", 0),
        ("dedupe_days", -1),
        ("match", "either"),
    ],
)
def test_identifiers_and_values_are_validated(key: str, value: Any) -> None:
    with pytest.raises(pydantic.ValidationError, match=f"outcomes.{key}"):
        settings(**{key: value})


# -- the as_of cut-off and the look-back -------------------------------------------------------


def test_lookback_start_is_the_same_day_n_months_before() -> None:
    assert lookback_start(settings().outcomes, END) == date(2023, 11, 1)
    assert lookback_start(settings(lookback_months=1).outcomes, date(2026, 3, 31)) == date(
        2026, 2, 28
    )
    assert lookback_start(settings(lookback_months=None).outcomes, END) is None


def test_only_events_before_as_of_and_within_the_lookback_are_kept() -> None:
    rows = [
        opp(OPP_1, close="2026-10-31"),  # the last day before as_of: known
        opp(OPP_2, close="2026-11-01"),  # on as_of: not yet known
        opp(OPP_3, close="2023-11-01"),  # the look-back's first day: kept
        opp("006Sb0000000004IAA", close="2023-10-31"),  # the day before it: dropped
        opp("006Sb0000000005IAA", close=None),  # type: ignore[arg-type]  # no close date
    ]
    found = opportunity_events(rows, settings(), date(2023, 11, 1), END)
    assert [(f.evidence, f.day) for f in found] == [
        (OPP_1, date(2026, 10, 31)),
        (OPP_3, date(2023, 11, 1)),
    ]
    assert len(opportunity_events(rows, settings(), None, END)) == 3  # no lower bound


def test_an_opportunity_event_keeps_its_amount_and_15_character_ids_are_widened() -> None:
    (found,) = opportunity_events(
        [opp("006Sb0000000001", "001Sb0000000001", amount=Decimal("12.50"), won=False)],
        settings(),
        None,
        END,
    )
    assert found == Found(ACME, CHURN, date(2026, 5, 4), Decimal("12.50"), OPP_1)
    (unpriced,) = opportunity_events([opp(amount=None)], settings(), None, END)
    assert unpriced.amount is None
    (ignored,) = opportunity_events([opp(amount=5)], settings(amount_field=None), None, END)
    assert ignored.amount is None  # amount_field null: always the Account's ARR


# -- the Account's churn date and the de-duplication window ------------------------------------


def test_an_account_churn_date_before_as_of_is_a_churn_event() -> None:
    rules = settings(churn_date_field="Churn_Date__c")
    rows = [
        {"Id": ACME, "Churn_Date__c": "2026-10-31"},
        {"Id": GLOBEX, "Churn_Date__c": "2026-11-01"},  # on as_of: not known
        {"Id": "001Sb0000000003IAA", "Churn_Date__c": None},
    ]
    assert churn_date_events(rows, rules, None, END) == [
        Found(ACME, CHURN, date(2026, 10, 31), None, "Account.Churn_Date__c")
    ]
    assert churn_date_events(rows, settings(), None, END) == []  # no field configured


def _lost(day: date, account: str = ACME) -> Found:
    return Found(account, CHURN, day, Decimal(100), OPP_1)


def _dated(day: date, account: str = ACME) -> Found:
    return Found(account, CHURN, day, None, "Account.Churn_Date__c")


def test_a_churn_date_within_the_window_of_a_lost_renewal_is_the_same_event() -> None:
    lost = _lost(date(2026, 3, 1))
    # 45 days either side, inclusive: 2026-01-15 … 2026-04-15.
    assert deduplicated([lost], [_dated(date(2026, 4, 15))], 45) == [lost]
    assert deduplicated([lost], [_dated(date(2026, 1, 15))], 45) == [lost]
    later = _dated(date(2026, 4, 16))
    assert deduplicated([lost], [later], 45) == [lost, later]
    earlier = _dated(date(2026, 1, 14))
    assert deduplicated([lost], [earlier], 45) == [lost, earlier]
    same_day = _dated(date(2026, 3, 1))
    assert deduplicated([lost], [same_day], 0) == [lost]
    assert deduplicated([lost], [_dated(date(2026, 3, 2))], 0) == [lost, _dated(date(2026, 3, 2))]


def test_only_a_lost_renewal_of_the_same_account_deduplicates() -> None:
    won = Found(ACME, RENEWAL, date(2026, 3, 1), Decimal(100), OPP_1)
    dated = _dated(date(2026, 3, 5))
    assert deduplicated([won], [dated], 45) == [won, dated]
    other = _lost(date(2026, 3, 1), GLOBEX)
    assert deduplicated([other], [dated], 45) == [other, dated]


# -- rows: ARR, mapping, order --------------------------------------------------------------------


def test_rows_take_the_amount_else_the_account_arr_and_are_sorted() -> None:
    acme = Account("acme", "Acme", "paid", sf_account_id=ACME)
    twin = Account("acme-eu", "Acme EU", "paid", sf_account_id=ACME)  # mapped twice
    globex = Account("globex", "Globex", "standard", sf_account_id=GLOBEX)
    found = [
        Found(GLOBEX, RENEWAL, date(2026, 2, 1), None, OPP_2),
        Found(ACME, CHURN, date(2026, 1, 5), Decimal("10.5"), OPP_1),
        Found(GLOBEX, CHURN, date(2026, 1, 5), None, "Account.Churn_Date__c"),
    ]
    rows = resolve(
        found, {ACME: [acme, twin], GLOBEX: [globex]}, {ACME: Decimal(7), GLOBEX: Decimal(300)}
    )
    assert rows == (
        OutcomeEvent("acme", "Acme", CHURN, date(2026, 1, 5), Decimal("10.5"), OPP_1),
        OutcomeEvent("acme-eu", "Acme EU", CHURN, date(2026, 1, 5), Decimal("10.5"), OPP_1),
        OutcomeEvent(
            "globex", "Globex", CHURN, date(2026, 1, 5), Decimal(300), "Account.Churn_Date__c"
        ),
        OutcomeEvent("globex", "Globex", RENEWAL, date(2026, 2, 1), Decimal(300), OPP_2),
    )
    (unknown,) = resolve([found[0]], {GLOBEX: [globex]}, {})
    assert unknown.arr is None


def test_the_csv_guards_text_cells_and_writes_plain_numbers() -> None:
    events = [
        OutcomeEvent("=cmd", "@Acme, Inc.", CHURN, date(2026, 1, 5), Decimal("1E+3"), OPP_1),
        OutcomeEvent("g1", "-Globex", RENEWAL, date(2026, 2, 1), None, "Account.Churn_Date__c"),
    ]
    assert outcomes_csv(events).decode("utf-8") == (
        "account_id,account_name,event,date,arr,evidence\n"
        f"'=cmd,\"'@Acme, Inc.\",churn,2026-01-05,1000,{OPP_1}\n"
        "g1,'-Globex,renewal,2026-02-01,,Account.Churn_Date__c\n"
    )
    assert outcomes_csv([]) == b"account_id,account_name,event,date,arr,evidence\n"


# -- SOQL -----------------------------------------------------------------------------------------


def test_the_opportunity_query_by_flags() -> None:
    assert opportunity_soql(settings(), [ACME, GLOBEX], END) == (
        "SELECT Id, AccountId, Type, CloseDate, IsClosed, IsWon, Amount FROM Opportunity"  # noqa: S608
        f" WHERE AccountId IN ('{ACME}','{GLOBEX}') AND Type IN ('Renewal')"
        " AND IsClosed = TRUE AND CloseDate < 2026-11-01"
    )


def test_the_opportunity_query_by_stages_escapes_every_literal() -> None:
    rules = settings(
        match="stages",
        renewal_types=["Renewal", "O'Brien\\s"],
        won_stages=["Won"],
        lost_stages=['Lost "hard"'],
        amount_field=None,
    )
    assert opportunity_soql(rules, ["001Sb0000000001"], END) == (
        "SELECT Id, AccountId, Type, CloseDate, StageName FROM Opportunity"  # noqa: S608
        f" WHERE AccountId IN ('{ACME}') AND Type IN ('Renewal','O\\'Brien\\\\s')"
        " AND StageName IN ('Won','Lost \\\"hard\\\"') AND CloseDate < 2026-11-01"
    )


def test_an_id_that_is_no_salesforce_id_never_reaches_a_query() -> None:
    with pytest.raises(ValueError, match="not a Salesforce id"):
        opportunity_soql(settings(), ["001' OR Name != '"], END)


def test_the_account_query_reads_the_arr_and_the_churn_date_when_configured() -> None:
    assert account_soql(settings(), [ACME]) == (
        f"SELECT Id, ARR__c FROM Account WHERE Id IN ('{ACME}')"  # noqa: S608
    )
    assert account_soql(settings(churn_date_field="Churn_Date__c"), [ACME]) == (
        f"SELECT Id, ARR__c, Churn_Date__c FROM Account WHERE Id IN ('{ACME}')"  # noqa: S608
    )
