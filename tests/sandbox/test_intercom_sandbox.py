"""The Intercom stand-in speaks Intercom 2.16: contract, paging, limits, faults, determinism."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_schema_validator import OAS30Validator

from health_score_sandbox import intercom
from health_score_sandbox.intercom import METRICS, Settings
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.sandbox import load_source_settings
from health_score_sandbox.server import Faults, Knobs, VendorServer
from tests.conftest import SHARED, shared_file

CONTRACTS = SHARED / "contracts"
SPEC = CONTRACTS / "intercom" / "api.intercom.io.2.16.yaml"
HEADERS = {"Authorization": f"Bearer {intercom.TOKEN}", "Intercom-Version": "2.16"}
EVERYTHING = {"field": "created_at", "operator": ">", "value": 0}

VENDOR = "intercom"  # for the shared stand-in fixtures in conftest.py


@pytest.fixture(scope="module")
def contract() -> tuple[OpenAPI, dict[str, Any]]:
    """The 2.16 description, with a loopback server added so requests to the stand-in match.

    The file itself fails openapi-spec-validator (an unresolved path parameter elsewhere), so
    spec validation is off; request and response validation are unaffected.
    """
    shared_file(SPEC)
    with SPEC.open(encoding="utf-8") as handle:
        # The C loader is safe too and reads the 1.3 MB file about five times faster.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    document["servers"] = [
        {"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "80"}}},
        *document["servers"],
    ]
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None)), document


def assert_valid(contract: tuple[OpenAPI, dict[str, Any]], response: requests.Response) -> None:
    api, _ = contract
    request = RequestsOpenAPIRequest(response.request)
    api.validate_request(request)
    api.validate_response(request, RequestsOpenAPIResponse(response))


def assert_error_list(contract: tuple[OpenAPI, dict[str, Any]], body: Any, code: str) -> None:
    """Error bodies against the spec's ``error`` schema (search does not list its 4xx)."""
    OAS30Validator(contract[1]["components"]["schemas"]["error"]).validate(body)
    assert body["type"] == "error.list"
    assert [e["code"] for e in body["errors"]] == [code]


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    return build_portfolio(60, seed=11)


@pytest.fixture
def server(data: intercom.Data, settings: Settings) -> Iterator[VendorServer]:
    with VendorServer(intercom.App(data, settings)) as running:
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def search(
    http: requests.Session,
    server: VendorServer,
    query: Any,
    pagination: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/conversations/search",
) -> requests.Response:
    body: dict[str, Any] = {"query": query}
    if pagination is not None:
        body["pagination"] = pagination
    return http.post(server.url + path, json=body, headers=HEADERS if headers is None else headers)


def walk(
    http: requests.Session, server: VendorServer, query: Any, per_page: int
) -> Iterator[requests.Response]:
    cursor = None
    while True:
        pagination: dict[str, Any] = {"per_page": per_page}
        if cursor:
            pagination["starting_after"] = cursor
        response = search(http, server, query, pagination)
        assert response.status_code == 200, response.text
        yield response
        cursor = (response.json()["pages"].get("next") or {}).get("starting_after")
        if not cursor:
            return


# -- contract -----------------------------------------------------------------------------------


def test_every_conversation_search_page_validates_against_the_2_16_contract(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    pages = list(walk(http, server, EVERYTHING, 150))
    assert len(pages) > 1
    for response in pages:
        assert_valid(contract, response)


def test_contacts_search_and_company_scroll_validate_against_the_contract(
    contract: tuple[OpenAPI, dict[str, Any]],
    http: requests.Session,
    server: VendorServer,
    data: intercom.Data,
) -> None:
    ids = [c.id for c in data.contacts[:20]]
    contacts = search(
        http, server, {"field": "id", "operator": "IN", "value": ids}, path="/contacts/search"
    )
    assert_valid(contract, contacts)
    assert sorted(c["id"] for c in contacts.json()["data"]) == sorted(ids)
    scroll = http.get(server.url + "/companies/scroll", headers=HEADERS)
    while True:
        assert_valid(contract, scroll)
        if not scroll.json()["data"]:
            break
        param = scroll.json()["scroll_param"]
        scroll = http.get(
            server.url + "/companies/scroll", params={"scroll_param": param}, headers=HEADERS
        )


def test_a_company_by_id_validates_against_the_contract_and_404s_when_unknown(
    contract: tuple[OpenAPI, dict[str, Any]],
    http: requests.Session,
    server: VendorServer,
    data: intercom.Data,
) -> None:
    company = data.companies[0]
    found = http.get(f"{server.url}/companies/{company.id}", headers=HEADERS)
    assert_valid(contract, found)
    assert found.json()["company_id"] == company.company_id
    missing = http.get(f"{server.url}/companies/0123456789abcdef01234567", headers=HEADERS)
    assert missing.status_code == 404
    assert_valid(contract, missing)
    assert missing.json()["errors"][0]["code"] == "company_not_found"
    assert server.stats["GET /companies/{id}"] == 2


def test_a_rejected_token_gets_intercoms_401_error_list(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    headers = {**HEADERS, "Authorization": "Bearer not-the-token"}
    response = search(http, server, EVERYTHING, headers=headers, path="/contacts/search")
    assert response.status_code == 401
    assert_valid(contract, response)
    error = {"code": "unauthorized", "message": "Access Token Invalid"}
    assert response.json()["errors"] == [error]
    missing = search(http, server, EVERYTHING, headers={"Intercom-Version": "2.16"})
    assert missing.status_code == 401
    assert_error_list(contract, missing.json(), "unauthorized")


def test_the_auth_rejected_fault_refuses_even_the_right_token(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    server.faults.auth_rejected = True
    response = search(http, server, EVERYTHING)
    assert response.status_code == 401
    assert_error_list(contract, response.json(), "unauthorized")


def test_the_token_stops_working_after_the_configured_number_of_calls(
    http: requests.Session, server: VendorServer
) -> None:
    server.faults.token_expiry_after = 2
    statuses = [search(http, server, EVERYTHING).status_code for _ in range(3)]
    assert statuses == [200, 200, 401]


# -- version header -----------------------------------------------------------------------------


def test_a_missing_intercom_version_header_gets_the_apps_default_version(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    """As Intercom does: no header, the version set for the app (2.14 here: no ``company``)."""
    headers = {"Authorization": HEADERS["Authorization"]}
    response = search(http, server, EVERYTHING, {"per_page": 150}, headers=headers)
    assert response.status_code == 200, response.text
    assert intercom.APP_VERSION == "2.14"
    assert not any("company" in c for c in response.json()["conversations"])
    pinned = search(http, server, EVERYTHING, {"per_page": 150}).json()
    assert [c["id"] for c in response.json()["conversations"]] == [
        c["id"] for c in pinned["conversations"]
    ]


def test_an_unknown_intercom_version_is_an_error(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    response = search(http, server, EVERYTHING, headers={**HEADERS, "Intercom-Version": "9.9"})
    assert response.status_code == 400
    assert_error_list(contract, response.json(), "intercom_version_invalid")


def test_conversations_carry_company_only_from_version_2_15(
    http: requests.Session, server: VendorServer
) -> None:
    def companies(version: str) -> int:
        headers = {**HEADERS, "Intercom-Version": version}
        body = search(http, server, EVERYTHING, {"per_page": 150}, headers=headers).json()
        return sum(1 for c in body["conversations"] if "company" in c)

    assert companies("2.14") == 0
    assert companies("2.15") > 100


# -- paging -------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_page", [150, 37])
def test_pagination_walks_every_conversation_exactly_once(
    http: requests.Session, server: VendorServer, data: intercom.Data, per_page: int
) -> None:
    pages = list(walk(http, server, EVERYTHING, per_page))
    seen = [c["id"] for page in pages for c in page.json()["conversations"]]
    assert len(seen) == len(set(seen)) == len(data.conversations)
    assert set(seen) == {c.id for c in data.conversations}
    assert all(p.json()["total_count"] == len(data.conversations) for p in pages)
    assert len(pages) == -(-len(data.conversations) // per_page)


def test_a_cursor_is_stable_and_gives_the_same_page_twice(
    http: requests.Session, server: VendorServer
) -> None:
    first = search(http, server, EVERYTHING, {"per_page": 50}).json()
    cursor = first["pages"]["next"]["starting_after"]
    again = search(http, server, EVERYTHING, {"per_page": 50}).json()
    assert again["pages"]["next"]["starting_after"] == cursor
    one = search(http, server, EVERYTHING, {"per_page": 50, "starting_after": cursor})
    two = search(http, server, EVERYTHING, {"per_page": 50, "starting_after": cursor})
    assert one.content == two.content
    assert one.json()["pages"]["page"] == 2


def test_a_cursor_from_another_search_is_refused(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    cursor = search(http, server, EVERYTHING, {"per_page": 5}).json()["pages"]["next"]
    other = {"field": "state", "operator": "=", "value": "closed"}
    response = search(http, server, other, {"per_page": 5, **cursor})
    assert response.status_code == 400
    assert_error_list(contract, response.json(), "parameter_invalid")
    garbage = search(http, server, EVERYTHING, {"per_page": 5, "starting_after": "%%%"})
    assert garbage.status_code == 400


def test_per_page_above_150_is_refused(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    response = search(http, server, EVERYTHING, {"per_page": 151})
    assert response.status_code == 400
    assert_error_list(contract, response.json(), "parameter_invalid")


# -- the query language -------------------------------------------------------------------------


def test_more_than_15_filters_in_one_group_are_refused_with_intercoms_error(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    filters = [{"field": "state", "operator": "!=", "value": f"s{i}"} for i in range(16)]
    response = search(http, server, {"operator": "AND", "value": filters})
    assert response.status_code == 400
    assert_error_list(contract, response.json(), "parameter_invalid")
    assert "15" in response.json()["errors"][0]["message"]
    assert search(http, server, {"operator": "AND", "value": filters[:15]}).status_code == 200


def test_three_levels_of_nesting_are_refused_and_two_are_answered(
    contract: tuple[OpenAPI, dict[str, Any]],
    http: requests.Session,
    server: VendorServer,
    data: intercom.Data,
) -> None:
    closed = {"field": "state", "operator": "=", "value": "closed"}
    urgent = {"field": "priority", "operator": "IN", "value": ["urgent", "high"]}
    reopened = {"field": "statistics.count_reopens", "operator": ">", "value": 1}
    tagged = {"field": "custom_attributes.Priority", "operator": "=", "value": "P1"}
    two = {
        "operator": "AND",
        "value": [
            {"operator": "OR", "value": [closed, reopened]},
            {"operator": "OR", "value": [urgent, tagged]},
        ],
    }
    found = {c["id"] for page in walk(http, server, two, 150) for c in page.json()["conversations"]}
    wanted = {
        c.id
        for c in data.conversations
        if (c.state == "closed" or c.count_reopens >= 1)
        and (c.priority in ("urgent", "high") or c.attribute("Priority") == "P1")
    }
    assert found == wanted and wanted
    three = {"operator": "AND", "value": [{"operator": "OR", "value": [two, closed]}]}
    response = search(http, server, three)
    assert response.status_code == 400
    assert_error_list(contract, response.json(), "parameter_invalid")


@pytest.mark.parametrize(
    "query",
    [
        {"field": "created_at", "operator": ">", "value": "foobar"},
        {"field": "created_at", "operator": "~", "value": "17"},
        # Intercom's operators are =, !=, IN, NIN, >, <, ~, !~, ^, $: no >= or <=.
        {"field": "created_at", "operator": ">=", "value": 0},
        {"field": "statistics.count_reopens", "operator": "<=", "value": 3},
        {"field": "company.id", "operator": "=", "value": "x"},
        {"field": "state", "operator": "IN", "value": "open"},
        {"operator": "XOR", "value": [EVERYTHING]},
        {"operator": "AND", "value": []},
    ],
)
def test_what_the_search_does_not_support_is_refused_never_answered_empty(
    contract: tuple[OpenAPI, dict[str, Any]],
    http: requests.Session,
    server: VendorServer,
    query: dict[str, Any],
) -> None:
    response = search(http, server, query)
    assert response.status_code == 400
    assert_error_list(contract, response.json(), "parameter_invalid")


def test_greater_and_lower_than_include_the_bound_for_conversations(
    http: requests.Session, server: VendorServer, data: intercom.Data
) -> None:
    moment = data.conversations[len(data.conversations) // 2].created_at
    query = {
        "operator": "AND",
        "value": [
            {"field": "created_at", "operator": ">", "value": moment},
            {"field": "created_at", "operator": "<", "value": str(moment)},
        ],
    }
    body = search(http, server, query, {"per_page": 150}).json()
    expected = {c.id for c in data.conversations if c.created_at == moment}
    assert {c["id"] for c in body["conversations"]} == expected


def test_contact_dates_match_by_calendar_day(
    http: requests.Session, server: VendorServer, data: intercom.Data
) -> None:
    contact = data.contacts[0]
    noon = contact.created_at - contact.created_at % 86_400 + 43_200
    query = {"field": "created_at", "operator": "=", "value": noon}
    body = search(http, server, query, {"per_page": 150}, path="/contacts/search").json()
    day = contact.created_at // 86_400
    assert {c["id"] for c in body["data"]} == {
        c.id for c in data.contacts if c.created_at // 86_400 == day
    }
    refused = {"field": "created_at", "operator": "!=", "value": noon}
    assert search(http, server, refused, path="/contacts/search").status_code == 400


# -- scroll, rate limits ------------------------------------------------------------------------


def test_only_one_company_scroll_may_be_open_at_a_time(
    contract: tuple[OpenAPI, dict[str, Any]], http: requests.Session, server: VendorServer
) -> None:
    first = http.get(server.url + "/companies/scroll", headers=HEADERS)
    assert first.status_code == 200 and first.json()["data"]
    second = http.get(server.url + "/companies/scroll", headers=HEADERS)
    assert second.status_code == 400
    assert_error_list(contract, second.json(), "scroll_exists")
    unknown = http.get(
        server.url + "/companies/scroll", params={"scroll_param": "nope"}, headers=HEADERS
    )
    assert unknown.status_code == 404


def test_an_idle_scroll_expires(
    http: requests.Session, server: VendorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intercom, "SCROLL_IDLE_SECONDS", 0.05)
    param = http.get(server.url + "/companies/scroll", headers=HEADERS).json()["scroll_param"]
    time.sleep(0.1)
    stale = http.get(
        server.url + "/companies/scroll", params={"scroll_param": param}, headers=HEADERS
    )
    assert stale.status_code == 404
    assert http.get(server.url + "/companies/scroll", headers=HEADERS).status_code == 200


def test_every_response_carries_the_rate_limit_headers(
    http: requests.Session, server: VendorServer
) -> None:
    responses = [
        search(http, server, EVERYTHING),
        search(http, server, EVERYTHING, headers={"Intercom-Version": "2.16"}),
        search(http, server, {"operator": "AND", "value": []}),
        http.get(server.url + "/nowhere", headers=HEADERS),
    ]
    for response in responses:
        assert int(response.headers["X-RateLimit-Limit"]) > 0
        assert int(response.headers["X-RateLimit-Remaining"]) >= 0
        assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
    remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in responses]
    assert remaining == sorted(remaining, reverse=True)


def test_a_429_storm_answers_with_the_reset_epoch(
    contract: tuple[OpenAPI, dict[str, Any]], data: intercom.Data, settings: Settings
) -> None:
    faults = Faults(storm_429=2, storm_retry_after=1.0)
    with (
        VendorServer(intercom.App(data, settings), faults=faults) as server,
        requests.Session() as http,
    ):
        before = time.time()
        statuses = [search(http, server, EVERYTHING) for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    limited = statuses[0]
    assert_error_list(contract, limited.json(), "rate_limit_exceeded")
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert before + 1 <= int(limited.headers["X-RateLimit-Reset"]) <= before + 3


def test_the_rate_limit_knob_answers_429_once_the_window_is_spent(
    data: intercom.Data, settings: Settings
) -> None:
    knobs = Knobs(rate_limit=2, rate_window_seconds=30)
    with (
        VendorServer(intercom.App(data, settings), knobs=knobs) as server,
        requests.Session() as http,
    ):
        statuses = [search(http, server, EVERYTHING) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in statuses] == ["1", "0", "0"]
    assert statuses[2].headers["X-RateLimit-Limit"] == "2"


# -- the data -----------------------------------------------------------------------------------


def test_the_same_seed_gives_byte_identical_data(
    portfolio: Portfolio, settings: Settings, data: intercom.Data
) -> None:
    again = intercom.generate(build_portfolio(60, seed=11), settings)
    assert again.to_json_bytes() == data.to_json_bytes()
    other = intercom.generate(build_portfolio(60, seed=12), settings)
    assert other.to_json_bytes() != data.to_json_bytes()


def test_accounts_absent_from_intercom_have_no_records_and_the_right_expectations(
    portfolio: Portfolio, data: intercom.Data
) -> None:
    known = {c.company_id for c in data.companies}
    mapped_absent = [
        p
        for p in portfolio.profiles
        if p.account.intercom_company_id is not None and not p.has("intercom")
    ]
    unmapped = [p for p in portfolio.profiles if p.account.intercom_company_id is None]
    assert mapped_absent and unmapped
    for profile in mapped_absent:
        assert profile.account.intercom_company_id not in known
        assert data.expected[profile.account_id] == {
            "p1_p2_volume": 0,
            **dict.fromkeys(METRICS[1:]),
        }
    for profile in unmapped:
        assert data.expected[profile.account_id] == dict.fromkeys(METRICS)


def test_about_five_percent_of_conversations_carry_no_company(data: intercom.Data) -> None:
    with_contact_company = {c.id for c in data.contacts if c.company_ids}
    orphans = [c for c in data.conversations if c.company is None]
    assert 0.03 <= len(orphans) / len(data.conversations) <= 0.12
    assert sum(1 for c in orphans if c.contact in with_contact_company) > len(orphans) / 2


def test_expected_metrics_land_near_the_profiles_targets() -> None:
    portfolio = build_portfolio(250)
    settings: Settings = load_source_settings(only=("intercom",))["intercom"]
    data = intercom.generate(portfolio, settings)
    tolerance = {
        "p1_p2_volume": 1.0,
        "first_response_minutes": 60.0,
        "close_time_hours": 8.0,
        "reopen_rate_pct": 4.0,
        "escalation_rate_pct": 4.0,
    }
    for metric, limit in tolerance.items():
        gaps = [
            abs(float(value) - profile.targets[metric])
            for profile in portfolio.profiles
            if profile.has("intercom")
            and (value := data.expected[profile.account_id][metric]) is not None
        ]
        assert len(gaps) > 200
        assert statistics.mean(gaps) < limit, metric


def test_minimum_requests_counts_search_pages_at_150_plus_the_fallback(
    data: intercom.Data, settings: Settings, portfolio: Portfolio
) -> None:
    start, end = intercom.window_of(portfolio.as_of, settings.lookback_days)
    window = [c for c in data.conversations if start <= c.created_at < end]
    orphan_contacts = {c.contact for c in window if c.company is None}
    via_contact = {c.id: c.company_ids[0] for c in data.contacts if c.company_ids}
    named = {c.company for c in window if c.company is not None}
    unknown = {via_contact[c] for c in orphan_contacts if c in via_contact} - named
    assert unknown  # one account is reached only through its contacts
    expected = -(-len(window) // 150) + -(-len(orphan_contacts) // 150) + len(unknown)
    assert data.minimum_requests(settings) == expected


# -- shapes: compact company references, contacts in several companies, outbound ----------------


def test_the_records_come_in_every_shape_the_extractor_must_read(
    contract: tuple[OpenAPI, dict[str, Any]],
    http: requests.Session,
    server: VendorServer,
    data: intercom.Data,
) -> None:
    pages = list(walk(http, server, EVERYTHING, 150))
    for page in pages:
        assert_valid(contract, page)
    conversations = [c for page in pages for c in page.json()["conversations"]]
    compact = [c for c in conversations if set(c.get("company") or {}) == {"type", "id"}]
    full = [c for c in conversations if "company_id" in (c.get("company") or {})]
    assert compact and full
    kinds = {c["source"]["delivered_as"] for c in conversations}
    assert kinds == {"customer_initiated", "admin_initiated", "automated"}
    outbound = [c for c in conversations if c["source"]["delivered_as"] != "customer_initiated"]
    assert all(c["source"]["author"]["type"] == "admin" for c in outbound)
    shared = [c for c in data.contacts if len(c.company_ids) > 1]
    assert shared
    # A shared contact's conversations name their own company, which is not its first one.
    of_shared = [c for c in data.conversations if c.contact in {s.id for s in shared}]
    assert of_shared and all(c.company is not None for c in of_shared)
    first = {s.id: s.company_ids[0] for s in shared}
    assert all(c.company != first[c.contact] for c in of_shared)


def test_outbound_conversations_are_searchable_by_delivered_as(
    http: requests.Session, server: VendorServer, data: intercom.Data
) -> None:
    query = {"field": "source.delivered_as", "operator": "=", "value": "admin_initiated"}
    body = search(http, server, query, {"per_page": 150}).json()
    expected = {c.id for c in data.conversations if c.delivered_as == "admin_initiated"}
    assert expected and {c["id"] for c in body["conversations"]} == expected


def test_expected_metrics_leave_outbound_conversations_out_unless_configured(
    portfolio: Portfolio,
) -> None:
    measured = intercom.generate(portfolio, {})
    everything = intercom.generate(portfolio, {"exclude_delivered_as": []})
    assert measured.conversations == everything.conversations
    changed = [a for a in measured.expected if measured.expected[a] != everything.expected[a]]
    assert changed  # the outbound conversations move some accounts' metrics
