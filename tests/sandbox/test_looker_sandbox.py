"""The Looker stand-in: generated Looks, its wire format against the Looker 4.0 contract, faults."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import requests

from health_score_sandbox import looker as sandbox_looker
from health_score_sandbox.looker import CLIENT_ID, CLIENT_SECRET, App, Data, Settings, generate
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.server import Faults, Knobs, VendorServer
from tests.conftest import SHARED, shared_file

CONTRACTS = SHARED / "contracts"
LOOKER_SPEC = CONTRACTS / "looker" / "Looker.4.0.oas.json"
RUN_LOOK = "/looks/{look_id}/run/{result_format}"

VENDOR = "looker"  # for the shared stand-in fixtures in conftest.py


def serve(data: Data, settings: Settings, **kwargs: Any) -> VendorServer:
    return VendorServer(App(data, settings), **kwargs)


def login(http: requests.Session, server: VendorServer) -> str:
    answer = http.post(
        f"{server.url}/api/4.0/login",
        data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def run_look(
    http: requests.Session, server: VendorServer, token: str, look_id: str = "101", **params: Any
) -> requests.Response:
    return http.get(
        f"{server.url}/api/4.0/looks/{look_id}/run/json",
        params=params,
        headers={"Authorization": f"token {token}"},
    )


# --------------------------------------------------------------------------------------------
# Generated data


def test_the_same_seed_gives_byte_identical_looks_and_expectations(
    settings: Settings, data: Data
) -> None:
    again = generate(build_portfolio(250, seed=7), settings)
    assert json.dumps(again.looks, sort_keys=True) == json.dumps(data.looks, sort_keys=True)
    assert again.expected == data.expected
    other = generate(build_portfolio(250, seed=8), settings)
    assert json.dumps(other.looks, sort_keys=True) != json.dumps(data.looks, sort_keys=True)


def test_accounts_absent_from_looker_have_no_rows_and_no_metrics(
    portfolio: Portfolio, data: Data
) -> None:
    customers_with_rows = {
        row[f"{data.views[look_id]}.customer_id"]
        for look_id, rows in data.looks.items()
        for row in rows
    }
    absent = [p for p in portfolio.profiles if not p.has("looker")]
    assert absent, "the portfolio should leave some accounts out of Looker"
    for profile in absent:
        assert profile.account.looker_customer_id not in customers_with_rows
        assert set(data.expected[profile.account_id].values()) == {None}
    present = {p.account.looker_customer_id for p in portfolio.profiles if p.has("looker")}
    assert customers_with_rows == present


def test_every_known_customer_has_exactly_one_usage_row_and_one_value_row(
    portfolio: Portfolio, data: Data
) -> None:
    present = sum(1 for p in portfolio.profiles if p.has("looker"))
    for look_id in ("101", "102"):
        ids = [row[f"{data.views[look_id]}.customer_id"] for row in data.looks[look_id]]
        assert len(ids) == len(set(ids)) == present


def test_expected_metrics_land_near_each_profiles_targets(portfolio: Portfolio, data: Data) -> None:
    close = total = 0
    for profile in portfolio.profiles:
        expected = data.expected[profile.account_id]
        for metric in ("active_user_pct", "feature_breadth_pct", "automated_resolution_pct"):
            value = expected[metric]
            if value is None:
                continue
            target = min(max(profile.targets[metric], 0.0), 100.0)
            total += 1
            close += abs(float(value) - target) <= 15  # few modules make coarse percentages
    assert total > 600
    assert close / total > 0.95


def test_expected_metrics_include_zero_integrations_and_inactive_automation(data: Data) -> None:
    integrations = [m["active_integrations"] for m in data.expected.values()]
    automation = [m["automation_active"] for m in data.expected.values()]
    assert 0 in integrations and max(v for v in integrations if v is not None) >= 4
    assert {0, 1, None} <= set(automation)


def test_minimum_requests_is_one_login_plus_one_run_per_look(
    data: Data, settings: Settings
) -> None:
    # The default Looks name their date_field: per Look its saved query, then the inline run.
    assert all(look.date_field for look in settings.looks)
    assert data.minimum_requests(settings) == 1 + 4 * 2
    # Run as saved (no date_field): one run per Look.
    saved = dataclasses.replace(
        settings,
        looks=tuple(dataclasses.replace(look, date_field=None) for look in settings.looks),
    )
    assert data.minimum_requests(saved) == 1 + 4
    assert data.minimum_requests(Settings()) == 0


def test_looks_are_served_under_the_ids_configured_in_sources_yaml(
    portfolio: Portfolio, settings: Settings
) -> None:
    integrations = dataclasses.replace(settings.looks[2], id="integrations_v2")
    renumbered = generate(portfolio, dataclasses.replace(settings, looks=(integrations,)))
    assert list(renumbered.looks) == ["integrations_v2"]
    assert set(next(iter(renumbered.expected.values()))) == {"active_integrations"}


# --------------------------------------------------------------------------------------------
# Wire format against the Looker API 4.0 contract


@pytest.fixture(scope="module")
def contract() -> Any:
    """The Looker 4.0 description, loaded once for this module (it is ~2 MB)."""
    shared_file(LOOKER_SPEC, "the Looker 4.0 OpenAPI description")
    from openapi_core import Config, OpenAPI

    spec = json.loads(LOOKER_SPEC.read_text(encoding="utf-8"))
    # The stand-in listens on a free loopback port, not the spec's https://localhost:20000.
    spec["servers"] = [
        {"url": "http://127.0.0.1:{port}/api/4.0", "variables": {"port": {"default": "80"}}}
    ]
    # run_look declares every 200 body as `string` because the format varies with
    # result_format; for `json` Looker sends an array of row objects keyed "view.field"
    # (contracts/README.md), so that one media type is checked as such.
    ok = spec["paths"][RUN_LOOK]["get"]["responses"]["200"]["content"]["application/json"]
    ok["schema"] = {"type": "array", "items": {"type": "object"}}
    # The published file fails openapi-spec-validator on an unrelated endpoint
    # (/query_tasks/multi_results uses style: simple for a query parameter), so the spec check is
    # skipped; requests and responses are still validated against it.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def validate(contract: Any, response: requests.Response, *, request_valid: bool = True) -> None:
    """The response (and, unless it was deliberately invalid, the request) against the spec."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    request = RequestsOpenAPIRequest(response.request)
    if request_valid:
        contract.validate_request(request)
    contract.validate_response(request, RequestsOpenAPIResponse(response))


def test_login_exchange_matches_the_looker_contract(
    contract: Any, data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings) as server:
        answer = session.post(
            f"{server.url}/api/4.0/login",
            data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )
    assert answer.status_code == 200
    validate(contract, answer)
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0


def test_run_look_exchange_matches_the_looker_contract(
    contract: Any, data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings) as server:
        answer = run_look(session, server, login(session, server), "103", limit=-1)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    validate(contract, answer)
    rows = answer.json()
    assert rows == data.looks["103"]
    assert all(key.startswith("integrations.") for row in rows for key in row)


@pytest.mark.parametrize(
    ("look_id", "params", "status"),
    [("999", {}, 404), ("101", {"limit": "many"}, 400)],
    ids=["unknown Look", "non-numeric limit"],
)
def test_run_look_errors_match_the_looker_contract(
    contract: Any,
    data: Data,
    settings: Settings,
    session: requests.Session,
    look_id: str,
    params: dict[str, str],
    status: int,
) -> None:
    with serve(data, settings) as server:
        answer = run_look(session, server, login(session, server), look_id, **params)
    assert answer.status_code == status
    validate(contract, answer, request_valid=not params)
    assert set(answer.json()) == {"message", "documentation_url"}


def test_wrong_credentials_get_lookers_404_not_found_from_login(
    contract: Any, data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings) as server:
        answer = session.post(
            f"{server.url}/api/4.0/login",
            data={"client_id": CLIENT_ID, "client_secret": "wrong"},
        )
    assert answer.status_code == 404
    validate(contract, answer)
    assert answer.json()["message"] == "Not found"


def test_rate_limited_requests_get_429_as_the_contract_says(
    contract: Any, data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings, knobs=Knobs(rate_limit=1, rate_window_seconds=60)) as server:
        token = login(session, server)
        answer = run_look(session, server, token, limit=-1)
    assert answer.status_code == 429
    assert int(answer.headers["Retry-After"]) >= 1
    validate(contract, answer)


def test_requests_without_a_valid_token_get_401_with_lookers_error_body(
    data: Data, settings: Settings, session: requests.Session
) -> None:
    shared_file(LOOKER_SPEC, "the Looker 4.0 OpenAPI description")
    from openapi_schema_validator import OAS30Validator

    # run_look lists no 401 response, though Looker sends one; check the body against the
    # spec's Error schema, the shape every Looker error has.
    spec = json.loads(LOOKER_SPEC.read_text(encoding="utf-8"))
    error_schema = OAS30Validator(spec["components"]["schemas"]["Error"])
    with serve(data, settings) as server:
        missing = session.get(f"{server.url}/api/4.0/looks/101/run/json")
        unknown = run_look(session, server, "not-a-token")
    for answer in (missing, unknown):
        assert answer.status_code == 401
        error_schema.validate(answer.json())
        assert answer.json()["message"] == "Requires authentication."


# --------------------------------------------------------------------------------------------
# Behaviour


@pytest.mark.parametrize("scheme", ["token", "Bearer", "bearer"])
def test_both_token_and_bearer_authorization_styles_are_accepted(
    data: Data, settings: Settings, session: requests.Session, scheme: str
) -> None:
    with serve(data, settings) as server:
        token = login(session, server)
        answer = session.get(
            f"{server.url}/api/4.0/looks/102/run/json",
            params={"limit": -1},
            headers={"Authorization": f"{scheme} {token}"},
        )
    assert answer.status_code == 200
    assert len(answer.json()) == len(data.looks["102"])


def test_a_look_bigger_than_5000_rows_is_capped_unless_limit_is_minus_one(
    settings: Settings, session: requests.Session
) -> None:
    big = generate(build_portfolio(2000, seed=7), settings)
    assert len(big.looks["103"]) > 5000
    with serve(big, settings) as server:
        token = login(session, server)
        default = run_look(session, server, token, "103").json()
        everything = run_look(session, server, token, "103", limit=-1).json()
        some = run_look(session, server, token, "103", limit=10).json()
    assert len(default) == 5000
    assert default == big.looks["103"][:5000]
    assert everything == big.looks["103"]
    assert some == big.looks["103"][:10]


def test_the_limit_fault_caps_every_look_run_at_n_rows_in_customer_order(
    data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings, faults=Faults(row_limit=7)) as server:
        token = login(session, server)
        everything = run_look(session, server, token, "103", limit=-1).json()
        fewer = run_look(session, server, token, "103", limit=3).json()
    assert everything == data.looks["103"][:7]
    assert fewer == data.looks["103"][:3]
    customers = [row["integrations.customer_id"] for row in data.looks["103"]]
    assert customers == sorted(customers)  # each Look is saved sorted by its customer id


def test_the_limit_fault_is_a_looker_option_of_sandbox_serve() -> None:
    from health_score_sandbox.__main__ import parse_fault

    faults: dict[str, Faults] = {}
    parse_fault("looker:limit=100", faults)
    assert faults["looker"].row_limit == 100
    for bad in ("looker:limit", "looker:limit=0", "looker:limit=x", "jira:limit=5"):
        with pytest.raises(Exception, match="--fault"):
            parse_fault(bad, {})


def test_tokens_expire_after_the_configured_number_of_calls(
    data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings, faults=Faults(token_expiry_after=2)) as server:
        token = login(session, server)
        statuses = [run_look(session, server, token, limit=1).status_code for _ in range(3)]
        fresh = run_look(session, server, login(session, server), limit=1).status_code
    assert statuses == [200, 200, 401]
    assert fresh == 200


def test_rejected_auth_refuses_login_and_existing_tokens(
    data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings) as server:
        token = login(session, server)
        server.faults.auth_rejected = True
        refused_login = session.post(
            f"{server.url}/api/4.0/login",
            data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )
        refused_run = run_look(session, server, token)
    assert refused_login.status_code == 404
    assert refused_run.status_code == 401


def test_malformed_fault_cuts_the_json_body_short(
    data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings) as server:
        token = login(session, server)
        server.faults.malformed = True
        answer = run_look(session, server, token, limit=-1)
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()


def test_only_json_results_are_served(
    data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings) as server:
        answer = session.get(
            f"{server.url}/api/4.0/looks/101/run/csv",
            headers={"Authorization": f"token {login(session, server)}"},
        )
    assert answer.status_code == 400
    assert "result_format" in answer.json()["message"]


def test_requests_are_counted_per_look(
    data: Data, settings: Settings, session: requests.Session
) -> None:
    with serve(data, settings) as server:
        token = login(session, server)
        for look_id in ("101", "101", "104"):
            run_look(session, server, token, look_id, limit=-1)
        stats = session.get(f"{server.url}/__sandbox/stats").json()
    assert stats["requests"] == {
        "POST /api/4.0/login": 1,
        "GET /api/4.0/looks/101/run/json": 2,
        "GET /api/4.0/looks/104/run/json": 1,
    }


def test_environment_points_the_pipeline_at_the_stand_in() -> None:
    env = sandbox_looker.environment("http://127.0.0.1:1234", "/tmp/ca.pem")
    assert env == {
        "LOOKER_BASE_URL": "http://127.0.0.1:1234",
        "LOOKER_CLIENT_ID": CLIENT_ID,
        "LOOKER_CLIENT_SECRET": CLIENT_SECRET,
    }
