"""Credentials from AWS Secrets Manager (moto): merged into a copy of the environment only."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from health_score.secrets import SecretsError, parse_secret, run_environment, secret_values

SENTINEL = "sentinel-value-7f3a9c"


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager")


def test_the_secret_is_merged_into_a_copy_and_never_into_os_environ(
    secretsmanager: Any,
) -> None:
    arn = secretsmanager.create_secret(
        Name="hsm/credentials",
        SecretString=json.dumps({"INTERCOM_API_TOKEN": SENTINEL, "JIRA_EMAIL": "ops@example.com"}),
    )["ARN"]
    environ = {"SECRETS_ID": arn, "JIRA_EMAIL": "old@example.com", "LOG_LEVEL": "INFO"}

    env = run_environment(environ)

    assert env["INTERCOM_API_TOKEN"] == SENTINEL
    assert env["JIRA_EMAIL"] == "ops@example.com"  # the secret wins
    assert env["LOG_LEVEL"] == "INFO"
    assert "INTERCOM_API_TOKEN" not in environ
    assert SENTINEL not in os.environ.values()


def test_a_secret_can_be_named_instead_of_its_arn(secretsmanager: Any) -> None:
    secretsmanager.create_secret(Name="hsm/by-name", SecretString='{"SF_PASSWORD": "pw-123456"}')
    assert run_environment({"SECRETS_ID": "hsm/by-name"})["SF_PASSWORD"] == "pw-123456"


def test_without_secrets_id_the_environment_is_used_as_it_is() -> None:
    environ = {"INTERCOM_API_TOKEN": "from-env"}
    env = run_environment(environ)
    assert env == environ
    assert env is not environ


def test_a_missing_secret_names_the_secret_and_the_permission_to_check(
    secretsmanager: Any,
) -> None:
    with pytest.raises(SecretsError) as caught:
        run_environment({"SECRETS_ID": "hsm/does-not-exist"})
    message = str(caught.value)
    assert "hsm/does-not-exist" in message
    assert "ResourceNotFoundException" in message
    assert "secretsmanager:GetSecretValue" in message


def test_a_secret_that_is_not_json_is_refused_without_echoing_it() -> None:
    with pytest.raises(SecretsError, match="not valid JSON") as caught:
        parse_secret("hsm/x", f"INTERCOM_API_TOKEN={SENTINEL}")
    assert SENTINEL not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None
    assert caught.value.__suppress_context__


def test_a_secret_with_non_string_values_names_the_key_but_not_the_value() -> None:
    with pytest.raises(SecretsError) as caught:
        parse_secret("hsm/x", json.dumps({"SF_PASSWORD": [SENTINEL], "bad key": "v"}))
    message = str(caught.value)
    assert "SF_PASSWORD" in message and "list" in message
    assert "'bad key'" in message
    assert SENTINEL not in message


def test_a_secret_that_is_a_json_list_is_refused() -> None:
    with pytest.raises(SecretsError, match="JSON object"):
        parse_secret("hsm/x", json.dumps([SENTINEL]))


def test_credential_named_and_listed_variables_are_the_values_to_mask() -> None:
    env = {
        "INTERCOM_API_TOKEN": "tok-123456",
        "SF_PASSWORD": "pw-1234567",
        "JIRA_EMAIL": "ops@example.com",
        "JIRA_BASE_URL": "https://example.atlassian.net",
        "LOOKER_CLIENT_SECRET": "abc",  # too short to mask without garbling logs
    }
    assert secret_values(env) == {"tok-123456", "pw-1234567"}
    located = {"JIRA_BASE_URL": "https://example.atlassian.net", "SF_CA_BUNDLE": "/tmp/ca.pem"}
    assert secret_values(located, frozenset(located)) == set()
    assert secret_values(env, frozenset({"JIRA_EMAIL"})) == {
        "tok-123456",
        "pw-1234567",
        "ops@example.com",
    }
