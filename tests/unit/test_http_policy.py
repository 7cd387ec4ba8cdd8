"""The HTTP policy: what a server asks us to wait, the status table, and the client-side limiter.

Expected values are worked out by hand in the comments; no real clock or network is involved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import requests
import stamina
from requests.structures import CaseInsensitiveDict
from stamina.instrumentation import RetryDetails, get_on_retry_hooks, set_on_retry_hooks

from health_score.deadline import Deadline, DeadlineExceeded
from health_score.sources.http import (
    AUTH_STATUS,
    LOGIN_RETRYABLE_STATUS,
    MAX_SERVER_DELAY,
    RETRYABLE_STATUS,
    AuthenticationError,
    HttpPolicy,
    HttpSettings,
    RateLimiter,
    SourceClient,
    SourceError,
    _retry_after_seconds,
    retry_after_seconds,
)

# Wed, 21 Oct 2015 07:28:00 GMT: 16,729 days after 1970-01-01 (45 years with 11 leap days to
# 2015-01-01 = 16,436, then 273 days to 1 October and 20 more) × 86,400 = 1,445,385,600, plus
# 7 h 28 min = 26,880 s.
HTTP_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
HTTP_DATE_EPOCH = 1_445_412_480.0
# An Intercom-style reset: epoch seconds.
NOW = 1_700_000_000.0


def headers(**values: str) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict({k.replace("_", "-"): v for k, v in values.items()})


# --------------------------------------------------------------------------------------------
# Retry-After


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        ("0", 0.0),
        ("2.5", 2.5),
        (" 7 ", 7.0),
        ("120", 120.0),  # exactly the default cap
        ("600", 120.0),  # capped at MAX_SERVER_DELAY
    ],
)
def test_retry_after_delta_seconds(value: str, expected: float) -> None:
    assert retry_after_seconds(headers(Retry_After=value), 503, now=NOW) == expected


def test_retry_after_http_date_is_the_time_until_then() -> None:
    found = headers(Retry_After=HTTP_DATE)
    assert retry_after_seconds(found, 503, now=HTTP_DATE_EPOCH - 30) == 30.0
    assert retry_after_seconds(found, 429, now=HTTP_DATE_EPOCH - 90.5) == 90.5
    # 07:28:00 from 07:00:00 is 1,680 s, more than the cap.
    assert retry_after_seconds(found, 503, now=HTTP_DATE_EPOCH - 1680) == 120.0
    # A date already past means "now".
    assert retry_after_seconds(found, 503, now=HTTP_DATE_EPOCH + 5) == 0.0


@pytest.mark.parametrize("value", ["soon", "-5", "1e3", "", "Wed, 99 Foo 2015 07:28:00 GMT"])
def test_invalid_or_negative_retry_after_is_ignored(value: str) -> None:
    assert retry_after_seconds(headers(Retry_After=value), 503, now=NOW) is None


def test_retry_after_is_capped_at_the_policy_maximum() -> None:
    policy = HttpPolicy(max_server_delay=45.0)
    assert HttpPolicy().max_server_delay == MAX_SERVER_DELAY == 120.0
    found = headers(Retry_After="60")
    assert retry_after_seconds(found, 503, now=NOW, cap=policy.max_server_delay) == 45.0
    assert retry_after_seconds(found, 503, now=NOW, cap=HttpPolicy().max_server_delay) == 60.0
    dated = headers(Retry_After=HTTP_DATE)
    assert retry_after_seconds(dated, 503, now=HTTP_DATE_EPOCH - 50, cap=45.0) == 45.0


def test_header_names_are_case_insensitive_as_requests_delivers_them() -> None:
    response = requests.Response()
    response.status_code = 429
    response.headers = headers(retry_after="12")
    assert _retry_after_seconds(response, now=NOW) == 12.0


# --------------------------------------------------------------------------------------------
# X-RateLimit-Reset (Intercom sends the epoch second at which the window resets)


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("1700000010", 10.0),  # 1,700,000,010 − 1,700,000,000
        ("1700000000", 0.0),  # the reset is now
        ("1699999990", 0.0),  # already reset: no wait, never negative
        ("1700000500", 120.0),  # 500 s away, capped
        ("5", 5.0),  # small values are seconds remaining (some APIs)
        ("1000000000", 120.0),  # not above 10⁹: read as 10⁹ s remaining, capped
    ],
)
def test_rate_limit_reset(reset: str, expected: float) -> None:
    found = headers(X_RateLimit_Reset=reset)
    assert retry_after_seconds(found, 429, now=NOW) == expected


def test_rate_limit_reset_only_counts_on_429_and_retry_after_wins() -> None:
    reset = headers(X_RateLimit_Reset="1700000010")
    assert retry_after_seconds(reset, 503, now=NOW) is None
    assert retry_after_seconds(headers(X_RateLimit_Reset="soon"), 429, now=NOW) is None
    both = headers(Retry_After="3", X_RateLimit_Reset="1700000010")
    assert retry_after_seconds(both, 429, now=NOW) == 3.0
    assert retry_after_seconds(headers(), 429, now=NOW) is None


# --------------------------------------------------------------------------------------------
# The status table, through the client


def test_the_status_table() -> None:
    assert frozenset({429, 500, 502, 503, 504}) == RETRYABLE_STATUS
    assert frozenset({429, 502, 503, 504}) == LOGIN_RETRYABLE_STATUS
    assert frozenset({401, 403}) == AUTH_STATUS
    assert not RETRYABLE_STATUS & AUTH_STATUS


class Scripted(requests.Session):
    """A session answering each request with the next scripted (status, headers)."""

    def __init__(self, answers: Sequence[tuple[int, dict[str, str]]]) -> None:
        super().__init__()
        self.answers: Iterator[tuple[int, dict[str, str]]] = iter(answers)
        self.sent = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        status, extra = next(self.answers)
        self.sent += 1
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(extra)
        response._content = b'{"ok": true}' if status < 400 else b"no"
        response.url = str(url)
        return response


@pytest.mark.parametrize("status", sorted(RETRYABLE_STATUS))
def test_retryable_statuses_are_retried(status: int) -> None:
    session = Scripted([(status, {}), (200, {})])
    client = SourceClient("x", "https://x.example", session=session)
    with stamina.set_testing(True, attempts=3):
        assert client.get_json("/a") == {"ok": True}
    assert session.sent == 2
    assert client.retries == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, SourceError), (404, SourceError), (410, SourceError), (401, AuthenticationError)],
)
def test_fatal_statuses_fail_at_once(status: int, error: type[SourceError]) -> None:
    session = Scripted([(status, {}), (200, {})])
    client = SourceClient("x", "https://x.example", session=session)
    with stamina.set_testing(True, attempts=3), pytest.raises(error) as caught:
        client.get_json("/a")
    assert caught.value.status == status
    assert type(caught.value) is error
    assert session.sent == 1


def test_the_client_waits_what_the_server_asks_capped_by_its_policy() -> None:
    # Retry-After: 200 (within the call's 300 s budget) against a policy cap of 0.01 s: stamina
    # is asked to wait 0.01 s (and does, which keeps the test fast); the second answer succeeds.
    waits: list[float] = []

    def record(details: RetryDetails) -> None:
        waits.append(details.wait_for)

    session = Scripted([(429, {"Retry-After": "200"}), (200, {})])
    policy = HttpPolicy(attempts=2, max_server_delay=0.01)
    client = SourceClient("x", "https://x.example", session=session, policy=policy)
    previous = get_on_retry_hooks()
    set_on_retry_hooks([record])
    try:
        assert client.get_json("/a") == {"ok": True}
    finally:
        set_on_retry_hooks(previous)
    assert waits == [0.01]


def test_a_retry_after_beyond_the_calls_budget_fails_the_call_at_once() -> None:
    # 600 s asked, 300 s of budget (the default) at most left: no sleep, one request sent.
    session = Scripted([(429, {"Retry-After": "600"}), (200, {})])
    client = SourceClient("x", "https://x.example", session=session)
    with pytest.raises(SourceError) as caught:
        client.get_json("/a")
    assert str(caught.value) == (
        "x: GET /a: rate limited: server asks to wait 600 s, beyond the remaining budget of 300 s"
    )
    assert caught.value.status == 429
    assert session.sent == 1


def test_a_rate_limit_reset_beyond_the_run_deadline_fails_the_call_at_once() -> None:
    # The run has 40 s left (a frozen clock), sooner than the call's 300 s: a 429 asking for
    # 60 s (X-RateLimit-Reset as seconds remaining) fails at once, naming the 40 s.
    deadline = Deadline(40, clock=lambda: 0.0)
    session = Scripted([(429, {"X-RateLimit-Reset": "60"}), (200, {})])
    client = SourceClient(
        "x", "https://x.example", session=session, policy=HttpPolicy(deadline=deadline)
    )
    with pytest.raises(SourceError) as caught:
        client.get_json("/a")
    assert str(caught.value).endswith(
        "rate limited: server asks to wait 60 s, beyond the remaining budget of 40 s"
    )
    assert session.sent == 1


def test_a_retry_after_within_the_run_deadline_is_waited() -> None:
    deadline = Deadline(40, clock=lambda: 0.0)
    session = Scripted([(503, {"Retry-After": "30"}), (200, {})])
    policy = HttpPolicy(deadline=deadline)
    client = SourceClient("x", "https://x.example", session=session, policy=policy)
    with stamina.set_testing(True, attempts=3):  # the 30 s wait is not slept
        assert client.get_json("/a") == {"ok": True}
    assert session.sent == 2


def test_a_passed_deadline_stops_the_call_before_any_request() -> None:
    clock = [0.0]
    deadline = Deadline(10, clock=lambda: clock[0], origin="run.budget_seconds")
    clock[0] = 12.0
    session = Scripted([(200, {})])
    client = SourceClient(
        "x", "https://x.example", session=session, policy=HttpPolicy(deadline=deadline)
    )
    with pytest.raises(DeadlineExceeded) as caught:
        client.get_json("/a")
    assert str(caught.value) == (
        "deadline: stopped after 12 s (run budget 10 s, run.budget_seconds)"
    )
    assert session.sent == 0


def test_a_backoff_that_would_outlast_the_deadline_stops_the_call() -> None:
    # 0.3 s left; the first backoff can be up to wait_initial 0.5 + jitter 1.0 = 1.5 s: no retry.
    deadline = Deadline(0.3, clock=lambda: 0.0)
    session = Scripted([(503, {}), (200, {})])
    client = SourceClient(
        "x", "https://x.example", session=session, policy=HttpPolicy(deadline=deadline)
    )
    with pytest.raises(DeadlineExceeded):
        client.get_json("/a")
    assert session.sent == 1


def test_a_backoff_within_the_deadline_is_retried() -> None:
    # 1.6 s left, the first backoff is at most 0.5 + 1.0 = 1.5 s: retried (not slept, testing).
    deadline = Deadline(1.6, clock=lambda: 0.0)
    session = Scripted([(503, {}), (200, {})])
    client = SourceClient(
        "x", "https://x.example", session=session, policy=HttpPolicy(deadline=deadline)
    )
    with stamina.set_testing(True, attempts=3):
        assert client.get_json("/a") == {"ok": True}
    assert session.sent == 2


def test_http_settings_make_the_policy() -> None:
    policy = HttpSettings.model_validate(
        {"connect_timeout_seconds": 2, "attempts": 3, "max_workers": 2, "requests_per_second": 5}
    ).policy()
    assert policy == HttpPolicy(
        connect_timeout=2.0, attempts=3, requests_per_second=5.0, pool_size=4
    )
    assert HttpSettings.model_validate({"max_workers": 16}).policy().pool_size == 16


# --------------------------------------------------------------------------------------------
# The rate limiter, on a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_burst_up_to_the_rate_then_one_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock.time, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()  # the bucket starts full: 2 tokens, no wait
    assert clock.sleeps == []
    limiter.acquire()  # empty: one token takes (1 − 0) / 2 = 0.5 s
    assert clock.sleeps == [0.5]
    assert clock.now == 0.5


def test_tokens_refill_with_time_up_to_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock.time, sleep=clock.sleep)
    for _ in range(4):
        limiter.acquire()
    clock.now = 100.0  # 400 tokens' worth of time, but the bucket holds 4
    for _ in range(4):
        limiter.acquire()
    assert clock.sleeps == []
    limiter.acquire()  # (1 − 0) / 4 = 0.25 s
    assert clock.sleeps == [0.25]


def test_a_partly_refilled_bucket_waits_for_the_rest() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock.time, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()
    clock.now = 0.2  # 0.2 s × 2/s = 0.4 tokens
    limiter.acquire()  # needs 0.6 more tokens: 0.6 / 2 = 0.3 s
    assert clock.sleeps == [pytest.approx(0.3)]
    assert clock.now == pytest.approx(0.5)


def test_no_rate_means_no_waiting() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock.time, sleep=clock.sleep)
    for _ in range(1000):
        limiter.acquire()
    assert clock.sleeps == []


class Refusing(Scripted):
    """Refuses the first connection, then answers as scripted."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if not self.sent:
            self.sent += 1
            raise requests.ConnectionError("refused")
        return super().request(method, url, *args, **kwargs)


def test_a_retry_warning_names_source_endpoint_attempt_delay_and_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = Refusing([(429, {"Retry-After": "7"}), (200, {})])
    policy = HttpPolicy(attempts=8, max_server_delay=0.01, wait_initial=0.01, wait_jitter=0)
    client = SourceClient("intercom", "https://x.example", session=session, policy=policy)
    with caplog.at_level(logging.WARNING, logger="health_score.sources.http"):
        assert client.post_json("/conversations/search", json={}) == {"ok": True}
    warnings = [r.getMessage() for r in caplog.records if r.name == "health_score.sources.http"]
    assert warnings == [
        "intercom: POST /conversations/search: retry 1/7 in 0.0 s (ConnectionError)",
        "intercom: POST /conversations/search: retry 2/7 in 0.0 s (HTTP 429)",
    ]
