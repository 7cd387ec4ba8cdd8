"""The Looker stand-in through time: date filter expressions, monthly rows, the saved query and
run_inline_query (against the Looker 4.0 contract), and the history's expected metrics."""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from health_score_sandbox.looker import (
    CLIENT_ID,
    CLIENT_SECRET,
    App,
    Data,
    FilterError,
    Settings,
    date_filter,
    generate,
    generate_history,
)
from health_score_sandbox.portfolio import build_portfolio
from health_score_sandbox.sandbox import load_source_settings
from health_score_sandbox.server import VendorServer
from health_score_sandbox.timeline import build_timeline, slices
from tests.conftest import SHARED, shared_file

LOOKER_SPEC = SHARED / "contracts" / "looker" / "Looker.4.0.oas.json"
INLINE = "/queries/run/{result_format}"
TODAY = date(2026, 11, 1)  # the sandbox date (a Sunday)


def d(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute)


# --------------------------------------------------------------------------------------------
# Date filter expressions (bounds computed by hand; today = 2026-11-01)


@pytest.mark.parametrize(
    ("expression", "spans"),
    [
        ("2026-06-01 to 2026-07-01", [(d(2026, 6, 1), d(2026, 7, 1))]),
        ("2026/06/01 to 2026/07/01", [(d(2026, 6, 1), d(2026, 7, 1))]),
        ("2026-06-15 12:30 to 2026-06-16", [(d(2026, 6, 15, 12, 30), d(2026, 6, 16))]),
        ("2026-06", [(d(2026, 6, 1), d(2026, 7, 1))]),
        ("2026-12", [(d(2026, 12, 1), d(2027, 1, 1))]),
        ("2026-02-28", [(d(2026, 2, 28), d(2026, 3, 1))]),
        ("2025", [(d(2025, 1, 1), d(2026, 1, 1))]),
        ("before 2026-07-01", [(None, d(2026, 7, 1))]),
        ("after 2026-07-01", [(d(2026, 7, 1), None)]),
        ("after 2026-07", [(d(2026, 7, 1), None)]),
        ("1 month ago for 1 month", [(d(2026, 10, 1), d(2026, 11, 1))]),
        ("3 months ago for 2 months", [(d(2026, 8, 1), d(2026, 10, 1))]),
        ("12 months ago for 1 month", [(d(2025, 11, 1), d(2025, 12, 1))]),
        ("last month", [(d(2026, 10, 1), d(2026, 11, 1))]),
        ("this month", [(d(2026, 11, 1), d(2026, 12, 1))]),
        ("next month", [(d(2026, 12, 1), d(2027, 1, 1))]),
        ("2 months ago", [(d(2026, 9, 1), d(2026, 10, 1))]),
        ("2 months", [(d(2026, 10, 1), d(2026, 12, 1))]),
        ("before 2 months ago", [(None, d(2026, 9, 1))]),
        ("last year", [(d(2025, 1, 1), d(2026, 1, 1))]),
        ("last week", [(d(2026, 10, 19), d(2026, 10, 26))]),  # weeks start on Monday
        ("7 days ago for 7 days", [(d(2026, 10, 25), d(2026, 11, 1))]),
        ("yesterday", [(d(2026, 10, 31), d(2026, 11, 1))]),
        ("2026-05-10 for 5 months", [(d(2026, 5, 10), d(2026, 10, 10))]),
        ("2026-01-31 for 1 month", [(d(2026, 1, 31), d(2026, 2, 28))]),
        (
            "2026-06, 2026-08",
            [(d(2026, 6, 1), d(2026, 7, 1)), (d(2026, 8, 1), d(2026, 9, 1))],
        ),
        ("  LAST   Month ", [(d(2026, 10, 1), d(2026, 11, 1))]),
    ],
)
def test_date_filter_expressions_select_the_spans_looker_documents(
    expression: str, spans: list[tuple[datetime | None, datetime | None]]
) -> None:
    assert list(date_filter(expression, TODAY)) == spans


@pytest.mark.parametrize(
    "expression",
    [
        "whenever",
        "3 fortnights ago",
        "2026-13",
        "2026-02-30",
        "this year to second",  # a real Looker form the stand-in does not read
        "before",
        "2026-06,",
    ],
)
def test_an_expression_the_stand_in_cannot_read_is_an_error_not_every_row(
    expression: str,
) -> None:
    with pytest.raises(FilterError):
        date_filter(expression, TODAY)


# --------------------------------------------------------------------------------------------
# Monthly rows


@pytest.fixture(scope="module")
def settings() -> Settings:
    found = load_source_settings(only=("looker",))["looker"]
    assert isinstance(found, Settings)
    return found


@pytest.fixture(scope="module")
def history(settings: Settings) -> tuple[Any, Any, Data]:
    base = build_portfolio(60, seed=3)
    timeline = build_timeline(base, 6)
    months = slices(base, timeline)
    return timeline, months, generate_history(timeline, months, settings)


def test_the_default_data_stamps_every_row_with_the_last_complete_month(
    settings: Settings,
) -> None:
    data = generate(build_portfolio(40, seed=7), settings)
    for look_id, rows in data.looks.items():
        view = data.views[look_id]
        assert {row[f"{view}.activity_month"] for row in rows} == {"2026-10"}
    assert data.expected_at(date(2026, 11, 1)) == data.expected


def test_history_rows_are_monthly_and_inactive_accounts_have_none(
    history: tuple[Any, Any, Data],
) -> None:
    timeline, months, data = history
    usage = data.looks["101"]
    assert {row["account_usage.activity_month"] for row in usage} == {
        "2026-05",
        "2026-06",
        "2026-07",
        "2026-08",
        "2026-09",
        "2026-10",
    }
    for k, piece in enumerate(months):
        month = f"{timeline.month_starts[k]:%Y-%m}"
        customers = {
            row["account_usage.customer_id"]
            for row in usage
            if row["account_usage.activity_month"] == month
        }
        active = {
            p.account.looker_customer_id
            for p in piece.profiles
            if p.has("looker") and p.account.looker_customer_id
        }
        assert customers == active  # one usage row per customer that month, no inactive one
        assert len([r for r in usage if r["account_usage.activity_month"] == month]) == len(active)
    inactive = [
        (p.account_id, k)
        for k, piece in enumerate(months)
        for p in piece.profiles
        if not p.present and p.account.looker_customer_id
    ]
    assert inactive, "a six-month history should have accounts not yet joined or churned"
    for account_id, k in inactive:
        values = data.expected_at(timeline.as_ofs[k])[account_id]
        assert set(values.values()) == {None}
    # Rows stay in customer order (the saved sort), a customer's months oldest first.
    ids = [row["account_usage.customer_id"] for row in usage]
    assert ids == sorted(ids)


def test_expected_at_gives_each_month_its_own_metrics(history: tuple[Any, Any, Data]) -> None:
    timeline, _, data = history
    june, september = data.expected_at(date(2026, 7, 1)), data.expected_at(date(2026, 10, 1))
    assert data.expected == data.expected_at(date(2026, 11, 1))
    differing = [a for a in june if june[a] != september[a]]
    assert len(differing) > 30
    with pytest.raises(ValueError, match="does not end a month"):
        data.expected_at(date(2026, 7, 15))
    assert timeline.as_ofs[-1] == date(2026, 11, 1)


def test_a_history_of_250_accounts_and_24_months_builds_in_a_few_seconds(
    settings: Settings,
) -> None:
    base = build_portfolio(250, seed=7)
    timeline = build_timeline(base, 24)
    months = slices(base, timeline)
    started = time.perf_counter()
    data = generate_history(timeline, months, settings)
    data.expected_at(date(2025, 6, 1))
    assert time.perf_counter() - started < 3.0
    assert len(data.looks["101"]) > 24 * 150


# --------------------------------------------------------------------------------------------
# The saved query and run_inline_query on the wire


@pytest.fixture(scope="module")
def contract() -> Any:
    shared_file(LOOKER_SPEC, "the Looker 4.0 OpenAPI description")
    from openapi_core import Config, OpenAPI

    spec = json.loads(LOOKER_SPEC.read_text(encoding="utf-8"))
    spec["servers"] = [
        {"url": "http://127.0.0.1:{port}/api/4.0", "variables": {"port": {"default": "80"}}}
    ]
    # As for run_look: a json result is an array of row objects (the spec says `string`).
    ok = spec["paths"][INLINE]["post"]["responses"]["200"]["content"]["application/json"]
    ok["schema"] = {"type": "array", "items": {"type": "object"}}
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def validate(contract: Any, response: requests.Response) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    request = RequestsOpenAPIRequest(response.request)
    contract.validate_request(request)
    contract.validate_response(request, RequestsOpenAPIResponse(response))


def login(http: requests.Session, server: VendorServer) -> dict[str, str]:
    answer = http.post(
        f"{server.url}/api/4.0/login",
        data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    return {"Authorization": f"token {answer.json()['access_token']}"}


def test_the_saved_query_filters_the_last_complete_month_and_runs_as_the_look_does(
    contract: Any, history: tuple[Any, Any, Data], settings: Settings
) -> None:
    _, _, data = history
    with VendorServer(App(data, settings)) as server, requests.Session() as http:
        auth = login(http, server)
        look = http.get(f"{server.url}/api/4.0/looks/101", headers=auth)
        only_query = http.get(
            f"{server.url}/api/4.0/looks/101", params={"fields": "query"}, headers=auth
        )
        ran = http.get(
            f"{server.url}/api/4.0/looks/101/run/json", params={"limit": -1}, headers=auth
        )
        query = look.json()["query"]
        inline = http.post(
            f"{server.url}/api/4.0/queries/run/json",
            params={"limit": -1},
            json={k: query[k] for k in ("model", "view", "fields", "filters", "sorts", "limit")},
            headers=auth,
        )
    validate(contract, look)
    validate(contract, inline)
    assert query["model"] == "customer_health" and query["view"] == "account_usage"
    assert query["filters"] == {"account_usage.activity_month": "1 month ago for 1 month"}
    assert query["sorts"] == ["account_usage.customer_id"]
    assert only_query.json() == {"query": query}
    october = [r for r in data.looks["101"] if r["account_usage.activity_month"] == "2026-10"]
    assert ran.json() == october
    assert inline.json() == october


def test_an_inline_query_with_the_filter_replaced_answers_for_that_month(
    history: tuple[Any, Any, Data], settings: Settings
) -> None:
    _, _, data = history
    app = App(data, settings)
    body = {
        "model": "customer_health",
        "view": "integrations",
        "fields": ["integrations.customer_id", "integrations.active_count"],
        "filters": {"integrations.activity_month": "2026-06-01 to 2026-07-01"},
        "sorts": ["integrations.active_count desc"],
    }
    with VendorServer(app) as server, requests.Session() as http:
        auth = login(http, server)
        june = http.post(
            f"{server.url}/api/4.0/queries/run/json", params={"limit": -1}, json=body, headers=auth
        ).json()
        bad = http.post(
            f"{server.url}/api/4.0/queries/run/json",
            json=body | {"filters": {"integrations.activity_month": "sometime in June"}},
            headers=auth,
        )
        other_field = http.post(
            f"{server.url}/api/4.0/queries/run/json",
            json=body | {"filters": {"integrations.integration_type": "slack"}},
            headers=auth,
        )
    expected = [
        {k: r[k] for k in body["fields"]}
        for r in data.looks["103"]
        if r["integrations.activity_month"] == "2026-06"
    ]

    def order(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return sorted((r["integrations.customer_id"], r["integrations.active_count"]) for r in rows)

    assert order(june) == order(expected) and expected
    counts = [r["integrations.active_count"] for r in june]
    assert counts == sorted(counts, reverse=True)
    assert bad.status_code == 400 and "sometime in June" in bad.json()["message"]
    assert set(bad.json()) == {"message", "documentation_url"}
    assert other_field.status_code == 400
    assert [q["filters"] for q in app.queries] == [
        {"integrations.activity_month": "2026-06-01 to 2026-07-01"},
        {"integrations.activity_month": "sometime in June"},
        {"integrations.integration_type": "slack"},
    ]


def test_the_looker_sdk_runs_a_saved_query_with_its_date_filter_replaced(
    history: tuple[Any, Any, Data], settings: Settings, tmp_path: Path
) -> None:
    looker_sdk = pytest.importorskip("looker_sdk")
    from looker_sdk.sdk.api40 import models

    _, _, data = history
    app = App(data, settings)
    with VendorServer(app) as server:
        ini = tmp_path / "looker.ini"
        ini.write_text(
            f"[Looker]\nbase_url={server.url}\nclient_id={CLIENT_ID}\n"
            f"client_secret={CLIENT_SECRET}\nverify_ssl=false\n",
            encoding="utf-8",
        )
        sdk = looker_sdk.init40(config_file=str(ini))
        saved = sdk.look("102").query
        assert saved is not None and saved.filters is not None
        filters = {**saved.filters, "platform_value.activity_month": "2026-08"}
        body = models.WriteQuery(
            model=saved.model,
            view=saved.view,
            fields=saved.fields,
            filters=filters,
            sorts=saved.sorts,
        )
        rows = json.loads(sdk.run_inline_query("json", body, limit=-1))
    assert rows == [r for r in data.looks["102"] if r["platform_value.activity_month"] == "2026-08"]
    assert app.queries[-1]["filters"] == {"platform_value.activity_month": "2026-08"}
