"""Which sources a run needs, and whether their credentials are complete (names only).

A source the mapping maps accounts to must have complete credentials, or be switched off with
``enabled: false`` in sources.yaml: a missing variable is never allowed to turn a source's
metrics into "missing data" that hands their weight to the others. Misspelt variable names
(``INTERCOM_TOKEN``, ``SF_CLIENTID``) are answered with the closest known name.

Settings layer: no HTTP, no values in any message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from health_score.records import Account
from health_score.sources.intercom.settings import BASE_URL_VAR as INTERCOM_BASE_URL
from health_score.sources.registry import CREDENTIAL_VARS, SOURCES, SourceSettings
from health_score.sources.salesforce.settings import (
    CLIENT_CREDENTIALS_VARS,
    JWT_VARS,
    PASSWORD_VARS,
)

__all__ = [
    "KNOWN_VARS",
    "CredentialCheck",
    "check_credentials",
    "closest_known",
    "mapped_sources",
    "missing_credentials",
    "unknown_variables",
]

#: The mapping column that ties an account to each source.
MAPPING_FIELD = {
    "intercom": "intercom_company_id",
    "jira": "jira_project_key",
    "looker": "looker_customer_id",
    "salesforce": "sf_account_id",
}

#: Every variable name the product reads for its sources (credentials and their locations).
KNOWN_VARS: frozenset[str] = frozenset(
    {name for names in CREDENTIAL_VARS.values() for name in names}
    | {INTERCOM_BASE_URL, "SF_INSTANCE_URL", "SF_API_VERSION"}
)

#: Prefixes of names that look like one of our sources' variables.
_PREFIXES = ("INTERCOM_", "JIRA_", "LOOKER_", "SF_", "SALESFORCE_")

#: Salesforce's login flows, in the order they are preferred, with their variables.
SALESFORCE_FLOWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("client credentials", CLIENT_CREDENTIALS_VARS),
    ("JWT bearer", JWT_VARS),
    ("username and password", PASSWORD_VARS),
)


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool((env.get(name) or "").strip())


def missing_credentials(source: str, env: Mapping[str, str]) -> str | None:
    """Why ``source`` cannot log in with ``env`` (the variables to set), or None when it can."""
    if source == "salesforce":
        for _, names in SALESFORCE_FLOWS:
            # The security token may be empty (trusted IP ranges), but must be there.
            if all(_set(env, n) or (n == "SF_SECURITY_TOKEN" and n in env) for n in names):
                return None
        started = [
            (sum(_set(env, n) for n in names), label, names) for label, names in SALESFORCE_FLOWS
        ]
        best = max(started, key=lambda item: item[0])
        if best[0]:
            _, label, names = best
            missing = [n for n in names if not _set(env, n)]
            return f"{' and '.join(missing)} (for the {label} login)"
        return "one login flow: " + "; or ".join(
            f"{' + '.join(names)} ({label})" for label, names in SALESFORCE_FLOWS
        )
    missing = [name for name in CREDENTIAL_VARS[source] if not _set(env, name)]
    return " and ".join(missing) if missing else None


def closest_known(name: str) -> str | None:
    """The known variable name closest to ``name`` (a likely misspelling), or None."""
    matches = difflib.get_close_matches(name, sorted(KNOWN_VARS), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_variables(names: Iterable[str]) -> list[tuple[str, str | None]]:
    """Variable names that look like a source's but are not ones we read, each with the
    closest known name (for ``INTERCOM_TOKEN``: ``INTERCOM_API_TOKEN``)."""
    return [
        (name, closest_known(name))
        for name in sorted(set(names))
        if name.startswith(_PREFIXES) and name not in KNOWN_VARS
    ]


def mapped_sources(accounts: Sequence[Account]) -> dict[str, int]:
    """Source → how many accounts the mapping ties to it."""
    counts = dict.fromkeys(SOURCES, 0)
    for account in accounts:
        for source, column in MAPPING_FIELD.items():
            if getattr(account, column):
                counts[source] += 1
    return counts


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """What the environment allows: problems (the run must not start), the sources switched
    off by config, and hints about misspelt variable names."""

    problems: tuple[str, ...]
    disabled: tuple[str, ...]
    hints: tuple[str, ...]


def check_credentials(
    settings: SourceSettings,
    accounts: Sequence[Account],
    env: Mapping[str, str],
    extra_names: Iterable[str] = (),
) -> CredentialCheck:
    """Every source the mapping maps accounts to has complete credentials or ``enabled: false``.

    ``extra_names`` are further variable names to check for misspellings (a secret's keys).
    """
    hints = tuple(
        f"{name} is not a variable this tool reads" + (f": did you mean {known}?" if known else "")
        for name, known in unknown_variables([*env, *extra_names])
    )
    problems: list[str] = []
    disabled: list[str] = []
    mapped = mapped_sources(accounts)
    for source in SOURCES:
        section = settings[source]
        if not getattr(section, "enabled", True):
            disabled.append(source)
            continue
        if not mapped[source]:
            continue
        missing = missing_credentials(source, env)
        if missing is None:
            continue
        column = MAPPING_FIELD[source]
        problems.append(
            f"{source}: the mapping ties {mapped[source]} account(s) to it ({column}) but its "
            f"credentials are incomplete: set {missing}, or set `{source}: {{enabled: false}}` "
            "in sources.yaml to run without it (its metrics are then unavailable and the run "
            "degraded)"
        )
    return CredentialCheck(tuple(problems), tuple(disabled), hints)
