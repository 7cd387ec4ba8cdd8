"""The Looker extractor against the real loopback stand-in: metrics, requests, auth and faults."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
import requests

from health_score.config import ConfigProblem
from health_score.sources.http import AuthenticationError, SourceError
from health_score.sources.looker import (
    PresenceTransform,
    Settings,
    SumTransform,
    customer_value,
)
from health_score.sources.looker.extractor import (
    LookerExtractor,
    from_env,
)
from health_score.sources.looker.metrics import Cut, locate_cut
from health_score.sources.registry import parse_sources
from health_score_sandbox.looker import CLIENT_SECRET, App, Data, environment, generate
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.server import Faults, VendorServer

LOGIN = "POST /api/4.0/login"
INLINE = "POST /api/4.0/queries/run/json"

VENDOR = "looker"  # for the shared stand-in fixtures in conftest.py


def run_path(look_id: str) -> str:
    return f"GET /api/4.0/looks/{look_id}/run/json"


def look_path(look_id: str) -> str:
    """Reading a Look's saved query (the first of a dated Look's two requests)."""
    return f"GET /api/4.0/looks/{look_id}"


#: What a run of the default Looks for the portfolio's period (2026-10, as_of 2026-11-01) notes:
#: each Look's saved query run with its date filter replaced by the month's range.
PERIOD_NOTES = (
    "Look 101 (account usage): run for the period with account_usage.activity_month "
    'filtered to "2026-10-01 to 2026-11-01"',
    "Look 102 (platform value): run for the period with platform_value.activity_month "
    'filtered to "2026-10-01 to 2026-11-01"',
    "Look 103 (integrations): run for the period with integrations.activity_month "
    'filtered to "2026-10-01 to 2026-11-01"',
    "Look 104 (automations): run for the period with automations.activity_month "
    'filtered to "2026-10-01 to 2026-11-01"',
)


def as_of(portfolio: Portfolio) -> datetime:
    return datetime.combine(portfolio.as_of, datetime.min.time(), tzinfo=UTC)


def extractor(
    server: VendorServer,
    settings: Settings,
    session: requests.Session,
    portfolio: Portfolio,
    **env: str,
) -> LookerExtractor:
    found = from_env(
        settings,
        environment(server.url, "") | env,
        session=session,
        as_of=as_of(portfolio),
        now=as_of(portfolio),  # the sandbox's date: the Looks answer for the run's period
    )
    assert isinstance(found, LookerExtractor)
    return found


def with_looks(settings: Settings, **changes: dict[str, Any]) -> Settings:
    """The configured settings with some Looks (by id) changed."""
    raw = settings.model_dump(mode="python")
    raw["looks"] = [look | changes.get(look["id"], {}) for look in raw["looks"]]
    return Settings.model_validate(raw)


def undated(settings: Settings) -> Settings:
    """The configured settings with no Look naming a date_field: each is run as saved."""
    raw = settings.model_dump(mode="python")
    raw["looks"] = [look | {"date_field": None} for look in raw["looks"]]
    return Settings.model_validate(raw)


@pytest.fixture(scope="module")
def saved_looks(settings: Settings) -> Settings:
    """The default Looks without date_field (the behaviour before they named one)."""
    found = undated(settings)
    assert all(look.date_field for look in settings.looks)  # the default names them all
    return found


def mismatches(result_metrics: Any, data: Data, portfolio: Portfolio) -> list[str]:
    return [
        f"{p.account_id}: {result_metrics[p.account_id]} != {data.expected[p.account_id]}"
        for p in portfolio.profiles
        if result_metrics[p.account_id] != data.expected[p.account_id]
    ]


# --------------------------------------------------------------------------------------------
# End to end


def test_every_account_of_a_250_account_portfolio_gets_the_expected_metrics(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with VendorServer(App(data, settings)) as server:
        looker = extractor(server, settings, session, portfolio)
        result = looker.extract(portfolio.accounts)
    assert mismatches(result.metrics, data, portfolio) == []
    assert set(result.metrics) == {p.account_id for p in portfolio.profiles}
    assert result.notes == PERIOD_NOTES  # nothing else to say: no truncation, no duplicates
    assert result.incomplete == () and not result.degraded
    assert looker.provides == {m for values in data.expected.values() for m in values}
    assert result.accounts_with_data == sum(1 for p in portfolio.profiles if p.has("looker"))


def test_each_look_is_run_exactly_once_for_the_period_after_one_login(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with VendorServer(App(data, settings)) as server:
        looker = extractor(server, settings, session, portfolio)
        result = looker.extract(portfolio.accounts)
        stats = dict(server.stats)
    assert stats == {
        LOGIN: 1,
        **{look_path(look.id): 1 for look in settings.looks},
        INLINE: 4,
    }
    # 1 login + 4 Looks × 2 (the saved query read, then run with the period's filter).
    assert result.requests == looker.requests_made == data.minimum_requests(settings) == 9


def test_a_look_without_date_field_is_run_once_as_saved_after_one_login(
    data: Data,
    settings: Settings,
    saved_looks: Settings,
    portfolio: Portfolio,
    session: requests.Session,
) -> None:
    with VendorServer(App(data, settings)) as server:
        looker = extractor(server, saved_looks, session, portfolio)
        result = looker.extract(portfolio.accounts)
        stats = dict(server.stats)
    assert stats == {LOGIN: 1, **{run_path(look.id): 1 for look in settings.looks}}
    # 1 login + 4 Looks × 1 run as saved.
    assert result.requests == looker.requests_made == data.minimum_requests(saved_looks) == 5
    assert result.notes == () and result.window is None
    assert mismatches(result.metrics, data, portfolio) == []


def test_a_look_bigger_than_lookers_5000_row_default_is_fetched_whole(
    settings: Settings, session: requests.Session
) -> None:
    big_portfolio = build_portfolio(2000, seed=7)
    big = generate(big_portfolio, settings)
    assert len(big.looks["103"]) > 5000
    with VendorServer(App(big, settings)) as server:
        result = extractor(server, settings, session, big_portfolio).extract(big_portfolio.accounts)
        stats = dict(server.stats)
    # One inline run per Look (no paging), 103's more than 5,000 rows included.
    assert stats[look_path("103")] == 1 and stats[INLINE] == 4
    assert result.notes == PERIOD_NOTES and result.incomplete == ()
    assert mismatches(result.metrics, big, big_portfolio) == []


def test_a_configured_limit_that_is_reached_is_reported_as_truncation(
    data: Data,
    settings: Settings,
    portfolio: Portfolio,
    session: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = with_looks(settings, **{"103": {"limit": 100}})
    with VendorServer(App(data, limited)) as server, caplog.at_level(logging.WARNING):
        result = extractor(server, limited, session, portfolio).extract(portfolio.accounts)
    (truncated,) = result.incomplete
    assert "Look 103" in truncated and "truncated" in truncated
    assert result.notes == (*PERIOD_NOTES, truncated)
    assert any("truncated" in record.getMessage() for record in caplog.records)
    seen = {row["integrations.customer_id"] for row in data.looks["103"][:100]}
    for profile in portfolio.profiles:
        value = result.metrics[profile.account_id]["active_integrations"]
        if profile.account.looker_customer_id not in seen:
            # Absent from a truncated Look proves nothing: no value, never a misleading 0.
            assert value is None
    # The other Looks were complete and are unaffected.
    for profile in portfolio.profiles:
        got = result.metrics[profile.account_id]
        assert got["active_user_pct"] == data.expected[profile.account_id]["active_user_pct"]


# --------------------------------------------------------------------------------------------
# Authentication


def test_an_expired_token_is_replaced_by_one_new_login_and_the_run_completes(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    # Deterministic whatever the threads do: the token serves the first 7 of the 8 Look
    # requests to arrive (4 saved-query reads, 4 inline runs), so exactly one (the last to
    # arrive, an inline run: each Look's run follows its read) is refused; it logs in again and
    # runs on the new token. (An expiry before the last request made the count depend on how
    # many were in flight when the token expired: the old, flaky version of this test.)
    assert len(settings.looks) == 4
    with VendorServer(App(data, settings), faults=Faults(token_expiry_after=7)) as server:
        result = extractor(server, settings, session, portfolio).extract(portfolio.accounts)
        stats = dict(server.stats)
    assert stats[LOGIN] == 2
    assert stats[INLINE] == 4 + 1  # every Look's run once, plus the one refused
    runs = sum(count for endpoint, count in stats.items() if endpoint != LOGIN)
    assert runs == 4 * 2 + 1  # every Look's two requests, plus the one refused
    assert sum(stats.values()) == result.requests == 2 + 9
    assert mismatches(result.metrics, data, portfolio) == []


def test_an_expired_token_is_replaced_for_looks_run_as_saved(
    data: Data,
    settings: Settings,
    saved_looks: Settings,
    portfolio: Portfolio,
    session: requests.Session,
) -> None:
    # The token serves the first 3 of the 4 Look runs; the last to arrive is refused and rerun.
    with VendorServer(App(data, settings), faults=Faults(token_expiry_after=3)) as server:
        result = extractor(server, saved_looks, session, portfolio).extract(portfolio.accounts)
        stats = dict(server.stats)
    assert stats[LOGIN] == 2
    runs = sum(count for endpoint, count in stats.items() if endpoint != LOGIN)
    assert runs == 4 + 1  # every Look once, plus the one refused run
    assert sum(stats.values()) == result.requests == 7
    assert mismatches(result.metrics, data, portfolio) == []


def test_a_token_refused_again_after_the_relogin_fails_naming_the_credentials(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    one_look = Settings.model_validate(
        settings.model_dump(mode="python") | {"looks": [settings.looks[0].model_dump()]}
    )
    with VendorServer(App(data, one_look), faults=Faults(token_expiry_after=0)) as server:
        with pytest.raises(AuthenticationError) as raised:
            extractor(server, one_look, session, portfolio).extract(portfolio.accounts)
        stats = dict(server.stats)
    # The saved query's read is refused, the new token is refused too: no inline run follows.
    assert stats == {LOGIN: 2, look_path("101"): 2}
    assert "LOOKER_CLIENT_ID" in str(raised.value)


@pytest.mark.parametrize(
    ("faults", "env"),
    [(Faults(auth_rejected=True), {}), (Faults(), {"LOOKER_CLIENT_SECRET": "not-the-secret"})],
    ids=["auth rejected", "wrong secret"],
)
def test_rejected_credentials_raise_an_error_naming_the_variables_to_check(
    data: Data,
    settings: Settings,
    portfolio: Portfolio,
    session: requests.Session,
    faults: Faults,
    env: dict[str, str],
) -> None:
    with VendorServer(App(data, settings), faults=faults) as server:
        with pytest.raises(AuthenticationError) as raised:
            extractor(server, settings, session, portfolio, **env).extract(portfolio.accounts)
        stats = dict(server.stats)
    message = str(raised.value)
    assert message.startswith("looker: POST /api/4.0/login")
    assert "LOOKER_CLIENT_ID" in message and "LOOKER_CLIENT_SECRET" in message
    assert CLIENT_SECRET not in message and "not-the-secret" not in message
    assert stats == {LOGIN: 1}  # no retries, no Look runs


def test_credentials_never_appear_in_the_log(
    data: Data,
    settings: Settings,
    portfolio: Portfolio,
    session: requests.Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        # The token expires before the last of the 8 Look requests (see the expired-token test).
        VendorServer(App(data, settings), faults=Faults(token_expiry_after=7)) as server,
        caplog.at_level(logging.DEBUG),
    ):
        looker = extractor(server, settings, session, portfolio)
        looker.extract(portfolio.accounts)
    assert "refused" in caplog.text
    assert CLIENT_SECRET not in caplog.text
    assert CLIENT_SECRET not in repr(looker.__dict__)


# --------------------------------------------------------------------------------------------
# Faults


def test_a_malformed_body_raises_a_source_error_naming_looker_and_the_endpoint(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    malformed = Faults(malformed=True)
    with (
        VendorServer(App(data, settings), faults=malformed) as server,
        pytest.raises(SourceError) as raised,
    ):
        extractor(server, settings, session, portfolio).extract(portfolio.accounts)
    assert str(raised.value).startswith("looker: POST /api/4.0/login: malformed JSON")


def test_a_malformed_look_result_names_the_look_endpoint(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    with VendorServer(App(data, settings)) as server:
        looker = extractor(server, settings, session, portfolio)
        looker.extract(portfolio.accounts[:1])  # logs in while the server is healthy
        server.faults.malformed = True
        with pytest.raises(SourceError) as raised:
            looker.run_look(settings.looks[0])
    assert str(raised.value).startswith("looker: GET /api/4.0/looks/101/run/json: malformed")


def test_a_429_storm_is_waited_out_and_the_run_completes(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    storm = Faults(storm_429=3, storm_retry_after=1.0)
    with VendorServer(App(data, settings), faults=Faults(**vars(storm))) as server:
        started = time.monotonic()
        result = extractor(server, settings, session, portfolio).extract(portfolio.accounts)
        elapsed = time.monotonic() - started
    assert elapsed >= 3 * storm.storm_retry_after  # three 429s, each asking for 1 s
    assert result.requests == 9 + 3  # 1 login + 4 Looks × 2, and the three refused
    assert mismatches(result.metrics, data, portfolio) == []


def test_intermittent_5xx_errors_are_retried_and_the_run_completes(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    flaky = Faults(error_rate_5xx=0.4)
    with VendorServer(App(data, settings), faults=flaky, seed=3) as server:
        result = extractor(server, settings, session, portfolio).extract(portfolio.accounts)
    assert result.requests > 9  # the minimum (1 login + 4 Looks × 2) and some retries
    assert mismatches(result.metrics, data, portfolio) == []


@pytest.mark.parametrize(
    ("date_field", "endpoint"),
    [
        ("automations.activity_month", "GET /api/4.0/looks/999"),  # its saved query's read
        (None, "GET /api/4.0/looks/999/run/json"),  # run as saved
    ],
    ids=["run for the period", "run as saved"],
)
def test_an_unknown_look_fails_fast_naming_it(
    data: Data,
    settings: Settings,
    portfolio: Portfolio,
    session: requests.Session,
    date_field: str | None,
    endpoint: str,
) -> None:
    wrong = with_looks(settings, **{"104": {"id": "999", "date_field": date_field}})
    with VendorServer(App(data, settings)) as server:
        with pytest.raises(SourceError) as raised:
            extractor(server, wrong, session, portfolio).extract(portfolio.accounts)
        stats = dict(server.stats)
    assert f"{endpoint}: HTTP 404" in str(raised.value)
    assert stats[endpoint] == 1


def test_a_field_missing_from_a_look_is_reported_with_the_fields_it_has(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    typo = with_looks(
        settings,
        **{"104": {"metrics": {"automation_active": {"transform": "presence", "field": "a.b"}}}},
    )
    with VendorServer(App(data, settings)) as server, pytest.raises(SourceError) as raised:
        extractor(server, typo, session, portfolio).extract(portfolio.accounts)
    assert "Look 104" in str(raised.value) and "no field a.b" in str(raised.value)
    assert "automations.active_rule_count" in str(raised.value)


@pytest.mark.parametrize(
    ("dated", "endpoint"),
    [(True, "POST /api/4.0/queries/run/json"), (False, "GET /api/4.0/looks/101/run/json")],
    ids=["run for the period", "run as saved"],
)
def test_a_query_error_row_from_looker_fails_the_source(
    data: Data,
    settings: Settings,
    saved_looks: Settings,
    portfolio: Portfolio,
    session: requests.Session,
    dated: bool,
    endpoint: str,
) -> None:
    broken = Data(
        looks=data.looks | {"101": [{"looker_error": "Unknown field account_usage.seats"}]},
        expected=data.expected,
        views=data.views,
    )
    used = settings if dated else saved_looks
    with VendorServer(App(broken, settings)) as server, pytest.raises(SourceError) as raised:
        extractor(server, used, session, portfolio).extract(portfolio.accounts)
    assert str(raised.value) == (
        f"looker: {endpoint}: Look 101 (account usage): Unknown field account_usage.seats"
    )


def test_duplicate_rows_for_one_customer_are_reported(
    data: Data, settings: Settings, portfolio: Portfolio, session: requests.Session
) -> None:
    first = data.looks["101"][0]
    doubled = Data(
        looks=data.looks
        | {"101": [*data.looks["101"], first | {"account_usage.seats_licensed": 1}]},
        expected=data.expected,
        views=data.views,
    )
    with VendorServer(App(doubled, settings)) as server:
        result = extractor(server, settings, session, portfolio).extract(portfolio.accounts)
    (duplicates,) = [note for note in result.notes if note not in PERIOD_NOTES]
    assert "1 customers have more than one row" in duplicates
    assert len(result.notes) == 1 + 4  # and each Look's filter for the period
    assert mismatches(result.metrics, data, portfolio) == []  # the first row is the one used


# --------------------------------------------------------------------------------------------
# Activation, settings and transforms


def test_the_source_is_active_only_when_all_three_variables_are_set(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    full = environment("http://127.0.0.1:9", "")
    assert from_env(settings, {}) is None
    with caplog.at_level(logging.WARNING):
        assert from_env(settings, full | {"LOOKER_BASE_URL": ""}) is None
    assert "LOOKER_BASE_URL" in caplog.text
    with requests.Session() as http:
        plain = from_env(settings, full, session=http)
        with_api_path = full | {"LOOKER_BASE_URL": "https://x.example/api/4.0/"}
        explicit = from_env(settings, with_api_path, session=http)
    assert isinstance(plain, LookerExtractor) and isinstance(explicit, LookerExtractor)
    assert plain.client.base_url == "http://127.0.0.1:9/api/4.0"
    assert explicit.client.base_url == "https://x.example/api/4.0"


def test_no_looks_configured_means_no_requests_and_a_note() -> None:
    with requests.Session() as http:
        found = from_env(Settings(), environment("http://127.0.0.1:9", ""), session=http)
        assert found is not None
        result = found.extract(build_portfolio(5).accounts)
    assert result.requests == 0
    assert result.notes == ("no Looks configured (sources.yaml looker.looks)",)


def problems_for(section: object) -> list[str]:
    found: list[ConfigProblem] = []
    parse_sources(
        {"looker": section},
        lambda where, what: found.append(ConfigProblem("sources.yaml", where, what)),
        ("looker",),
    )
    return [str(p) for p in found]


def look(**metrics: object) -> dict[str, object]:
    return {"id": 7, "customer_id_field": "usage.customer_id", "metrics": metrics}


def test_an_empty_looker_section_is_valid() -> None:
    assert problems_for({}) == []
    assert problems_for(None) == []


def test_an_unknown_transform_is_reported_with_its_path() -> None:
    found = problems_for({"looks": [look(active_user_pct={"transform": "median", "field": "u.x"})]})
    assert len(found) == 1
    assert found[0].startswith("sources.yaml: looker.looks[0].metrics.active_user_pct: ")
    assert "'median'" in found[0] and "'presence'" in found[0]


@pytest.mark.parametrize(
    ("section", "where", "words"),
    [
        (
            {"looks": [look(m={"transform": "percent", "field": "u.f", "numerator": "u.n"})]},
            "looker.looks[0].metrics.m.percent",
            "not both",
        ),
        (
            {"looks": [look(m={"transform": "ratio", "numerator": "u.n"})]},
            "looker.looks[0].metrics.m.ratio.denominator",
            "required",
        ),
        (
            {"looks": [look(m={"transform": "field", "field": "u.x; drop"})]},
            "looker.looks[0].metrics.m.field.field",
            "pattern",
        ),
        ({"looks": [look(m={"transform": "sum", "field": "u.x"}) | {"limit": 0}]}, "limit", "-1"),
        ({"looks": [look()]}, "looker.looks[0].metrics", "at least 1"),
        (
            {"looks": [look(m={"transform": "sum", "field": "u.x"})] * 2},
            "looker.looks",
            "listed twice",
        ),
        (
            {"looks": [look(m={"transform": "sum", "field": "u.x"}) | {"id": "../x"}]},
            "id",
            "pattern",
        ),
        ({"looks": [], "colour": "blue"}, "looker.colour", "Extra inputs"),
    ],
    ids=[
        "percent in two forms",
        "ratio without denominator",
        "field name that is not view.field",
        "zero limit",
        "no metrics",
        "Look listed twice",
        "Look id with a slash",
        "unknown key",
    ],
)
def test_bad_look_settings_are_reported_with_their_path(
    section: object, where: str, words: str
) -> None:
    found = problems_for(section)
    assert any(where in problem and words in problem for problem in found), found


def test_a_metric_from_two_looks_is_refused() -> None:
    twice = {
        "looks": [
            look(m={"transform": "sum", "field": "u.x"}),
            look(m={"transform": "sum", "field": "u.y"}) | {"id": 8},
        ]
    }
    found = problems_for(twice)
    assert any("metric m comes from both Look 7 and Look 8" in p for p in found), found


@pytest.mark.parametrize(
    ("transform", "rows", "known", "complete", "expected"),
    [
        (PresenceTransform(transform="presence", field="a.n"), [{"a.n": 2}], True, True, 1),
        (PresenceTransform(transform="presence", field="a.n"), [{"a.n": 0}], True, True, 0),
        (PresenceTransform(transform="presence", field="a.n"), [], True, True, 0),
        (PresenceTransform(transform="presence", field="a.n"), [], False, True, None),
        (PresenceTransform(transform="presence", field="a.n"), [], True, False, None),
        (SumTransform(transform="sum", field="a.n"), [{"a.n": 2}, {"a.n": 1.5}], True, True, 3.5),
        (SumTransform(transform="sum", field="a.n"), [], True, True, 0),
        (SumTransform(transform="sum", field="a.n"), [{"a.n": None}], True, True, None),
        (SumTransform(transform="sum", field="a.n"), [], False, True, None),
    ],
)
def test_presence_and_sum_tell_no_rows_from_unknown_customers(
    transform: Any, rows: list[dict[str, Any]], known: bool, complete: bool, expected: Any
) -> None:
    value = customer_value(transform, rows, known=known, complete=complete)
    assert value == (None if expected is None else Fraction(Decimal(str(expected))))


@pytest.mark.parametrize(
    ("spec", "row", "expected"),
    [
        ({"transform": "field", "field": "a.x"}, {"a.x": 64.2}, "64.2"),
        ({"transform": "field", "field": "a.x"}, {"a.x": None}, None),
        (
            {"transform": "ratio", "numerator": "a.n", "denominator": "a.d"},
            {"a.n": 2, "a.d": 3},
            "0.6667",
        ),
        (
            {"transform": "ratio", "numerator": "a.n", "denominator": "a.d"},
            {"a.n": 2, "a.d": 0},
            None,
        ),
        (
            {"transform": "ratio", "numerator": "a.n", "denominator": "a.d"},
            {"a.n": 2, "a.d": None},
            None,
        ),
        ({"transform": "percent", "field": "a.f"}, {"a.f": 0.4213}, "42.13"),
        (
            {"transform": "percent", "numerator": "a.n", "denominator": "a.d"},
            {"a.n": 1, "a.d": 8},
            "12.5",
        ),
        (
            {"transform": "change_pct", "current": "a.now", "previous": "a.then"},
            {"a.now": 90, "a.then": 120},
            "-25",
        ),
        (
            {
                "transform": "change_pct",
                "current": {"numerator": "a.s", "denominator": "a.u"},
                "previous": {"numerator": "a.ps", "denominator": "a.pu"},
            },
            {"a.s": 110, "a.u": 10, "a.ps": 100, "a.pu": 10},
            "10",
        ),
        (
            {"transform": "change_pct", "current": "a.now", "previous": "a.then"},
            {"a.now": 5, "a.then": 0},
            None,
        ),
    ],
)
def test_one_row_transforms_compute_exactly_and_round_once(
    spec: dict[str, Any], row: dict[str, Any], expected: str | None
) -> None:
    from health_score.sources.looker import to_metric

    settings = Settings.model_validate({"looks": [look(m=spec)]})
    transform = settings.looks[0].metrics["m"]
    value = to_metric(customer_value(transform, [row], known=True, complete=True))
    assert value == (None if expected is None else Decimal(expected))


# --------------------------------------------------------------------------------------------
# A Look that reaches its row limit (issue 11: "ok is a promise")

#: Two hand-made Looks: integrations (a sum, limit 3) and automations (a presence, complete).
TRUNCATION_SETTINGS = {
    "looks": [
        {
            "id": "103",
            "customer_id_field": "integrations.customer_id",
            "limit": 3,
            "metrics": {
                "active_integrations": {
                    "transform": "sum",
                    "field": "integrations.active_count",
                }
            },
        },
        {
            "id": "104",
            "customer_id_field": "automations.customer_id",
            "metrics": {
                "automation_active": {
                    "transform": "presence",
                    "field": "automations.active_rule_count",
                }
            },
        },
    ]
}


def _integration(customer: str, count: int) -> dict[str, Any]:
    return {"integrations.customer_id": customer, "integrations.active_count": count}


def _automation(customer: str, rules: int) -> dict[str, Any]:
    return {"automations.customer_id": customer, "automations.active_rule_count": rules}


AUTOMATIONS = [
    _automation("C0", 1),
    _automation("C1", 0),
    _automation("C2", 3),
    _automation("C3", 2),
]


def _accounts() -> list[Any]:
    from health_score.records import Account

    return [
        Account(f"acct-{c}", f"Customer {c}", "paid", looker_customer_id=c)
        for c in ("C0", "C1", "C2", "C3", "C4")
    ]


def _truncated_run(integrations: list[dict[str, Any]], session: requests.Session) -> Any:
    settings = Settings.model_validate(TRUNCATION_SETTINGS)
    data = Data(
        looks={"103": integrations, "104": AUTOMATIONS},
        expected={},
        views={"103": "integrations", "104": "automations"},
    )
    with VendorServer(App(data, settings)) as server:
        found = from_env(settings, environment(server.url, ""), session=session)
        assert isinstance(found, LookerExtractor)
        return found.extract(_accounts())


def test_a_look_cut_at_its_row_limit_makes_accounts_beyond_the_cut_unavailable(
    session: requests.Session,
) -> None:
    # In customer order; limit 3 returns C1:2, C1:1, C2:4 (C2:1 and C3:5 are cut off).
    rows = [
        _integration("C1", 2),
        _integration("C1", 1),
        _integration("C2", 4),
        _integration("C2", 1),
        _integration("C3", 5),
    ]
    result = _truncated_run(rows, session)
    got = {
        account: (values["active_integrations"], values["automation_active"])
        for account, values in result.metrics.items()
    }
    assert got == {
        "acct-C0": (Decimal(0), Decimal(1)),  # before the cut and absent: really none
        "acct-C1": (Decimal(3), Decimal(0)),  # before the cut: all its rows (2 + 1)
        "acct-C2": (None, Decimal(1)),  # at the cut: 4 of 5 would be a lie
        "acct-C3": (None, Decimal(1)),  # beyond the cut
        "acct-C4": (None, None),  # beyond, and perhaps known to Looker only there
    }
    assert dict(result.unavailable) == {
        "acct-C2": {"active_integrations"},
        "acct-C3": {"active_integrations"},
        "acct-C4": {"active_integrations", "automation_active"},
    }
    assert result.degraded
    assert result.incomplete == (
        "Look 103 reached its row limit, its configured limit of 3 rows: results are truncated "
        "and its metrics are unavailable for 3 account(s) beyond customer C2 (the Look is in "
        "customer order); raise or remove `limit` in sources.yaml",
    )
    assert result.notes == result.incomplete


def test_a_truncated_look_whose_cut_cannot_be_located_is_unavailable_for_every_account(
    session: requests.Session,
) -> None:
    # Not in customer order: limit 3 returns C2:4, C1:2, C3:5, and nothing tells which rows of
    # which customers were cut (C1:1 was).
    rows = [
        _integration("C2", 4),
        _integration("C1", 2),
        _integration("C3", 5),
        _integration("C1", 1),
    ]
    result = _truncated_run(rows, session)
    assert {a: v["active_integrations"] for a, v in result.metrics.items()} == dict.fromkeys(
        (f"acct-C{n}" for n in range(5)), None
    )
    assert {a: v["automation_active"] for a, v in result.metrics.items()} == {
        "acct-C0": Decimal(1),
        "acct-C1": Decimal(0),
        "acct-C2": Decimal(1),
        "acct-C3": Decimal(1),
        "acct-C4": None,
    }
    assert {a: set(m) for a, m in result.unavailable.items()} == {
        **{f"acct-C{n}": {"active_integrations"} for n in range(4)},
        "acct-C4": {"active_integrations", "automation_active"},
    }
    assert len(result.incomplete) == 1
    assert (
        "unavailable for 5 account(s) of the Look (its rows are not in customer order"
        in (result.incomplete[0])
    )


def test_a_look_just_under_its_limit_is_complete(session: requests.Session) -> None:
    result = _truncated_run([_integration("C1", 2), _integration("C3", 5)], session)
    assert not result.degraded and result.unavailable == {} and result.notes == ()
    assert result.metrics["acct-C4"]["active_integrations"] is None  # unknown to Looker
    assert result.metrics["acct-C0"]["active_integrations"] == Decimal(0)  # known, no rows


def test_looker_default_cap_of_5000_rows_truncates_a_look_that_asked_for_every_row(
    settings: Settings, session: requests.Session
) -> None:
    big_portfolio = build_portfolio(2000, seed=7)
    big = generate(big_portfolio, settings)
    rows = big.looks["103"]
    assert len(rows) > 5000
    last = rows[4999]["integrations.customer_id"]
    # An instance that caps every run at 5,000 rows (the sandbox's looker:limit fault).
    with VendorServer(App(big, settings), faults=Faults(row_limit=5000)) as server:
        result = extractor(server, settings, session, big_portfolio).extract(big_portfolio.accounts)
    assert result.degraded
    assert len(result.incomplete) == 1
    assert result.incomplete[0].startswith(
        "Look 103 (integrations) reached its row limit, Looker's default cap of 5,000 rows "
        "(asked for every row): results are truncated"
    )
    assert f"beyond customer {last} " in result.incomplete[0]
    for profile in big_portfolio.profiles:
        customer = profile.account.looker_customer_id
        value = result.metrics[profile.account_id]["active_integrations"]
        if customer is not None and customer < last and profile.has("looker"):
            assert value == big.expected[profile.account_id]["active_integrations"]
        elif customer is not None and customer >= last:
            assert value is None
            assert "active_integrations" in result.unavailable[profile.account_id]


@pytest.mark.parametrize(
    ("customers", "cut"),
    [
        (["C1", "C1", "C2"], Cut("C2")),
        (["C3", "C2", "C2"], Cut("C2", descending=True)),
        ([3, 10, 10, 11], Cut(Fraction(11))),  # numbers in numeric order (not "10" < "3")
        (["C1", "C1"], None),  # one customer: the order is not shown
        (["C2", "C1", "C3"], None),
        (["C1", None, "C2"], None),
    ],
)
def test_the_cut_of_a_truncated_look_is_located_only_in_customer_order(
    customers: list[Any], cut: Cut | None
) -> None:
    assert locate_cut(customers) == cut


def test_a_past_period_runs_no_look_without_date_field_and_marks_its_metrics_unavailable(
    server: VendorServer, saved_looks: Settings, portfolio: Portfolio
) -> None:
    """A saved Look answers for its own "last 30 days": 2026-09's data cannot come from it."""
    settings = saved_looks
    server.reset_stats()
    with requests.Session() as http:
        found = from_env(
            settings,
            environment(server.url, ""),
            session=http,
            as_of=datetime(2026, 10, 1, tzinfo=UTC),
            now=as_of(portfolio),  # 2026-11-01: 31 days later, beyond the 7 days of grace
        )
        assert isinstance(found, LookerExtractor)
        result = found.extract(portfolio.accounts)
    assert dict(server.stats) == {}  # not even a login
    names = sorted(settings.metric_names)
    assert result.degraded
    (note,) = result.notes
    assert note.startswith(
        "not reconstructable for a past period (as_of 2026-10-01 is more than 7 days before "
        "now): Look 101"
    )
    assert note.endswith(f"metrics unavailable: {', '.join(names)}")
    for account in portfolio.accounts:
        assert result.unavailable[account.account_id] == frozenset(names)
        assert all(v is None for v in result.metrics[account.account_id].values())


def test_the_month_just_ended_is_within_the_grace_days_and_runs_the_looks_as_saved(
    server: VendorServer, saved_looks: Settings, portfolio: Portfolio
) -> None:
    server.reset_stats()
    with requests.Session() as http:
        found = from_env(
            saved_looks,
            environment(server.url, ""),
            session=http,
            as_of=datetime(2026, 10, 25, tzinfo=UTC),
            now=as_of(portfolio),  # 7 days later: still the current state
        )
        assert isinstance(found, LookerExtractor)
        assert not found.past
        result = found.extract(portfolio.accounts)
    assert not result.degraded and result.accounts_with_data > 0
    assert dict(server.stats) == {LOGIN: 1, **{run_path(look.id): 1 for look in saved_looks.looks}}
