"""The one Salesforce id rule (health_score.salesforce_ids), pinned with ids worked out by hand.

The suffix has one character per block of five: bit i is set when the block's i-th character is
an uppercase letter, and the value indexes ABCDEFGHIJKLMNOPQRSTUVWXYZ012345.
"""

from __future__ import annotations

import pytest

from health_score.config import ConfigProblem, parse_mapping
from health_score.loaders.salesforce import external_key
from health_score.salesforce_ids import (
    InvalidSalesforceId,
    checksum_suffix,
    id_hint,
    id_problem,
    is_salesforce_id,
    recased,
    salesforce_id18,
    salesforce_id18_or_none,
)
from health_score.sources import salesforce as extractor

# (15-character id, its 18-character form), each suffix worked out block by block:
PAIRS = [
    # "00100" "00000" "00001": no uppercase letter anywhere → 0, 0, 0 → AAA.
    ("001000000000001", "001000000000001AAA"),
    # Salesforce's documented example. "001D0": D is character 3 → 8 → I; "00000" → A;
    # "IRFma": I, R, F are characters 0, 1, 2 → 1 + 2 + 4 = 7 → H.
    ("001D000000IRFma", "001D000000IRFmaIAH"),
    # "003G0": G at 3 → 8 → I; "00001" → A; "SUbc4": S, U at 0, 1 → 3 → D.
    ("003G000001SUbc4", "003G000001SUbc4IAD"),
    # "0017F": F at 4 → 16 → Q; "00000" → A; "8BqLk": B at 1, L at 3 → 2 + 8 = 10 → K.
    ("0017F000008BqLk", "0017F000008BqLkQAK"),
    # "ABCDE" → 31 → 5 (the last digit); "0A0AA" → 2 + 8 + 16 = 26 → 0 (the first digit);
    # "zzzzZ" → 16 → Q.
    ("ABCDE0A0AAzzzzZ", "ABCDE0A0AAzzzzZ50Q"),
]


@pytest.mark.parametrize(("id15", "id18"), PAIRS)
def test_the_suffix_of_hand_computed_ids(id15: str, id18: str) -> None:
    assert checksum_suffix(id15) == id18[15:]
    assert salesforce_id18(id15) == id18
    assert salesforce_id18(id18) == id18
    assert is_salesforce_id(id15) and is_salesforce_id(id18)


def test_digits_and_lowercase_letters_never_change_the_suffix() -> None:
    assert checksum_suffix("abcde12345zzzzz") == "AAA"
    assert checksum_suffix("Abcde12345zzzzz") == "BAA"  # bit 0 of the first block
    assert checksum_suffix("abcdE12345zzzzz") == "QAA"  # bit 4 of the first block


def test_a_lowercased_suffix_is_accepted_and_canonicalised() -> None:
    # The case that used to differ: the extractor refused this id, the loader accepted it. The
    # suffix alphabet has no lowercase letters, so "iah" says what "IAH" says.
    assert salesforce_id18("001D000000IRFmaiah") == "001D000000IRFmaIAH"
    assert salesforce_id18("001D000000IRFmaIaH") == "001D000000IRFmaIAH"
    assert extractor.salesforce_id18("001D000000IRFmaiah") == "001D000000IRFmaIAH"
    assert external_key("001D000000IRFmaiah", "2026-11") == "001D000000IRFmaIAH-2026-11"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("001D000000IRFmaAAA", "suffix 'AAA' does not match"),  # wrong suffix
        ("001d000000irfmaIAH", "suffix 'IAH' does not match"),  # body's case changed
        ("001D000000IRFMAIAH", "expected 'IA5'"),  # body uppercased: "IRFMA" → 31 → 5
        ("001D000000IRFm", "14 characters"),
        ("001D000000IRFmaIA", "17 characters"),
        ("001D000000IRFmaIAHX", "19 characters"),
        ("", "0 characters"),
        ("001' OR Name='x", "characters other than ASCII letters and digits"),
        ("001D000000IRFm-", "characters other than ASCII letters and digits"),
        ("001D000000IRFm\u00e9", "characters other than ASCII letters and digits"),
        ("001D000000IRFm\uff21", "characters other than ASCII letters and digits"),  # fullwidth A
        (" 01D000000IRFma", "characters other than ASCII letters and digits"),
    ],
)
def test_what_is_not_an_id_is_refused_with_the_reason(value: str, reason: str) -> None:
    problem = id_problem(value)
    assert problem is not None and reason in problem
    assert not is_salesforce_id(value)
    assert salesforce_id18_or_none(value) is None
    with pytest.raises(InvalidSalesforceId, match="not a Salesforce id"):
        salesforce_id18(value)
    with pytest.raises(ValueError, match="not a Salesforce id"):  # the extractor's name for it
        extractor.salesforce_id18(value)
    with pytest.raises(ValueError, match="not a Salesforce id"):
        external_key(value, "2026-11")


def test_a_non_string_is_not_an_id() -> None:
    assert id_problem(1234567890) == "not a string"
    assert not is_salesforce_id(None)


def test_the_mapping_refuses_a_wrong_suffix_and_accepts_a_lowercased_one() -> None:
    header = (
        "sf_account_id,intercom_company_id,looker_customer_id,jira_project_key,jira_component,"
        "account_name,segment\n"
    )
    rows = (
        "001D000000IRFmaAAA,,,,,Wrong suffix,paid\n"
        "003G000001SUbc4iad,,,,,Lowered suffix,paid\n"
        "0017F000008BqLkQAK,,,,,Correct,paid\n"
    )
    problems: list[ConfigProblem] = []
    accounts = parse_mapping(header + rows, frozenset({"paid"}), problems)
    messages = [str(p) for p in problems]
    assert len(messages) == 1
    assert "line 2" in messages[0]
    assert "is not a 15- or 18-character Salesforce id" in messages[0]
    assert "expected 'IAH'" in messages[0]
    assert [a.account_name for a in accounts] == ["Lowered suffix", "Correct"]


def test_the_suffix_restores_the_case_of_a_lowercased_id() -> None:
    # IAH: I = 8 → character 3 of "001d0" upper; A → none of "00000"; H = 7 → "irf" of "irfma".
    assert recased("001d000000irfmaiah") == "001D000000IRFmaIAH"
    assert recased("001D000000IRFmaIAH") == "001D000000IRFmaIAH"
    # "B" = 1 marks character 0 of "00100" as a capital: a digit cannot be one.
    assert recased("001000000000001BAA") is None
    assert recased("001D000000IRFma") is None  # 15 characters: no suffix to read


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (
            "001d000000irfmaiah",
            "its first 15 characters have no capitals, but the suffix 'IAH' says which should "
            "(the case was lost, e.g. lower-cased): did you mean '001D000000IRFmaIAH'?",
        ),
        ("001D000000IRFmaAAA", "checksum should be 'IAH': did you mean '001D000000IRFmaIAH'?"),
        # One letter typed in lower case: both readings are offered.
        (
            "001d000000IRFmaIAH",
            "checksum should be 'AAH': did you mean '001d000000IRFmaAAH'? (or "
            "'001D000000IRFmaIAH', the case its suffix describes, if a letter's case changed)",
        ),
        # "5" = 31 marks five capitals in "00100": no re-casing, only the checksum.
        ("001000000000001555", "checksum should be 'AAA': did you mean '001000000000001AAA'?"),
    ],
)
def test_a_mangled_eighteen_character_id_gets_a_hint(value: str, hint: str) -> None:
    assert id_hint(value) == hint


@pytest.mark.parametrize(
    "value", ["001D000000IRFmaIAH", "001d000000irfmaIAHx", "001D000000IRFma", "001' OR Name"]
)
def test_no_hint_for_a_valid_id_or_one_of_the_wrong_shape(value: str) -> None:
    assert id_hint(value) is None
