"""The Jira extractor against the real Jira stand-in: metrics, requests, escaping and faults."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
import requests
import stamina
from hypothesis import given
from hypothesis import strategies as st

from health_score.records import Account
from health_score.sources.base import SourceResult
from health_score.sources.http import AuthenticationError, SourceError
from health_score.sources.jira import (
    OPEN_BUGS_P1_P2,
    OPEN_BUGS_TOTAL,
    Settings,
)
from health_score.sources.jira.extractor import (
    COUNT_PATH,
    SEARCH_PATH,
    JiraExtractor,
    from_env,
    jql_string,
)
from health_score_sandbox.jira import SANDBOX_API_TOKEN, App, Data, environment, generate
from health_score_sandbox.jql import BoolOp, Clause, Node, parse
from health_score_sandbox.portfolio import Portfolio
from health_score_sandbox.server import Faults, Request, Response, VendorApp, VendorServer
from tests.conftest import SHARED, shared_file

CONTRACTS = SHARED / "contracts"
JIRA_SPEC = CONTRACTS / "jira" / "swagger-v3.v3.json"
HOSTILE = (
    'Quote "Inc"',
    "Back\\slash Ltd",
    "Trailing backslash \\",
    "O'Brien & Sons",
    'x") OR project = OPS OR component IN ("y',
    "Ünïcode — Café",
)

VENDOR = "jira"  # for the shared stand-in fixtures in conftest.py
SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)  # the default portfolio's date


def make(
    server: VendorServer,
    settings: Settings,
    session: requests.Session,
    as_of: datetime | None = None,
    **env: str,
) -> JiraExtractor:
    extractor = from_env(
        settings, {**environment(server.url, ""), **env}, session=session, as_of=as_of
    )
    assert extractor is not None
    return extractor


def metrics_of(result: SourceResult) -> dict[str, dict[str, Any]]:
    return {account_id: dict(values) for account_id, values in result.metrics.items()}


def record_bodies(session: requests.Session) -> list[dict[str, Any]]:
    """Collect the JSON bodies the session sends (a response hook, no patching)."""
    bodies: list[dict[str, Any]] = []

    def hook(response: requests.Response, *args: object, **kwargs: object) -> None:
        body = response.request.body
        bodies.append({"path": response.request.path_url, **json.loads(body or b"{}")})

    session.hooks["response"].append(hook)
    return bodies


@dataclasses.dataclass
class Run:
    result: SourceResult
    stats: dict[str, int]
    bodies: list[dict[str, Any]]


@pytest.fixture(scope="module")
def run(server: VendorServer, settings: Settings, portfolio: Portfolio) -> Run:
    """One extraction over the 250-account portfolio, shared by the tests that read it."""
    server.reset_stats()
    with requests.Session() as http:
        bodies = record_bodies(http)
        result = make(server, settings, http, SANDBOX_DATE).extract(portfolio.accounts)
    return Run(result, dict(server.stats), bodies)


# --------------------------------------------------------------------------------------------
# JQL literals


def test_jql_strings_are_double_quoted_with_quotes_backslashes_and_controls_escaped() -> None:
    assert jql_string("cust-00001") == '"cust-00001"'
    assert jql_string('say "hi"') == r'"say \"hi\""'
    assert jql_string("a\\b") == r'"a\\b"'
    assert jql_string("end\\") == r'"end\\"'
    assert jql_string("line\nbreak\ttab\x01") == r'"line\nbreak\ttab\u0001"'
    assert jql_string("it's") == '"it\'s"'


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40))
def test_any_value_survives_quoting_as_one_literal(value: str) -> None:
    where = parse(f"component = {jql_string(value)} AND project = SUP").where
    assert isinstance(where, BoolOp)
    assert where.items[0] == Clause("component", "=", (value,), 0)


def _listed_values(node: Node | None) -> list[str]:
    if isinstance(node, BoolOp):
        return [v for item in node.items for v in _listed_values(item)]
    if isinstance(node, Clause) and node.field == "component":
        return list(node.values)
    return []


def test_customer_chunks_list_every_customer_once_within_the_length_limit(
    settings: Settings, session: requests.Session
) -> None:
    tight = settings.model_copy(update={"max_jql_chars": 1000})
    extractor = JiraExtractor(tight, "http://127.0.0.1:9", "a@example.com", "t", session=session)
    customers = [("SUP", f"cust-{n:05d}") for n in range(300)] + [("OPS", v) for v in HOSTILE]
    chunks = extractor.customer_chunks(customers, parts=2)
    assert len(chunks) > 2  # the length limit, not the requested parts, decides
    assert all(len(jql) <= 1000 for jql in chunks)
    listed = [v for jql in chunks for v in _listed_values(parse(jql).where)]
    assert sorted(listed) == sorted(c for _, c in customers)
    assert all(jql.endswith(f") AND {extractor.bug_condition}") for jql in chunks)


# --------------------------------------------------------------------------------------------
# One run over 250 accounts


def test_every_account_of_a_250_account_portfolio_gets_the_expected_bug_counts(
    run: Run, data: Data
) -> None:
    assert metrics_of(run.result) == data.expected
    counted = [v for v in data.expected.values() if v[OPEN_BUGS_TOTAL]]
    assert len(counted) > 150


def test_mapped_customers_without_bugs_get_zero_and_unmapped_accounts_none(
    run: Run, portfolio: Portfolio
) -> None:
    absent_mapped = [
        p for p in portfolio.profiles if not p.has("jira") and p.account.jira_component
    ]
    unmapped = [p for p in portfolio.profiles if not p.account.jira_component]
    assert absent_mapped and unmapped
    for profile in absent_mapped:
        assert metrics_of(run.result)[profile.account_id] == {
            OPEN_BUGS_TOTAL: 0,
            OPEN_BUGS_P1_P2: 0,
        }
    for profile in unmapped:
        assert metrics_of(run.result)[profile.account_id] == {
            OPEN_BUGS_TOTAL: None,
            OPEN_BUGS_P1_P2: None,
        }


def test_the_removed_search_endpoint_is_never_called(run: Run) -> None:
    assert set(run.stats) == {f"POST {COUNT_PATH}", f"POST {SEARCH_PATH}"}
    assert not any(label.endswith("/rest/api/3/search") for label in run.stats)


def test_each_page_is_fetched_exactly_once_with_one_count_to_plan(
    run: Run, data: Data, settings: Settings
) -> None:
    in_query = [i for i in data.bug_indices(settings) if data.issues[i].project == "SUP"]
    assert run.stats[f"POST {COUNT_PATH}"] == 1
    assert run.stats[f"POST {SEARCH_PATH}"] == math.ceil(len(in_query) / 100)
    assert run.result.requests == sum(run.stats.values())
    assert run.result.requests <= data.minimum_requests(settings) + 2


def test_one_bounded_query_asks_only_for_the_needed_fields_at_the_largest_page(
    run: Run, settings: Settings
) -> None:
    searches = [b for b in run.bodies if b["path"] == SEARCH_PATH]
    assert {b["jql"] for b in searches} == {
        'project IN ("SUP") AND (issuetype = Bug) AND created < "2026-11-01 00:00" AND '
        '(resolved IS EMPTY OR resolved >= "2026-11-01 00:00")'
    }
    assert all(b["fields"] == ["project", "priority", "components"] for b in searches)
    assert all(b["maxResults"] == 100 for b in searches)
    tokens = [b.get("nextPageToken") for b in searches]
    assert tokens[0] is None and len(set(tokens[1:])) == len(tokens) - 1


def test_the_window_is_the_instant_the_bugs_are_open_at(run: Run) -> None:
    assert run.result.window == (None, SANDBOX_DATE)


def _open_by_hand(data: Data, portfolio: Portfolio, at: datetime) -> dict[str, int]:
    """Open bugs per mapped SUP customer at ``at``, counted from the issues' own dates."""
    stamp = "%Y-%m-%dT%H:%M:%S.%f%z"
    mapped = {p.account.jira_component: p.account_id for p in portfolio.profiles}
    counts = dict.fromkeys(
        (p.account_id for p in portfolio.profiles if p.account.jira_project_key == "SUP"), 0
    )
    for issue in data.issues:
        created = datetime.strptime(issue.created, stamp)
        resolved = None if issue.resolved is None else datetime.strptime(issue.resolved, stamp)
        if issue.project != "SUP" or issue.issuetype != "Bug" or created >= at:
            continue
        if resolved is not None and resolved < at:
            continue
        for component in set(issue.components):
            if component in mapped and mapped[component] in counts:
                counts[mapped[component]] += 1
    return counts


def test_a_past_as_of_counts_the_bugs_open_then_not_today(
    server: VendorServer, settings: Settings, portfolio: Portfolio, data: Data
) -> None:
    """Bugs resolved since 2026-06-01 were open then; bugs created since did not exist."""
    past = datetime(2026, 6, 1, tzinfo=UTC)
    with requests.Session() as http:
        result = make(server, settings, http, past).extract(portfolio.accounts)
    then = _open_by_hand(data, portfolio, past)
    now = _open_by_hand(data, portfolio, SANDBOX_DATE)
    got = {a: int(v[OPEN_BUGS_TOTAL] or 0) for a, v in result.metrics.items() if a in then}
    assert got == then
    assert then != now  # the portfolio has bugs opened and resolved in between
    assert result.window == (None, past)


def test_a_past_as_of_sends_no_other_instant(
    server: VendorServer, settings: Settings, portfolio: Portfolio
) -> None:
    app = server.app
    assert isinstance(app, App)
    app.queries.clear()
    with requests.Session() as http:
        make(server, settings, http, datetime(2026, 3, 1, tzinfo=UTC)).extract(portfolio.accounts)
    assert app.queries
    for jql in app.queries:
        assert 'created < "2026-03-01 00:00"' in jql
        assert 'resolved IS EMPTY OR resolved >= "2026-03-01 00:00"' in jql
        assert set(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", jql)) == {"2026-03-01 00:00"}
        assert "statusCategory" not in jql  # today's status is never asked


def test_bugs_naming_no_mapped_customer_are_reported_once(run: Run) -> None:
    assert len(run.result.notes) == 1
    assert "name no mapped customer" in run.result.notes[0]


@pytest.fixture(scope="module")
def contract() -> Any:
    shared_file(CONTRACTS)
    from openapi_core import Config, OpenAPI

    spec = json.loads(JIRA_SPEC.read_text(encoding="utf-8"))
    # The stand-in listens on a loopback port rather than your-domain.atlassian.net.
    spec["servers"] = [{"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "80"}}}]
    # The published file is large; validating the description itself adds nothing here.
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))


def test_every_request_and_response_of_a_run_follows_the_jira_contract(
    server: VendorServer,
    settings: Settings,
    portfolio: Portfolio,
    session: requests.Session,
    contract: Any,
) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    problems: list[str] = []
    checked: list[str] = []

    def validate(response: requests.Response, *args: object, **kwargs: object) -> None:
        request = RequestsOpenAPIRequest(response.request)
        checked.append(response.request.path_url)
        for error in (
            *contract.iter_request_errors(request),
            *contract.iter_response_errors(request, RequestsOpenAPIResponse(response)),
        ):
            problems.append(f"{response.request.path_url}: {error}")

    session.hooks["response"].append(validate)
    chunked = settings.model_copy(update={"pages_per_query": 3})
    make(server, chunked, session).extract(portfolio.accounts)
    assert problems == []
    assert COUNT_PATH in checked and checked.count(SEARCH_PATH) > 5


# --------------------------------------------------------------------------------------------
# Chunked customers, custom fields and hostile names


def test_large_results_are_split_into_customer_chunks_fetched_concurrently(
    server: VendorServer,
    settings: Settings,
    portfolio: Portfolio,
    data: Data,
    session: requests.Session,
) -> None:
    chunked = settings.model_copy(update={"pages_per_query": 2})
    bodies = record_bodies(session)
    result = make(server, chunked, session).extract(portfolio.accounts)
    assert metrics_of(result) == data.expected
    queries = {b["jql"] for b in bodies if b["path"] == SEARCH_PATH}
    assert len(queries) >= 5
    assert all('component IN ("cust-' in jql for jql in queries)
    assert result.requests <= 1.2 * data.minimum_requests(settings) + len(queries)


def test_a_customer_unknown_to_jira_falls_back_to_the_project_query(
    server: VendorServer,
    settings: Settings,
    portfolio: Portfolio,
    data: Data,
    session: requests.Session,
) -> None:
    ghost = Account("001GHOST", "Ghost Co", "standard", jira_project_key="SUP", jira_component="gh")
    chunked = settings.model_copy(update={"pages_per_query": 2})
    result = make(server, chunked, session).extract([*portfolio.accounts, ghost])
    assert metrics_of(result) == {
        **data.expected,
        "001GHOST": {OPEN_BUGS_TOTAL: 0, OPEN_BUGS_P1_P2: 0},
    }
    assert any("fell back to one project query" in note for note in result.notes)


def test_customers_named_by_a_custom_field_are_grouped_by_its_option_value(
    portfolio: Portfolio, settings: Settings, session: requests.Session
) -> None:
    custom = settings.model_copy(update={"customer_field": "customfield_10042"})
    custom_data = generate(portfolio, custom)
    assert all(not c.startswith("cust-") for i in custom_data.issues for c in i.components)
    bodies = record_bodies(session)
    with VendorServer(App(custom_data, custom)) as running:
        for pages in (20, 2):
            mode = custom.model_copy(update={"pages_per_query": pages})
            result = make(running, mode, session).extract(portfolio.accounts)
            assert metrics_of(result) == custom_data.expected
    searches = [b for b in bodies if b["path"] == SEARCH_PATH]
    assert all(b["fields"] == ["project", "priority", "customfield_10042"] for b in searches)
    assert any("cf[10042] IN (" in b["jql"] for b in searches)


def test_hostile_component_names_are_escaped_and_counted_like_any_other(
    portfolio: Portfolio, settings: Settings, session: requests.Session
) -> None:
    present = [
        i
        for i, p in enumerate(portfolio.profiles)
        if p.has("jira") and p.account.jira_component and p.targets[OPEN_BUGS_TOTAL] >= 1
    ]
    profiles = list(portfolio.profiles)
    for position, name in zip(present, HOSTILE, strict=False):
        account = dataclasses.replace(profiles[position].account, jira_component=name)
        profiles[position] = dataclasses.replace(profiles[position], account=account)
    hostile = dataclasses.replace(portfolio, profiles=tuple(profiles))
    hostile_data = generate(hostile, settings)
    renamed = [profiles[p].account_id for p in present[: len(HOSTILE)]]
    assert all(hostile_data.expected[a][OPEN_BUGS_TOTAL] for a in renamed)
    with VendorServer(App(hostile_data, settings)) as running:
        for pages in (20, 1):
            mode = settings.model_copy(update={"pages_per_query": pages})
            result = make(running, mode, session).extract(hostile.accounts)
            assert metrics_of(result) == hostile_data.expected
            assert not any("fell back" in note for note in result.notes)


# --------------------------------------------------------------------------------------------
# Faults


def test_a_429_storm_completes_after_honouring_retry_after(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    faults = Faults(storm_429=2, storm_retry_after=1)
    with VendorServer(App(data, settings), faults=faults) as running:
        started = time.monotonic()
        result = make(running, settings, session).extract(portfolio.accounts)
        elapsed = time.monotonic() - started
    assert metrics_of(result) == data.expected
    assert 1.9 <= elapsed < 15


def test_an_intermittent_5xx_rate_completes(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    faults = Faults(error_rate_5xx=0.3)
    with (
        stamina.set_testing(True, attempts=8, cap=True),
        VendorServer(App(data, settings), faults=faults, seed=5) as running,
    ):
        extractor = make(running, settings, session)
        result = extractor.extract(portfolio.accounts)
    assert metrics_of(result) == data.expected
    assert extractor.client.retries > 0


def test_a_server_that_always_answers_503_fails_the_source_naming_jira(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with (
        stamina.set_testing(True, attempts=3),
        VendorServer(App(data, settings), faults=Faults(always_503=True)) as running,
        pytest.raises(SourceError, match=r"^jira: POST /rest/api/3/search/.*HTTP 503"),
    ):
        make(running, settings, session).extract(portfolio.accounts)


def test_a_server_that_is_down_fails_the_source_naming_jira(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with (
        stamina.set_testing(True, attempts=2),
        VendorServer(App(data, settings), faults=Faults(down=True)) as running,
        pytest.raises(SourceError, match=r"^jira: .*cannot connect"),
    ):
        make(running, settings, session).extract(portfolio.accounts)


def test_malformed_json_fails_the_source_naming_jira_and_the_endpoint(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with (
        VendorServer(App(data, settings), faults=Faults(malformed=True)) as running,
        pytest.raises(SourceError) as caught,
    ):
        make(running, settings, session).extract(portfolio.accounts)
    assert caught.value.source == "jira"
    assert caught.value.endpoint == f"POST {COUNT_PATH}"
    assert "malformed JSON" in str(caught.value)


def test_rejected_credentials_name_the_variables_to_check_without_their_values(
    server: VendorServer, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        make(server, settings, session, JIRA_API_TOKEN="wrong-token").extract(portfolio.accounts)
    message = str(caught.value)
    assert message.startswith("jira: ")
    assert "JIRA_EMAIL" in message and "JIRA_API_TOKEN" in message
    assert "wrong-token" not in message and SANDBOX_API_TOKEN not in message


class RepeatingTokenApp(VendorApp):
    """A broken Jira that hands out the same nextPageToken forever."""

    name = "jira"

    def handle(self, request: Request) -> Response:
        if request.path == COUNT_PATH:
            return Response(200, {"count": 3})
        return Response(200, {"issues": [], "isLast": False, "nextPageToken": "same-token"})


def test_a_repeated_page_token_is_refused_as_a_loop(
    settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with (
        VendorServer(RepeatingTokenApp()) as running,
        pytest.raises(SourceError, match="loop detected"),
    ):
        make(running, settings, session).extract(portfolio.accounts)
    assert running.stats[f"POST {SEARCH_PATH}"] == 2


# --------------------------------------------------------------------------------------------
# Activation and settings


def test_jira_is_activated_only_with_url_email_and_token(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    full = {
        "JIRA_BASE_URL": "https://example.atlassian.net",
        "JIRA_EMAIL": "ops@example.com",
        "JIRA_API_TOKEN": "secret-value",
    }
    assert from_env(settings, {}) is None
    assert from_env(settings, {**full, "JIRA_API_TOKEN": ""}) is None
    assert "JIRA_API_TOKEN" in caplog.text and "secret-value" not in caplog.text
    with requests.Session() as http:
        extractor = from_env(settings, full, session=http)
        assert extractor is not None
        assert extractor.name == "jira"
        assert extractor.provides == {OPEN_BUGS_TOTAL, OPEN_BUGS_P1_P2}
        assert extractor.requests_made == 0


def test_no_mapped_customer_means_no_request_and_no_values(
    server: VendorServer, settings: Settings, session: requests.Session
) -> None:
    account = Account("001X", "No Jira", "standard")
    result = make(server, settings, session).extract([account])
    assert result.requests == 0
    assert metrics_of(result) == {"001X": {OPEN_BUGS_TOTAL: None, OPEN_BUGS_P1_P2: None}}


@pytest.mark.parametrize(
    "section",
    [
        {"bug_jql": "issuetype = Bug ORDER BY key"},
        {"bug_jql": "  "},
        {"customer_field": "Customer"},
        {"p1_p2_priorities": []},
        {"page_size": 0},
        {"unknown_key": 1},
    ],
)
def test_invalid_jira_settings_are_refused(section: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings.model_validate(section)


def test_an_empty_section_is_valid_and_means_the_usual_bug_definition() -> None:
    defaults = Settings.model_validate({})
    assert defaults.bug_jql == "issuetype = Bug"
    assert defaults.customer_jql_field == "component"
    assert Settings.model_validate({"customer_field": "customfield_10042"}).customer_jql_field == (
        "cf[10042]"
    )
