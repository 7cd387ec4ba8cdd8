"""Looker metrics the original organisation used, as configuration (issue 17, item 3): a ratio
across two Looks, a sum of several fields, presence of a non-numeric field and a defined change
from a previous value of 0 — run against the sandbox's Looker on loopback, hand-made rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import requests

from health_score.config import ConfigProblem
from health_score.records import Account
from health_score.sources.http import SourceError
from health_score.sources.looker import Settings
from health_score.sources.looker.extractor import LookerExtractor, from_env
from health_score.sources.registry import parse_sources
from health_score_sandbox.looker import App, Data, environment
from health_score_sandbox.server import VendorServer

VENDOR = "looker"

#: Look 201: the sandbox's account_usage view, one row per customer.
#: Look 202: its integrations view, one row per customer and integration (a text type, a count).
SETTINGS: dict[str, Any] = {
    "looks": [
        {
            "id": "201",
            "customer_id_field": "account_usage.customer_id",
            "metrics": {
                "sessions_60d": {
                    "transform": "sum",
                    "fields": ["account_usage.sessions_30d", "account_usage.sessions_prior_30d"],
                },
                "users_change_pct": {
                    "transform": "change_pct",
                    "current": "account_usage.active_users_30d",
                    "previous": "account_usage.active_users_prior_30d",
                    "when_previous_zero": 100,
                },
                "users_change_raw_pct": {
                    "transform": "change_pct",
                    "current": "account_usage.active_users_30d",
                    "previous": "account_usage.active_users_prior_30d",
                },
            },
        },
        {
            "id": "202",
            "customer_id_field": "integrations.customer_id",
            "metrics": {
                "has_integration": {
                    "transform": "presence",
                    "field": "integrations.integration_type",
                    "counts": "any_value",
                },
                "integration_positive": {
                    "transform": "presence",
                    "field": "integrations.integration_type",
                },
            },
        },
    ],
    "across_looks": {
        "integrations_per_seat": {
            "transform": "ratio",
            "numerator": {"look": "202", "field": "integrations.active_count"},
            "denominator": {"look": 201, "field": "account_usage.seats_licensed"},
        },
        "users_per_integration_pct": {
            "transform": "percent",
            "numerator": {"look": "201", "field": "account_usage.active_users_30d"},
            "denominator": {"look": "202", "field": "integrations.active_count"},
        },
    },
}
VIEWS = {"201": "account_usage", "202": "integrations"}


def _usage(customer: str, seats: int, users: int, before: int, sessions: Any, prior: Any) -> Any:
    return {
        "account_usage.customer_id": customer,
        "account_usage.seats_licensed": seats,
        "account_usage.active_users_30d": users,
        "account_usage.active_users_prior_30d": before,
        "account_usage.sessions_30d": sessions,
        "account_usage.sessions_prior_30d": prior,
    }


def _integration(customer: str, kind: Any, count: Any) -> dict[str, Any]:
    return {
        "integrations.customer_id": customer,
        "integrations.integration_type": kind,
        "integrations.active_count": count,
    }


LOOK_201 = [
    _usage("C1", 40, 30, 20, 300, 200),
    _usage("C2", 10, 7, 0, 50, None),  # users rose from 0; a null cell adds nothing
    _usage("C3", 0, 0, 0, 0, 0),  # 0 → 0; no seats
    _usage("C4", 20, 0, 0, None, None),  # no sessions at all; no integrations
]
LOOK_202 = [
    _integration("C1", "Salesforce", 2),
    _integration("C1", "Slack", 2),
    _integration("C2", "", 0),  # blank text is no value
    _integration("C3", "Jira", 1),
    _integration("C5", "Zapier", 3),  # Look 202 only
]


def _run(
    session: requests.Session, settings: Settings, look_202: list[dict[str, Any]], *ids: str
) -> Any:
    data = Data(looks={"201": LOOK_201, "202": look_202}, expected={}, views=VIEWS)
    accounts = [Account(f"acct-{c}", f"Customer {c}", "paid", looker_customer_id=c) for c in ids]
    with VendorServer(App(data, settings)) as server:
        found = from_env(settings, environment(server.url, ""), session=session)
        assert isinstance(found, LookerExtractor)
        return found, found.extract(accounts)


def test_configured_forms_give_the_hand_computed_values(session: requests.Session) -> None:
    settings = Settings.model_validate(SETTINGS)
    looker, result = _run(session, settings, LOOK_202, "C1", "C2", "C3", "C4", "C5", "C6")
    got = result.metrics
    none = None
    assert got["acct-C1"] == {
        "sessions_60d": Decimal(500),  # 300 + 200
        "users_change_pct": Decimal(50),  # (30 − 20) / 20 × 100
        "users_change_raw_pct": Decimal(50),
        "has_integration": Decimal(1),
        "integration_positive": Decimal(0),  # "Salesforce" is no positive number
        "integrations_per_seat": Decimal("0.1"),  # (2 + 2) / 40
        "users_per_integration_pct": Decimal(750),  # 30 / 4 × 100
    }
    assert got["acct-C2"] == {
        "sessions_60d": Decimal(50),  # 50 + null
        "users_change_pct": Decimal(100),  # 0 → 7: the configured +100
        "users_change_raw_pct": none,  # undefined without when_previous_zero
        "has_integration": Decimal(0),  # its only row's type is blank
        "integration_positive": Decimal(0),
        "integrations_per_seat": Decimal(0),  # 0 / 10
        "users_per_integration_pct": none,  # 7 / 0
    }
    assert got["acct-C3"] == {
        "sessions_60d": Decimal(0),
        "users_change_pct": Decimal(0),  # 0 → 0: no change
        "users_change_raw_pct": none,
        "has_integration": Decimal(1),
        "integration_positive": Decimal(0),
        "integrations_per_seat": none,  # 1 / 0 seats
        "users_per_integration_pct": Decimal(0),  # 0 / 1
    }
    assert got["acct-C4"] == {
        "sessions_60d": none,  # a row, but no field of it holds a number
        "users_change_pct": Decimal(0),
        "users_change_raw_pct": none,
        "has_integration": Decimal(0),  # known to Looker, no rows in Look 202
        "integration_positive": Decimal(0),
        "integrations_per_seat": Decimal(0),  # 0 integrations / 20 seats
        "users_per_integration_pct": none,  # 0 / 0
    }
    # C5 is in Look 202 only: a ratio's side in Look 201 is 0 for it.
    assert got["acct-C5"]["users_per_integration_pct"] == Decimal(0)  # 0 users / 3
    assert got["acct-C5"]["integrations_per_seat"] is None  # 3 / 0 seats
    assert got["acct-C5"]["has_integration"] == Decimal(1)
    # C6 is unknown to Looker: nothing, not zeros.
    assert set(got["acct-C6"].values()) == {None}
    assert looker.provides == set(got["acct-C1"])
    assert result.incomplete == () and not result.degraded


def test_a_truncated_look_makes_its_across_look_metrics_unavailable(
    session: requests.Session,
) -> None:
    raw = {**SETTINGS, "looks": [SETTINGS["looks"][0], {**SETTINGS["looks"][1], "limit": 3}]}
    rows = LOOK_202[:4]  # C1, C1, C2, C3 in customer order; limit 3 cuts after C2
    _, result = _run(session, Settings.model_validate(raw), rows, "C1", "C2", "C3")
    across = {"integrations_per_seat", "users_per_integration_pct"}
    assert result.metrics["acct-C1"]["integrations_per_seat"] == Decimal("0.1")
    assert "acct-C1" not in result.unavailable  # before the cut: whole
    for account in ("acct-C2", "acct-C3"):  # at and beyond the cut
        assert across <= result.unavailable[account]
        assert {result.metrics[account][m] for m in across} == {None}
    assert result.degraded


def test_a_field_an_across_look_metric_needs_is_reported_with_the_look(
    session: requests.Session,
) -> None:
    rows = [{k: v for k, v in row.items() if k != "integrations.active_count"} for row in LOOK_202]
    with pytest.raises(SourceError, match=r"Look 202 has no field integrations\.active_count"):
        _run(session, Settings.model_validate(SETTINGS), rows, "C1")


def _problems(section: dict[str, Any]) -> list[str]:
    found: list[ConfigProblem] = []
    parse_sources(
        {"looker": section},
        lambda where, what: found.append(ConfigProblem("sources.yaml", where, what)),
        ("looker",),
    )
    return [str(p) for p in found]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {
                "across_looks": {
                    "x": {
                        "transform": "ratio",
                        "numerator": {"look": "999", "field": "a.b"},
                        "denominator": {"look": "201", "field": "accounts.seats"},
                    }
                }
            },
            "Look 999 is not in looker.looks",
        ),
        (
            {"across_looks": {"sessions_60d": SETTINGS["across_looks"]["integrations_per_seat"]}},
            "a Look already yields metric sessions_60d",
        ),
        (
            {
                "across_looks": {
                    "x": {
                        "transform": "ratio",
                        "numerator": {"look": "201", "field": "not a field"},
                        "denominator": {"look": "201", "field": "accounts.seats"},
                    }
                }
            },
            "numerator.field",
        ),
    ],
)
def test_bad_across_look_settings_are_reported(change: dict[str, Any], fragment: str) -> None:
    problems = _problems({**SETTINGS, **change})
    assert problems and any(fragment in p for p in problems), problems
