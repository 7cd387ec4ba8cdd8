"""The Intercom extractor against the real loopback stand-in: exact metrics, paging, faults."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from datetime import time as clock
from decimal import Decimal
from typing import Any

import pydantic
import pytest
import requests
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from health_score.sources import intercom as extractor
from health_score.sources.base import SourceResult
from health_score.sources.http import AuthenticationError, HttpPolicy, SourceClient, SourceError
from health_score.sources.intercom import extractor as intercom_http
from health_score_sandbox import intercom
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.server import Faults, Knobs, Request, VendorServer
from tests.conftest import SHARED, shared_file
from tests.intercom_support import company

SPEC = SHARED / "contracts" / "intercom"
SPEC_FILE = SPEC / "api.intercom.io.2.16.yaml"
FAST = HttpPolicy(wait_initial=0.02, wait_max=0.1, wait_jitter=0.02)

VENDOR = "intercom"  # for the shared stand-in fixtures in conftest.py


def as_of(portfolio: Portfolio) -> datetime:
    return datetime.combine(portfolio.as_of, clock(), UTC)


@pytest.fixture(scope="module")
def small() -> Portfolio:
    return build_portfolio(40, seed=3)


@pytest.fixture(scope="module")
def small_data(small: Portfolio, settings: extractor.Settings) -> intercom.Data:
    return intercom.generate(small, settings)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def extract(
    server: VendorServer,
    portfolio: Portfolio,
    settings: extractor.Settings,
    session: requests.Session,
    policy: HttpPolicy | None = None,
) -> SourceResult:
    env = intercom.environment(server.url, "")
    if policy is None:
        found = intercom_http.from_env(settings, env, session=session, as_of=as_of(portfolio))
        assert found is not None
        return found.extract(portfolio.accounts)
    client = SourceClient(
        "intercom",
        server.url,
        session=session,
        policy=policy,
        authenticate=lambda: {
            "Authorization": f"Bearer {intercom.TOKEN}",
            "Intercom-Version": "2.16",
        },
        credential_hint="INTERCOM_API_TOKEN",
    )
    chosen = intercom_http.IntercomExtractor(client, settings, as_of=as_of(portfolio))
    return chosen.extract(portfolio.accounts)


def mismatches(result: SourceResult, data: intercom.Data) -> list[str]:
    return [a for a, wanted in data.expected.items() if dict(result.metrics[a]) != wanted]


# -- exactness ----------------------------------------------------------------------------------


def test_metrics_equal_the_sandboxs_expectation_for_every_account_of_250(
    portfolio: Portfolio, data: intercom.Data, settings: extractor.Settings, http: requests.Session
) -> None:
    with VendorServer(intercom.App(data, settings)) as server:
        result = extract(server, portfolio, settings, http)
        served = server.total_requests
    assert set(result.metrics) == {p.account_id for p in portfolio.profiles}
    assert mismatches(result, data) == []
    assert result.requests == served
    assert served <= 1.2 * data.minimum_requests(settings)


def test_a_mapped_company_without_conversations_has_volume_0_and_no_times_or_rates(
    portfolio: Portfolio, data: intercom.Data, settings: extractor.Settings, http: requests.Session
) -> None:
    with VendorServer(intercom.App(data, settings)) as server:
        result = extract(server, portfolio, settings, http)
    empty = [
        p.account_id
        for p in portfolio.profiles
        if p.account.intercom_company_id is not None and not p.has("intercom")
    ]
    unmapped = [p.account_id for p in portfolio.profiles if p.account.intercom_company_id is None]
    assert empty and unmapped
    for account_id in empty:
        assert result.metrics[account_id] == {
            "p1_p2_volume": Decimal(0),
            **dict.fromkeys(extractor.METRICS[1:]),
        }
    for account_id in unmapped:
        assert result.metrics[account_id] == dict.fromkeys(extractor.METRICS)


def test_intercoms_own_priority_field_can_define_p1_p2(
    portfolio: Portfolio, data: intercom.Data, settings: extractor.Settings, http: requests.Session
) -> None:
    builtin = settings.model_copy(
        update={"priority_attribute": "priority", "p1_p2_values": ("urgent", "HIGH")}
    )
    with VendorServer(intercom.App(data, settings)) as server:
        result = extract(server, portfolio, builtin, http)
    for account_id, wanted in data.expected.items():
        assert result.metrics[account_id]["p1_p2_volume"] == wanted["p1_p2_volume"]


# -- the requests it makes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract() -> OpenAPI:
    shared_file(SPEC_FILE)
    with SPEC_FILE.open(encoding="utf-8") as handle:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # safe, and fast on 1.3 MB
        document = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    document["servers"] = [
        {"url": "http://127.0.0.1:{port}", "variables": {"port": {"default": "80"}}},
        *document["servers"],
    ]
    # The file fails openapi-spec-validator (an unresolved path parameter elsewhere).
    return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))


@pytest.mark.parametrize(
    ("lookups", "company_path"), [(20, "/companies/{id}"), (0, "/companies/scroll")]
)
def test_every_request_and_response_of_a_run_validates_against_the_2_16_contract(
    contract: OpenAPI,
    small: Portfolio,
    small_data: intercom.Data,
    settings: extractor.Settings,
    lookups: int,
    company_path: str,
) -> None:
    """Fallback companies are fetched by id when few, else learned from one scroll."""
    chosen = settings.model_copy(update={"company_lookups_max": lookups})
    seen: list[requests.Response] = []
    with requests.Session() as session:
        session.hooks["response"].append(lambda r, *args, **kwargs: seen.append(r))
        with VendorServer(intercom.App(small_data, settings)) as server:
            result = extract(server, small, chosen, session)
            assert set(server.stats) == {
                "POST /conversations/search",
                "POST /contacts/search",
                f"GET {company_path}",
            }
    assert mismatches(result, small_data) == []
    for response in seen:
        request = RequestsOpenAPIRequest(response.request)
        contract.validate_request(request)
        contract.validate_response(request, RequestsOpenAPIResponse(response))
        assert response.request.headers["Intercom-Version"] == "2.16"
        assert response.request.headers["Authorization"] == f"Bearer {intercom.TOKEN}"


def test_contacts_are_looked_up_in_batches_not_per_conversation(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    start, end = intercom.window_of(small.as_of, settings.lookback_days)
    orphans = [c for c in small_data.conversations if start <= c.created_at < end and not c.company]
    contacts = {c.contact for c in orphans}
    assert len(orphans) > len(contacts) > 10
    batched = settings.model_copy(update={"contacts_per_search": 10})
    with VendorServer(intercom.App(small_data, settings)) as server, requests.Session() as http:
        result = extract(server, small, batched, http)
        calls = server.stats["POST /contacts/search"]
    assert calls == math.ceil(len(contacts) / 10)
    assert mismatches(result, small_data) == []


def test_a_long_window_is_fetched_as_concurrent_slices_and_a_short_one_in_one_search(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    start, end = intercom.window_of(small.as_of, settings.lookback_days)
    in_window = sum(1 for c in small_data.conversations if start <= c.created_at < end)
    counts: dict[int | None, int] = {}
    totals: dict[int | None, int] = {}
    seconds: dict[int | None, float] = {}
    knobs = Knobs(latency_ms=100)
    for slice_days in (None, 3):
        chosen = settings.model_copy(update={"slice_days": slice_days})
        with (
            VendorServer(intercom.App(small_data, settings), knobs=knobs) as server,
            requests.Session() as http,
        ):
            started = time.monotonic()
            result = extract(server, small, chosen, http)
            seconds[slice_days] = time.monotonic() - started
            counts[slice_days] = server.stats["POST /conversations/search"]
            totals[slice_days] = server.total_requests
        assert mismatches(result, small_data) == []
    assert counts[None] == math.ceil(in_window / 150)
    assert counts[3] >= 10  # a 30-day window in 3-day slices: at least one page each
    # One request at a time, the sliced run would take at least totals[3] x 0.1 s.
    assert seconds[3] < 0.8 * totals[3] * 0.1


def test_time_slices_cover_the_window_contiguously_in_equal_parts() -> None:
    slices = extractor.time_slices(0, 30 * 86_400, 7)
    assert len(slices) == 5
    assert slices[0][0] == 0 and slices[-1][1] == 30 * 86_400
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
    assert {hi - lo for lo, hi in slices} == {6 * 86_400}
    assert extractor.time_slices(0, 86_400, 7) == [(0, 86_400)]
    assert extractor.time_slices(0, 30 * 86_400, None) == [(0, 30 * 86_400)]


# -- faults -------------------------------------------------------------------------------------


def test_a_429_storm_completes_and_waits_for_the_reset_time(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    """Four slices start at once and all meet a 429; nothing succeeds before the reset."""
    seen: list[tuple[float, requests.Response]] = []
    faults = Faults(storm_429=4, storm_retry_after=1.0)
    with requests.Session() as session:
        session.hooks["response"].append(lambda r, *a, **k: seen.append((time.time(), r)))
        with VendorServer(intercom.App(small_data, settings), faults=faults) as server:
            started = time.monotonic()
            result = extract(server, small, settings, session)
            elapsed = time.monotonic() - started
    assert mismatches(result, small_data) == []
    limited = [r for _, r in seen if r.status_code == 429]
    assert len(limited) == 4
    reset = min(int(r.headers["X-RateLimit-Reset"]) for r in limited)
    assert all(arrived >= reset - 0.05 for arrived, r in seen if r.status_code == 200)
    assert 1.0 <= elapsed < 5.0


def test_an_intermittent_5xx_rate_still_completes_with_exact_metrics(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    faults = Faults(error_rate_5xx=0.3)
    with (
        VendorServer(intercom.App(small_data, settings), faults=faults, seed=5) as server,
        requests.Session() as http,
    ):
        result = extract(server, small, settings, http, policy=FAST)
    assert mismatches(result, small_data) == []
    assert result.requests > small_data.minimum_requests(settings)  # the retries were counted


def test_a_malformed_body_fails_naming_intercom_and_the_endpoint(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    faults = Faults(malformed=True)
    with (
        VendorServer(intercom.App(small_data, settings), faults=faults) as server,
        requests.Session() as http,
        pytest.raises(SourceError) as failure,
    ):
        extract(server, small, settings, http)
    assert str(failure.value).startswith("intercom: POST /conversations/search: malformed JSON")


def test_rejected_credentials_name_the_variable_to_check_and_never_the_token(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    faults = Faults(auth_rejected=True)
    with (
        VendorServer(intercom.App(small_data, settings), faults=faults) as server,
        requests.Session() as http,
        pytest.raises(AuthenticationError) as failure,
    ):
        extract(server, small, settings, http)
    message = str(failure.value)
    assert "INTERCOM_API_TOKEN" in message and "intercom" in message
    assert intercom.TOKEN not in message


def test_a_server_that_repeats_a_cursor_is_refused_as_a_loop(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    class StuckCursor(intercom.App):
        """Answers every page as the first and always offers the same next cursor."""

        def _page(
            self, key: str, body: Mapping[str, Any], kind: str, compute: Callable[[], list[Any]]
        ) -> tuple[list[Any], int, dict[str, Any]]:
            first = {**body, "pagination": {"per_page": 150}}
            chunk, total, pages = super()._page(key, first, kind, compute)
            pages["next"] = {"per_page": 150, "starting_after": "stuck"}
            return chunk, total, pages

    with (
        VendorServer(StuckCursor(small_data, settings)) as server,
        requests.Session() as http,
        pytest.raises(SourceError, match="loop detected") as failure,
    ):
        extract(server, small, settings, http)
    assert failure.value.source == "intercom"


def test_a_page_without_the_conversations_list_is_a_source_error(
    small: Portfolio, small_data: intercom.Data, settings: extractor.Settings
) -> None:
    class Shapeless(intercom.App):
        def _search_conversations(self, request: Request, with_company: bool) -> dict[str, Any]:
            return {"type": "conversation.list", "total_count": 0}

    with (
        VendorServer(Shapeless(small_data, settings)) as server,
        requests.Session() as http,
        pytest.raises(SourceError, match="no 'conversations' list"),
    ):
        extract(server, small, settings, http)


# -- activation and settings --------------------------------------------------------------------


def test_the_source_is_inactive_without_a_token(settings: extractor.Settings) -> None:
    assert intercom_http.from_env(settings, {}) is None
    assert intercom_http.from_env(settings, {"INTERCOM_API_TOKEN": "  "}) is None
    active = intercom_http.from_env(settings, {"INTERCOM_API_TOKEN": "t"}, as_of=datetime.now(UTC))
    assert active is not None
    assert active.client.base_url == "https://api.intercom.io"
    assert active.provides == frozenset(extractor.METRICS)


def test_an_empty_section_is_valid_and_bad_rules_are_refused() -> None:
    assert extractor.Settings.model_validate({}).lookback_days == 30
    bad: tuple[dict[str, Any], ...] = (
        {"priority_attribute": "statistics.priority"},
        {"p1_p2_values": []},
        {"escalation_attribute": "custom_attributes.Escalation level"},
        {"page_size": 151},
        {"lookback": 30},
    )
    for section in bad:
        with pytest.raises(pydantic.ValidationError):
            extractor.Settings.model_validate(section)


def test_the_window_ends_at_as_of_and_needs_a_timezone(settings: extractor.Settings) -> None:
    instant = datetime(2026, 11, 1, tzinfo=UTC)
    found = intercom_http.from_env(settings, {"INTERCOM_API_TOKEN": "t"}, as_of=instant)
    assert found is not None
    assert found.window == (int(instant.timestamp()) - 30 * 86_400, int(instant.timestamp()))
    with pytest.raises(ValueError, match="timezone"):
        intercom_http.from_env(settings, {"INTERCOM_API_TOKEN": "t"}, as_of=datetime(2026, 11, 1))


# --------------------------------------------------------------------------------------------
# Issue 11: a conversation's own company in any shape; outbound conversations not measured

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
NOON = int(AS_OF.timestamp()) - 10 * 86_400  # inside the 30-day window


def _company(key: str) -> intercom.Company:
    return company(
        f"65a0000000000000000000{key}", f"cmp_{key}", f"Company {key}", NOON - 400 * 86_400
    )


def _contact(key: str, *companies: intercom.Company) -> intercom.Contact:
    return intercom.Contact(
        id=f"66b00000000000000000{key}",
        external_id=None,
        role="user",
        name=f"Contact {key}",
        email=f"{key}@example.com",
        created_at=NOON - 100 * 86_400,
        company_ids=tuple(c.id for c in companies),
    )


def _conversation(
    number: int,
    company: intercom.Company,
    contact: intercom.Contact,
    *,
    reply: int,
    close: int | None,
    p1: bool = False,
    tags: tuple[str, ...] = (),
    compact: bool = False,
    delivered_as: str = "customer_initiated",
) -> intercom.Conversation:
    return intercom.Conversation(
        id=str(900 + number),
        created_at=NOON + number,
        company=company.id,
        contact=contact.id,
        state="closed" if close is not None else "open",
        priority="none",
        attributes=(("Priority", "P1"),) if p1 else (),
        tags=tags,
        admin_id=991_267_700,
        team_id=5_017_690,
        time_to_admin_reply=reply,
        time_to_first_close=close,
        time_to_last_close=close,
        count_reopens=0,
        delivered_as=delivered_as,
        compact=compact,
    )


def _shapes_data() -> intercom.Data:
    a, b = _company("aa"), _company("bb")
    # A consultant in both companies, B listed first: its conversations about A say so.
    shared, only_a, only_b = _contact("0001", b, a), _contact("0002", a), _contact("0003", b)
    conversations = (
        # A's own company as a compact reference ({"type", "id"}): resolved, never via contact.
        _conversation(1, a, shared, reply=600, close=7200, p1=True, compact=True),
        _conversation(2, a, only_a, reply=1800, close=None, compact=True),
        # Outbound (an admin's message the customer answered): not a support request.
        _conversation(
            3,
            a,
            only_a,
            reply=60,
            close=60,
            p1=True,
            tags=("Escalated",),
            delivered_as="admin_initiated",
        ),
        _conversation(4, b, only_b, reply=300, close=3600),
    )
    return intercom.Data(
        as_of=AS_OF.date(),
        companies=(a, b),
        contacts=(shared, only_a, only_b),
        conversations=conversations,
    )


def _shapes_accounts() -> list[Any]:
    from health_score.records import Account

    return [
        Account("acct-a", "A", "standard", intercom_company_id="cmp_aa"),
        Account("acct-b", "B", "standard", intercom_company_id="cmp_bb"),
    ]


def _extract_shapes(session: requests.Session, **changes: Any) -> tuple[SourceResult, Any]:
    settings = extractor.Settings.model_validate(changes)
    with VendorServer(intercom.App(_shapes_data(), settings)) as server:
        found = intercom_http.from_env(
            settings, intercom.environment(server.url, ""), session=session, as_of=AS_OF
        )
        assert found is not None
        return found.extract(_shapes_accounts()), dict(server.stats)


def test_a_compact_company_reference_is_the_conversations_company_not_its_contacts_first(
    http: requests.Session,
) -> None:
    result, stats = _extract_shapes(http)
    assert result.metrics["acct-a"] == {
        "p1_p2_volume": Decimal(1),  # conversation 1 (3 is outbound)
        "first_response_minutes": Decimal(20),  # median(600 s, 1800 s) = 1200 s
        "close_time_hours": Decimal(2),  # 7200 s (conversation 2 is open)
        "reopen_rate_pct": Decimal(0),
        "escalation_rate_pct": Decimal(0),  # only the outbound one was tagged Escalated
    }
    assert result.metrics["acct-b"] == {
        "p1_p2_volume": Decimal(0),
        "first_response_minutes": Decimal(5),
        "close_time_hours": Decimal(1),
        "reopen_rate_pct": Decimal(0),
        "escalation_rate_pct": Decimal(0),
    }
    # A's company_id was learned by one look-up of its Intercom id; no contact was searched
    # (the 30-day window is searched as five 7-day slices).
    assert stats == {"POST /conversations/search": 5, "GET /companies/{id}": 1}
    assert result.notes == (
        "1 outbound conversations (source.delivered_as in admin_initiated, automated, "
        "campaigns_initiated) not measured",
    )


def test_outbound_conversations_are_measured_when_configured(http: requests.Session) -> None:
    result, _ = _extract_shapes(http, exclude_delivered_as=[])
    assert result.metrics["acct-a"] == {
        "p1_p2_volume": Decimal(2),
        "first_response_minutes": Decimal(10),  # median(60, 600, 1800) s = 600 s
        "close_time_hours": Decimal("1.0083"),  # median(60, 7200) s = 3630 s
        "reopen_rate_pct": Decimal(0),
        "escalation_rate_pct": Decimal("33.3333"),  # 1 of 3
    }
    assert result.notes == ()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"company": {"type": "company", "id": "65a1", "company_id": "cmp_1"}}, ("cmp_1", "65a1")),
        ({"company": {"type": "company", "id": "65a1"}}, (None, "65a1")),
        # Top-level company_id: "the unique identifier ... given by Intercom" (its internal id).
        ({"company_id": "65a1"}, (None, "65a1")),
        ({"company": {"type": "company", "id": "65a1"}, "company_id": "65a2"}, (None, "65a1")),
        ({"company": {"type": "company", "company_id": 42}}, ("42", None)),
        ({"company": None}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_a_conversations_own_company_is_read_from_any_shape(
    raw: dict[str, Any], expected: tuple[str | None, str | None]
) -> None:
    from health_score.sources.intercom.metrics import conversation_company

    assert conversation_company(raw) == expected


def test_outbound_is_read_from_source_delivered_as() -> None:
    from health_score.sources.intercom.metrics import Rules, parse_conversation

    rules = Rules.of(extractor.Settings())
    base = {"id": "1", "created_at": 1, "state": "open"}
    for delivered_as, outbound in [
        ("customer_initiated", False),
        ("operator_initiated", False),  # a bot answering the customer
        ("admin_initiated", True),
        ("automated", True),
        ("campaigns_initiated", True),
    ]:
        raw = {**base, "source": {"type": "conversation", "delivered_as": delivered_as}}
        assert parse_conversation(raw, rules)[0].outbound is outbound, delivered_as
