"""Credentials for a run: the environment, optionally topped up from AWS Secrets Manager.

When ``SECRETS_ID`` is set, the secret it names must be one JSON object whose keys are the same
environment variable names the pipeline reads (``INTERCOM_API_TOKEN``, ``SF_PASSWORD``, …) and
whose values are strings. Those pairs are merged into a *copy* of the environment (the secret
wins over a variable of the same name); ``os.environ`` is never modified. Values never appear in
a log line or an exception message: errors name the secret and the offending key only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

SECRETS_ID = "SECRETS_ID"
_VARIABLE = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")

#: Variable names whose values are treated as secret wherever they come from.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CLIENT_ID|CREDENTIAL")
#: Credential-sounding names that only point at credentials (shown in messages).
_REFERENCES = frozenset({SECRETS_ID})
#: Endings of names that hold locations, not secrets (a base URL listed with a source's
#: credentials stays readable in logs: errors name the endpoint).
_LOCATION_SUFFIXES = ("_URL", "_BUNDLE", "_PATH", "_FILE", "_DIR")
#: Values shorter than this are not masked in logs (masking "1" would garble every line).
MIN_MASKED_LENGTH = 6


class SecretsError(Exception):
    """The secret could not be read or is not a JSON object of variable name → string."""


def parse_secret(secret_id: str, text: str) -> dict[str, str]:
    """The variables held by one secret string (validated; values never echoed)."""
    try:
        document = json.loads(text)
    except ValueError:
        raise SecretsError(
            f"secret {secret_id!r} is not valid JSON; it must be one object such as "
            '{"INTERCOM_API_TOKEN": "…", "SF_PASSWORD": "…"}'
        ) from None
    if not isinstance(document, dict):
        raise SecretsError(
            f"secret {secret_id!r} must be a JSON object of variable name → string value"
        )
    values: dict[str, str] = {}
    problems: list[str] = []
    for key, value in document.items():
        if not _VARIABLE.fullmatch(key):
            problems.append(f"key {key[:64]!r} is not an environment variable name (A-Z, 0-9, _)")
        elif not isinstance(value, str):
            problems.append(f"key {key!r} must hold a string, not {type(value).__name__}")
        else:
            values[key] = value
    if problems:
        raise SecretsError(f"secret {secret_id!r}: " + "; ".join(problems))
    return values


def fetch_secret(secret_id: str, *, client: Any = None) -> dict[str, str]:
    """Read and parse one Secrets Manager secret (``SecretString``)."""
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise SecretsError(
            f"could not read secret {secret_id!r} from Secrets Manager ({code}); check "
            "SECRETS_ID and that the function's role may call secretsmanager:GetSecretValue on it"
        ) from None
    except BotoCoreError as exc:
        raise SecretsError(
            f"could not reach Secrets Manager for secret {secret_id!r} ({type(exc).__name__})"
        ) from None
    text = response.get("SecretString")
    if not isinstance(text, str):
        raise SecretsError(
            f"secret {secret_id!r} has no SecretString (binary secrets not supported)"
        )
    return parse_secret(secret_id, text)


def run_environment(environ: Mapping[str, str], *, client: Any = None) -> dict[str, str]:
    """A copy of ``environ`` with the variables of ``$SECRETS_ID`` merged in, when it is set."""
    env = dict(environ)
    secret_id = env.get(SECRETS_ID, "").strip()
    if secret_id:
        env.update(fetch_secret(secret_id, client=client))
    return env


def secret_values(
    env: Mapping[str, str], extra_names: set[str] | frozenset[str] = frozenset()
) -> set[str]:
    """Values never to show: credential-named variables of ``env`` and ``extra_names``."""
    return {
        value
        for name, value in env.items()
        if (name in extra_names or (_SECRET_NAME.search(name) and name not in _REFERENCES))
        and not name.endswith(_LOCATION_SUFFIXES)
        and len(value) >= MIN_MASKED_LENGTH
    }
