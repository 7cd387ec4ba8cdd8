"""The Jira stand-in: generated issues, its wire format against the Jira v3 contract, faults."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import jsonschema
import pytest
import requests

from health_score_sandbox.jira import (
    OPEN_BUGS_P1_P2,
    OPEN_BUGS_TOTAL,
    PAGE_CAP_FIELDS,
    PAGE_CAP_IDS,
    REMOVED_MESSAGE,
    SANDBOX_API_TOKEN,
    SANDBOX_EMAIL,
    App,
    Data,
    Settings,
    environment,
    generate,
)
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.server import Faults, Knobs, VendorServer
from tests.conftest import SHARED, shared_file
from tests.jira_support import authenticated_session

CONTRACTS = SHARED / "contracts"
JIRA_SPEC = CONTRACTS / "jira" / "swagger-v3.v3.json"
SEARCH = "/rest/api/3/search/jql"
COUNT = "/rest/api/3/search/approximate-count"
OPEN = {"To Do", "Backlog", "In Progress", "In Review"}

VENDOR = "jira"  # for the shared stand-in fixtures in conftest.py

http = authenticated_session  # the stand-in's Jira credentials, one session per test


class Contract:
    """The Jira Cloud v3 description, loaded once per module, checking requests and responses."""

    def __init__(self) -> None:
        from openapi_core import Config, OpenAPI

        spec = json.loads(JIRA_SPEC.read_text(encoding="utf-8"))
        self.error_schema = spec["components"]["schemas"]["ErrorCollection"]
        # The stand-in listens on a loopback port rather than your-domain.atlassian.net.
        spec["servers"] = [
            {"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "80"}}}
        ]
        # The published file is large; validating the description itself adds nothing here.
        self.api = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))

    def check(self, response: requests.Response) -> None:
        from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

        request = RequestsOpenAPIRequest(response.request)
        self.api.validate_request(request)
        self.api.validate_response(request, RequestsOpenAPIResponse(response))

    def check_error(self, response: requests.Response) -> None:
        """Error bodies (some statuses are not described per operation) are ErrorCollections."""
        jsonschema.validate(response.json(), self.error_schema)


@pytest.fixture(scope="module")
def contract() -> Contract:
    shared_file(CONTRACTS)
    return Contract()


def walk(
    http: requests.Session, server: VendorServer, body: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[str], int]:
    """Every issue of a search, the tokens seen, and the number of pages."""
    issues: list[dict[str, Any]] = []
    tokens: list[str] = []
    pages = 0
    body = dict(body)
    while True:
        answer = http.post(f"{server.url}{SEARCH}", json=body)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages += 1
        issues.extend(page["issues"])
        if page["isLast"]:
            assert "nextPageToken" not in page
            return issues, tokens, pages
        tokens.append(page["nextPageToken"])
        body["nextPageToken"] = page["nextPageToken"]


# --------------------------------------------------------------------------------------------
# Generated data


def _fingerprint(data: Data) -> str:
    return json.dumps([dataclasses.astuple(i) for i in data.issues]) + repr(data.expected)


def test_the_same_seed_gives_identical_issues_and_expectations(
    settings: Settings, data: Data
) -> None:
    again = generate(build_portfolio(250, seed=7), settings)
    assert _fingerprint(again) == _fingerprint(data)
    other = generate(build_portfolio(250, seed=8), settings)
    assert _fingerprint(other) != _fingerprint(data)


def test_accounts_absent_from_jira_have_no_issues_and_unmapped_ones_expect_none(
    portfolio: Portfolio, data: Data
) -> None:
    named = {c for issue in data.issues if issue.project == "SUP" for c in issue.components}
    absent = [p for p in portfolio.profiles if not p.has("jira")]
    assert absent
    for profile in absent:
        assert profile.account.jira_component not in named
        values = data.expected[profile.account_id]
        if profile.account.jira_component:
            assert values == {OPEN_BUGS_TOTAL: 0, OPEN_BUGS_P1_P2: 0}
        else:
            assert values == {OPEN_BUGS_TOTAL: None, OPEN_BUGS_P1_P2: None}


def test_present_accounts_get_open_bugs_around_their_targets(
    portfolio: Portfolio, data: Data
) -> None:
    present = [p for p in portfolio.profiles if p.has("jira") and p.account.jira_component]
    assert len(present) > 200
    for profile in present:
        values = data.expected[profile.account_id]
        total, urgent = values[OPEN_BUGS_TOTAL], values[OPEN_BUGS_P1_P2]
        assert total is not None and urgent is not None
        assert urgent <= total
        # Shared bugs (two customers on one issue) may add one or two above the target.
        assert (
            round(profile.targets[OPEN_BUGS_TOTAL]) <= total <= profile.targets[OPEN_BUGS_TOTAL] + 3
        )
    assert {i.issuetype for i in data.issues} == {"Bug", "Task", "Story"}
    assert {i.priority for i in data.issues} == {"Highest", "High", "Medium", "Low", "Lowest"}
    assert any(i.status in ("Done", "Closed") for i in data.issues if i.issuetype == "Bug")


def test_expected_counts_equal_a_plain_count_over_the_records(
    portfolio: Portfolio, data: Data
) -> None:
    for profile in portfolio.profiles[:60]:
        account = profile.account
        if not account.jira_component:
            continue
        mine = [
            i
            for i in data.issues
            if i.project == account.jira_project_key
            and account.jira_component in i.components
            and i.issuetype == "Bug"
            and i.status in OPEN
        ]
        assert data.expected[account.account_id] == {
            OPEN_BUGS_TOTAL: len(mine),
            OPEN_BUGS_P1_P2: sum(i.priority in ("Highest", "High") for i in mine),
        }


def test_minimum_requests_is_one_page_of_100_per_attributed_open_bug(
    data: Data, settings: Settings
) -> None:
    attributed = data.attributed_bugs(settings)
    assert attributed > 500
    assert data.minimum_requests(settings) == math.ceil(attributed / PAGE_CAP_FIELDS)


def test_environment_points_at_the_server_with_fake_credentials() -> None:
    env = environment("http://127.0.0.1:9", "/tmp/ca.pem")
    assert env == {
        "JIRA_BASE_URL": "http://127.0.0.1:9",
        "JIRA_EMAIL": SANDBOX_EMAIL,
        "JIRA_API_TOKEN": SANDBOX_API_TOKEN,
    }


# --------------------------------------------------------------------------------------------
# Contract


def test_search_get_and_post_responses_and_requests_follow_the_contract(
    http: requests.Session, server: VendorServer, contract: Contract, data: Data
) -> None:
    fields = "summary,issuetype,status,priority,project,components,created,customfield_10042"
    answers = [
        http.get(
            f"{server.url}{SEARCH}",
            params={"jql": "project = SUP", "fields": fields, "maxResults": 7},
        ),
        http.get(f"{server.url}{SEARCH}", params={"jql": "project = SUP"}),
        http.post(
            f"{server.url}{SEARCH}",
            json={"jql": "issuetype = Bug", "fields": ["*all", "-summary"], "maxResults": 3},
        ),
        http.post(f"{server.url}{COUNT}", json={"jql": "project = SUP"}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        contract.check(answer)
    page = answers[0].json()
    assert len(page["issues"]) == 7 and page["isLast"] is False
    assert set(page["issues"][0]["fields"]) == set(fields.split(","))
    assert "summary" not in answers[2].json()["issues"][0]["fields"]
    assert answers[3].json()["count"] == sum(1 for i in data.issues if i.project == "SUP")


def test_error_responses_follow_the_contract(
    http: requests.Session, server: VendorServer, contract: Contract
) -> None:
    bad_jql = http.post(f"{server.url}{SEARCH}", json={"jql": "summary ~ x"})
    assert bad_jql.status_code == 400
    contract.check(bad_jql)
    for answer in (
        http.get(f"{server.url}/rest/api/3/search", params={"jql": "project = SUP"}),
        http.post(f"{server.url}{SEARCH}", json={"jql": "project = SUP", "startAt": 50}),
        requests.post(f"{server.url}{SEARCH}", json={"jql": "project = SUP"}, timeout=5),
    ):
        assert answer.status_code in (400, 401, 410)
        contract.check_error(answer)


# --------------------------------------------------------------------------------------------
# Fields and page sizes


def test_issues_carry_only_their_id_unless_fields_are_asked_for(
    http: requests.Session, server: VendorServer
) -> None:
    page = http.post(f"{server.url}{SEARCH}", json={"jql": "project = SUP"}).json()
    assert len(page["issues"]) == 50  # Jira's default page
    assert all(set(issue) == {"id"} for issue in page["issues"])
    page = http.post(
        f"{server.url}{SEARCH}", json={"jql": "project = SUP", "fields": ["priority,project"]}
    ).json()
    assert set(page["issues"][0]) == {"expand", "id", "key", "self", "fields"}
    assert set(page["issues"][0]["fields"]) == {"priority", "project"}


def test_max_results_is_capped_at_100_with_fields_and_5000_for_ids(
    http: requests.Session, settings: Settings
) -> None:
    big = generate(build_portfolio(1000, seed=3), settings)
    assert len(big.issues) > PAGE_CAP_IDS
    with VendorServer(App(big, settings)) as running:
        url = f"{running.url}{SEARCH}"
        ids = http.post(url, json={"jql": "project IN (SUP, OPS)", "maxResults": 9000}).json()
        with_fields = http.post(
            url, json={"jql": "project = SUP", "maxResults": 1000, "fields": ["priority"]}
        ).json()
        refused = http.post(url, json={"jql": "project = SUP", "maxResults": -1})
    assert len(ids["issues"]) == PAGE_CAP_IDS and ids["isLast"] is False
    assert len(with_fields["issues"]) == PAGE_CAP_FIELDS
    assert refused.status_code == 400


# --------------------------------------------------------------------------------------------
# Paging


def test_paging_walks_every_matching_issue_exactly_once(
    http: requests.Session, server: VendorServer, data: Data
) -> None:
    issues, tokens, pages = walk(
        http, server, {"jql": "issuetype = Bug AND statusCategory != Done", "maxResults": 37}
    )
    ids = [issue["id"] for issue in issues]
    expected = [str(i.id) for i in data.issues if i.issuetype == "Bug" and i.status in OPEN]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(expected)
    assert pages == math.ceil(len(expected) / 37) and len(set(tokens)) == pages - 1


def test_page_tokens_are_opaque_stable_and_bound_to_their_query(
    http: requests.Session, server: VendorServer
) -> None:
    body = {"jql": "project = SUP", "maxResults": 10}
    first = http.post(f"{server.url}{SEARCH}", json=body).json()["nextPageToken"]
    again = http.post(f"{server.url}{SEARCH}", json=body).json()["nextPageToken"]
    assert first == again
    assert "10" not in first and "SUP" not in first
    via_get = http.get(
        f"{server.url}{SEARCH}",
        params={"jql": "project = SUP", "maxResults": 10, "nextPageToken": first},
    )
    assert via_get.status_code == 200 and via_get.json()["issues"][0]["id"] == "10011"
    other = http.post(
        f"{server.url}{SEARCH}", json={"jql": "project = OPS", "nextPageToken": first}
    )
    garbage = http.post(
        f"{server.url}{SEARCH}", json={"jql": "project = SUP", "nextPageToken": "%%%"}
    )
    assert other.status_code == 400 and garbage.status_code == 400


# --------------------------------------------------------------------------------------------
# Endpoints, auth and faults


def test_the_removed_search_endpoint_answers_410_gone(
    http: requests.Session, server: VendorServer
) -> None:
    for answer in (
        http.get(f"{server.url}/rest/api/3/search", params={"jql": "project = SUP"}),
        http.post(f"{server.url}/rest/api/3/search", json={"jql": "project = SUP"}),
    ):
        assert answer.status_code == 410
        assert answer.json() == {"errorMessages": [REMOVED_MESSAGE], "errors": {}}


def test_bad_or_missing_credentials_get_401(http: requests.Session, server: VendorServer) -> None:
    wrong = requests.post(
        f"{server.url}{SEARCH}",
        json={"jql": "project = SUP"},
        auth=(SANDBOX_EMAIL, "not-the-token"),
        timeout=5,
    )
    anonymous = requests.post(f"{server.url}{SEARCH}", json={"jql": "project = SUP"}, timeout=5)
    assert wrong.status_code == anonymous.status_code == 401
    assert wrong.json()["errorMessages"]
    server.faults.auth_rejected = True
    try:
        assert http.post(f"{server.url}{SEARCH}", json={"jql": "project = SUP"}).status_code == 401
    finally:
        server.faults.auth_rejected = False


def test_request_bodies_outside_the_schema_are_refused(
    http: requests.Session, server: VendorServer
) -> None:
    unknown = http.post(f"{server.url}{SEARCH}", json={"jql": "project = SUP", "startAt": 0})
    not_json = http.post(
        f"{server.url}{SEARCH}",
        data="jql=project%20%3D%20SUP",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unknown.status_code == 400 and "startAt" in unknown.json()["errorMessages"][0]
    assert not_json.status_code == 415


def test_a_429_storm_carries_retry_after_and_rate_limit_headers(
    data: Data, settings: Settings, http: requests.Session
) -> None:
    faults = Faults(storm_429=1, storm_retry_after=1)
    with VendorServer(App(data, settings), faults=faults) as running:
        limited = http.post(f"{running.url}{SEARCH}", json={"jql": "project = SUP"})
        after = http.post(f"{running.url}{SEARCH}", json={"jql": "project = SUP"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["X-RateLimit-Reset"].endswith("Z")
    assert limited.json()["errorMessages"]
    assert after.status_code == 200


def test_the_rate_limit_window_is_announced_then_enforced(
    data: Data, settings: Settings, http: requests.Session
) -> None:
    knobs = Knobs(rate_limit=2, rate_window_seconds=30)
    with VendorServer(App(data, settings), knobs=knobs) as running:
        answers = [
            http.post(f"{running.url}{COUNT}", json={"jql": "project = SUP"}) for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "2"
    assert answers[0].headers["X-RateLimit-Remaining"] == "1"
    assert answers[2].headers["X-RateLimit-Limit"] == "2"
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 30


def test_the_malformed_fault_cuts_json_bodies_short(
    data: Data, settings: Settings, http: requests.Session
) -> None:
    with VendorServer(App(data, settings), faults=Faults(malformed=True)) as running:
        answer = http.post(f"{running.url}{COUNT}", json={"jql": "project = SUP"})
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()


def test_requests_are_counted_per_endpoint(data: Data, settings: Settings) -> None:
    with (
        VendorServer(App(data, settings)) as running,
        requests.Session() as session,
    ):
        session.auth = (SANDBOX_EMAIL, SANDBOX_API_TOKEN)
        session.post(f"{running.url}{COUNT}", json={"jql": "project = SUP"})
        session.get(f"{running.url}{SEARCH}", params={"jql": "project = SUP"})
        session.get(f"{running.url}/rest/api/3/search", params={"jql": "project = SUP"})
        stats = session.get(f"{running.url}/__sandbox/stats").json()
    assert stats["requests"] == {
        f"POST {COUNT}": 1,
        f"GET {SEARCH}": 1,
        "GET /rest/api/3/search": 1,
    }


def test_server_info_and_the_field_list_validate_against_the_contract(
    contract: Contract, http: requests.Session, server: VendorServer, data: Data
) -> None:
    info = http.get(f"{server.url}/rest/api/3/serverInfo")
    assert info.status_code == 200, info.text
    contract.check(info)
    assert info.json()["deploymentType"] == "Cloud"
    fields = http.get(f"{server.url}/rest/api/3/field")
    assert fields.status_code == 200, fields.text
    contract.check(fields)
    by_id = {f["id"]: f for f in fields.json()}
    assert by_id[data.customer_field]["custom"] is True
    assert "component" in by_id["components"]["clauseNames"]
    # The v2 resources answer the same (Jira's Python client uses /rest/api/2 by default).
    assert http.get(f"{server.url}/rest/api/2/field").json() == fields.json()
    assert http.get(f"{server.url}/rest/api/2/serverInfo").json()["deploymentType"] == "Cloud"


def test_the_v2_search_endpoints_answer_like_v3(
    http: requests.Session, server: VendorServer
) -> None:
    body = {"jql": "issuetype = Bug ORDER BY key", "fields": ["priority"], "maxResults": 7}
    v3 = http.post(f"{server.url}/rest/api/3/search/jql", json=body)
    v2 = http.post(f"{server.url}/rest/api/2/search/jql", json=body)
    assert v2.status_code == v3.status_code == 200
    assert [i["key"] for i in v2.json()["issues"]] == [i["key"] for i in v3.json()["issues"]]
    count = http.post(
        f"{server.url}/rest/api/2/search/approximate-count", json={"jql": "issuetype = Bug"}
    )
    assert count.status_code == 200 and count.json()["count"] > 0
    assert http.get(f"{server.url}/rest/api/2/search", params={"jql": "x"}).status_code == 410
