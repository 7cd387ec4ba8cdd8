"""Which sources a run needs and whether their credentials are complete (names, never values)."""

from __future__ import annotations

import pytest

from health_score.records import Account
from health_score.sources.credentials import (
    check_credentials,
    closest_known,
    mapped_sources,
    missing_credentials,
    unknown_variables,
)
from health_score.sources.jira.settings import Settings as JiraSettings
from health_score.sources.registry import SourceSettings


@pytest.mark.parametrize(
    ("source", "env", "missing"),
    [
        ("intercom", {}, "INTERCOM_API_TOKEN"),
        ("intercom", {"INTERCOM_API_TOKEN": "  "}, "INTERCOM_API_TOKEN"),
        ("intercom", {"INTERCOM_API_TOKEN": "t"}, None),
        ("jira", {"JIRA_BASE_URL": "u"}, "JIRA_EMAIL and JIRA_API_TOKEN"),
        ("looker", {"LOOKER_BASE_URL": "u", "LOOKER_CLIENT_ID": "i"}, "LOOKER_CLIENT_SECRET"),
        (
            "salesforce",
            {"SF_CLIENT_ID": "i"},
            "SF_CLIENT_SECRET (for the client credentials login)",
        ),
        (
            "salesforce",
            {"SF_USERNAME": "u", "SF_PASSWORD": "p"},
            "SF_SECURITY_TOKEN (for the username and password login)",
        ),
        ("salesforce", {"SF_USERNAME": "u", "SF_PASSWORD": "p", "SF_SECURITY_TOKEN": ""}, None),
        ("salesforce", {"SF_CLIENT_ID": "i", "SF_CLIENT_SECRET": "s"}, None),
        (
            "salesforce",
            {},
            "one login flow: SF_CLIENT_ID + SF_CLIENT_SECRET (client credentials); or "
            "SF_CLIENT_ID + SF_USERNAME + SF_JWT_KEY_FILE (JWT bearer); or "
            "SF_USERNAME + SF_PASSWORD + SF_SECURITY_TOKEN (username and password)",
        ),
    ],
)
def test_missing_credentials_names_the_variables(
    source: str, env: dict[str, str], missing: str | None
) -> None:
    assert missing_credentials(source, env) == missing


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("INTERCOM_TOKEN", "INTERCOM_API_TOKEN"),
        ("SF_CLIENTID", "SF_CLIENT_ID"),
        ("JIRA_MAIL", "JIRA_EMAIL"),
        ("LOOKER_SECRET", "LOOKER_CLIENT_SECRET"),
    ],
)
def test_a_misspelt_name_gets_the_closest_known_one(name: str, known: str) -> None:
    assert closest_known(name) == known


def test_only_source_like_unknown_names_are_flagged() -> None:
    names = ["PATH", "HOME", "INTERCOM_API_TOKEN", "SF_CLIENTID", "JIRA_PROJECT_FILTER_X"]
    assert [n for n, _ in unknown_variables(names)] == ["JIRA_PROJECT_FILTER_X", "SF_CLIENTID"]


ACCOUNTS = [
    Account("001000000000001AAA", "A", "paid", sf_account_id="001000000000001AAA"),
    Account("x1", "B", "paid", jira_project_key="ACME", intercom_company_id="c1"),
]


def test_mapped_sources_count_the_accounts_tied_to_each() -> None:
    assert mapped_sources(ACCOUNTS) == {"intercom": 1, "jira": 1, "looker": 0, "salesforce": 1}


def test_a_disabled_source_needs_no_credentials_and_an_unmapped_one_is_not_checked() -> None:
    settings = SourceSettings(jira=JiraSettings.model_validate({"enabled": False}))
    env = {"INTERCOM_API_TOKEN": "t", "SF_CLIENT_ID": "i", "SF_CLIENT_SECRET": "s"}
    check = check_credentials(settings, ACCOUNTS, env)
    assert check.problems == ()
    assert check.disabled == ("jira",)
    # Without jira's switch it is a problem; Looker maps no account and is never one.
    check = check_credentials(SourceSettings(), ACCOUNTS, env)
    assert len(check.problems) == 1 and check.problems[0].startswith(
        "jira: the mapping ties 1 account(s) to it (jira_project_key) but its credentials are "
        "incomplete: set JIRA_BASE_URL and JIRA_EMAIL and JIRA_API_TOKEN"
    )
