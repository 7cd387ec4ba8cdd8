"""One HTTP policy for every source.

Timeouts on every call; retries only on 429, 5xx and connection errors, with exponential backoff
and jitter, honouring ``Retry-After`` / ``X-RateLimit-Reset``, inside a total time budget; a
client-side rate limit per source; fatal 4xx fail fast naming the source and endpoint; an expired
token is refreshed once. Each request has a total wall-clock limit (a server trickling bytes
is cut off), and the run's deadline, when the policy has one, is checked before every attempt and
caps every sleep and timeout.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from health_score.redact import EXCERPT_LIMIT, excerpt
from health_score.sources.http_policy import MAX_SERVER_DELAY, HttpPolicy, HttpSettings
from health_score.sources.request_watch import Watch, WatchedAdapter

__all__ = [
    "AUTH_STATUS",
    "LOGIN_RETRYABLE_STATUS",
    "MAX_SERVER_DELAY",
    "RATE_LIMITED",
    "RETRIABLE_STATUS",
    "RETRYABLE_STATUS",
    "AuthenticationError",
    "HttpPolicy",
    "HttpSettings",
    "RateLimiter",
    "RequestCutOff",
    "RetriableHTTPError",
    "SourceClient",
    "SourceError",
    "endpoint_of",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Which statuses are retried and which are fatal: the one table every source and loader uses.
#
#   < 400                      success, returned
#   429, 500, 502, 503, 504    retried with backoff inside the budget (RETRYABLE_STATUS);
#                              429 and 503 may say how long to wait (Retry-After, X-RateLimit-Reset)
#   401, 403                   credentials rejected (AUTH_STATUS; a 403 about a limit is not)
#   any other ≥ 400            fatal at once, naming source and endpoint
#
# A login is retried on the same statuses except 500, which is how Salesforce's SOAP login
# refuses credentials (LOGIN_RETRYABLE_STATUS).

RATE_LIMITED = 429
RETRYABLE_STATUS = frozenset({RATE_LIMITED, 500, 502, 503, 504})
LOGIN_RETRYABLE_STATUS = RETRYABLE_STATUS - {500}
AUTH_STATUS = frozenset({401, 403})
#: The former name of RETRYABLE_STATUS.
RETRIABLE_STATUS = RETRYABLE_STATUS


class SourceError(Exception):
    """A source failed as a whole; the message names the source and the endpoint."""

    def __init__(self, source: str, endpoint: str, message: str, status: int | None = None):
        self.source = source
        self.endpoint = endpoint
        self.status = status
        super().__init__(f"{source}: {endpoint}: {message}")


class AuthenticationError(SourceError):
    """Credentials were rejected; the message names the variables to check."""


class Retriable(Exception):
    """A failed attempt worth another: says where (source, endpoint) for the retry warning."""

    def __init__(self, cause: str, where: str = "", attempts: int | None = None) -> None:
        self.cause = cause
        self.where = where  # "<source>: <METHOD> <endpoint>"
        self.attempts = attempts
        super().__init__(cause)


class RetriableHTTPError(Retriable):
    """A response worth retrying (429 / 5xx); carries the server's requested delay if any."""

    def __init__(
        self,
        response: requests.Response,
        delay: float | None,
        where: str = "",
        attempts: int | None = None,
        requested: float | None = None,
    ) -> None:
        self.response = response
        self.delay = delay
        #: What the server asked for, before the cap (``delay`` is what would be slept).
        self.requested = delay if requested is None else requested
        super().__init__(f"HTTP {response.status_code}", where, attempts)


class RetriableConnectionError(Retriable):
    """No answer (refused, reset, timed out): retried like a 503."""

    def __init__(self, error: Exception, where: str, attempts: int) -> None:
        self.error = error
        cause = str(error) if isinstance(error, RequestCutOff) else type(error).__name__
        super().__init__(cause, where, attempts)


class RequestCutOff(requests.Timeout):
    """A request that did not complete within its total limit (retried like a timeout)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"cut off: no complete response within {seconds:.1f} s (the total limit of one "
            "request; the server was sending too slowly or not at all)"
        )


@dataclass(slots=True)
class _Call:
    """One call's clock and why it stopped retrying early (set by its backoff hook)."""

    started: float
    stop: str | None = None  # a server's delay beyond the budget
    deadline_hit: bool = False  # the next wait would outlast the run's deadline
    failures: int = 0


def log_retry(details: RetryDetails) -> None:
    """stamina's retry hook: one warning that says what is retried, when and why, e.g.
    ``intercom: POST /conversations/search: retry 3/8 in 4.2 s (HTTP 429)``."""
    cause = details.caused_by
    if isinstance(cause, Retriable) and cause.where:
        total = f"/{cause.attempts - 1}" if cause.attempts else ""
        log.warning(
            "%s: retry %d%s in %.1f s (%s)",
            cause.where,
            details.retry_num,
            total,
            details.wait_for,
            cause.cause,
        )
    else:
        log.warning(
            "%s: retry %d in %.1f s (%s)",
            details.name,
            details.retry_num,
            details.wait_for,
            type(cause).__name__,
        )


# Every retry of the product goes through stamina; this replaces its default log line.
set_on_retry_hooks([log_retry])


def retry_after_seconds(
    headers: Mapping[str, str],
    status: int,
    *,
    now: float,
    cap: float = MAX_SERVER_DELAY,
) -> float | None:
    """The delay a 429/503 asks for, in seconds, at most ``cap``; None when it names none.

    ``Retry-After`` is delta-seconds or an HTTP date (one in the past means now); on a 429,
    ``X-RateLimit-Reset`` is an epoch second (as Intercom sends it) or, from some APIs, the
    seconds remaining. A negative or unreadable value is ignored. ``now`` is epoch seconds.
    """
    header = headers.get("Retry-After")
    if header:
        header = header.strip()
        if header.replace(".", "", 1).isdigit():
            return min(float(header), cap)
        try:
            when = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return min(max(when - now, 0.0), cap)
    reset = headers.get("X-RateLimit-Reset") or headers.get("X-Ratelimit-Reset")
    if reset and status == RATE_LIMITED:
        try:
            value = float(reset)
        except ValueError:
            return None
        delay = value - now if value > 1_000_000_000 else value
        return min(max(delay, 0.0), cap)
    return None


def _retry_after_seconds(
    response: requests.Response, now: float | None = None, cap: float = MAX_SERVER_DELAY
) -> float | None:
    """:func:`retry_after_seconds` for a response, now by the wall clock unless given."""
    return retry_after_seconds(
        response.headers, response.status_code, now=time.time() if now is None else now, cap=cap
    )


def _backoff_hook(exc: Exception) -> bool | float:
    """stamina hook: retry connection errors and retriable statuses, waiting as the server asks."""
    if isinstance(exc, RetriableHTTPError):
        return exc.delay if exc.delay is not None else True
    return isinstance(exc, Retriable | requests.ConnectionError | requests.Timeout)


class RateLimiter:
    """A thread-safe token bucket: at most ``rate`` calls a second, bursts up to ``rate``.

    ``clock`` (monotonic seconds) and ``sleep`` are the real ones unless a test injects fakes.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = rate or 0.0
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.rate:
            return
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)


def endpoint_of(url: str) -> str:
    """The path of a URL, for messages (never the query string, which may carry data)."""
    return urlsplit(url).path or url


class SourceClient:
    """HTTP for one source: base URL, auth headers, the policy, and a request counter.

    ``authenticate`` returns headers to add to every request (called lazily, and again once after
    a 401 when ``reauthenticate_on_401`` is set); ``credential_hint`` names the environment
    variables an operator should check when the source rejects them.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
        authenticate: Callable[[], Mapping[str, str]] | None = None,
        credential_hint: str = "",
        reauthenticate_on_401: bool = False,
        verify: str | bool | None = None,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.policy = policy or HttpPolicy()
        self.session = session or requests.Session()
        adapter = WatchedAdapter(
            pool_connections=self.policy.pool_size, pool_maxsize=self.policy.pool_size
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if verify is not None:
            self.session.verify = verify
        self._authenticate = authenticate
        self._auth_headers: Mapping[str, str] | None = None
        self._auth_lock = threading.Lock()
        self.credential_hint = credential_hint
        self.reauthenticate_on_401 = reauthenticate_on_401
        self._limiter = RateLimiter(self.policy.requests_per_second)
        self._count_lock = threading.Lock()
        self.requests = 0
        self.retries = 0

    # -- helpers ---------------------------------------------------------------------------

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def _headers(self, refresh: bool = False) -> Mapping[str, str]:
        if self._authenticate is None:
            return {}
        with self._auth_lock:
            if self._auth_headers is None or refresh:
                self._auth_headers = dict(self._authenticate())
            return self._auth_headers

    def count_request(self) -> None:
        """Count a request made outside :meth:`request` (e.g. a login call)."""
        with self._count_lock:
            self.requests += 1

    def time_left(self, started: float) -> float:
        """Seconds a call begun at ``started`` (monotonic) may still take: the sooner of its
        retry budget and the run's deadline."""
        left = self.policy.budget_seconds - (time.monotonic() - started)
        if self.policy.deadline is not None:
            left = min(left, self.policy.deadline.remaining())
        return max(left, 0.0)

    def _send(
        self,
        method: str,
        url: str,
        refresh: bool,
        kwargs: dict[str, Any],
        started: float | None = None,
    ) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), **self._headers(refresh)}
        self._limiter.acquire()
        self.count_request()
        limit = self.policy.request_timeout
        if started is not None:
            limit = min(limit, max(self.time_left(started), 0.001))
        try:
            with Watch(limit) as watch:
                try:
                    response = self.session.request(
                        method,
                        url,
                        headers=headers,
                        timeout=(
                            min(self.policy.connect_timeout, limit),
                            min(self.policy.read_timeout, limit),
                        ),
                        **kwargs,
                    )
                except requests.RequestException as exc:
                    if watch.fired:
                        raise RequestCutOff(limit) from exc
                    raise
                if watch.fired:
                    # Cut mid-response, an HTTP/1.0-style answer can look complete (a status
                    # line, then end of stream): never trust it.
                    raise RequestCutOff(limit)
                return response
        finally:
            kwargs["headers"] = {k: v for k, v in headers.items() if k.lower() != "authorization"}

    # -- the call --------------------------------------------------------------------------

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """Send with the policy; return a 2xx response or raise SourceError."""
        url = self.url(path_or_url)
        endpoint = f"{method} {endpoint_of(url)}"
        refreshed = False
        call = _Call(time.monotonic())
        deadline = self.policy.deadline
        try:
            for attempt in stamina.retry_context(
                on=lambda exc: self._retry_verdict(exc, call),
                attempts=self.policy.attempts,
                timeout=self.policy.budget_seconds,
                wait_initial=self.policy.wait_initial,
                wait_max=self.policy.wait_max,
                wait_jitter=self.policy.wait_jitter,
            ):
                with attempt:
                    if attempt.num > 1:
                        with self._count_lock:
                            self.retries += 1
                    if deadline is not None and deadline.expired():
                        raise deadline.exceeded()
                    where = f"{self.source}: {endpoint}"
                    try:
                        response = self._send(method, url, False, dict(kwargs), call.started)
                        if (
                            response.status_code == 401
                            and self.reauthenticate_on_401
                            and not refreshed
                        ):
                            refreshed = True
                            log.info("%s: token rejected, authenticating again", self.source)
                            response = self._send(method, url, True, dict(kwargs), call.started)
                    except (requests.ConnectionError, requests.Timeout) as exc:
                        raise RetriableConnectionError(exc, where, self.policy.attempts) from exc
                    if response.status_code in RETRYABLE_STATUS:
                        requested = _retry_after_seconds(response, cap=math.inf)
                        raise RetriableHTTPError(
                            response,
                            None
                            if requested is None
                            else min(requested, self.policy.max_server_delay),
                            where,
                            self.policy.attempts,
                            requested,
                        )
        except RetriableHTTPError as exc:
            self._stopped_early(call, endpoint, exc.response.status_code)
            raise SourceError(
                self.source,
                endpoint,
                f"HTTP {exc.response.status_code} after retries ({_excerpt(exc.response)})",
                exc.response.status_code,
            ) from None
        except RetriableConnectionError as exc:
            self._stopped_early(call, endpoint, None)
            if isinstance(exc.error, RequestCutOff):
                raise SourceError(self.source, endpoint, exc.cause) from None
            raise SourceError(self.source, endpoint, f"cannot connect: {exc.cause}") from None
        return self.check(response, endpoint)

    def _retry_verdict(self, exc: Exception, call: _Call) -> bool | float:
        """stamina's hook for one call: :func:`_backoff_hook`, unless the wait would outlast
        the call's budget or the run's deadline; then no retry, and ``call.stop`` says why."""
        verdict = _backoff_hook(exc)
        if verdict is False:
            return False
        call.failures += 1
        if isinstance(exc, RetriableHTTPError) and exc.requested is not None:
            left = self.time_left(call.started)
            if exc.requested > left:
                call.stop = (
                    f"rate limited: server asks to wait {exc.requested:.0f} s, beyond the "
                    f"remaining budget of {left:.0f} s"
                )
                return False
        deadline = self.policy.deadline
        if deadline is not None:
            # The longest stamina's backoff can be for this retry (its jitter included).
            wait = (
                verdict
                if not isinstance(verdict, bool)
                else min(
                    self.policy.wait_max,
                    self.policy.wait_initial * 2 ** (call.failures - 1) + self.policy.wait_jitter,
                )
            )
            if wait >= deadline.remaining():
                call.deadline_hit = True
                return False
        return verdict

    def _stopped_early(self, call: _Call, endpoint: str, status: int | None) -> None:
        """Raise what stopped the retries early: the run's deadline, or a server's delay
        beyond the budget. Returns when the retries simply ran out."""
        deadline = self.policy.deadline
        if deadline is not None and (call.deadline_hit or deadline.expired()):
            raise deadline.exceeded() from None
        if call.stop is not None:
            raise SourceError(self.source, endpoint, call.stop, status) from None

    def check(self, response: requests.Response, endpoint: str) -> requests.Response:
        """Sort a final response: 2xx through, auth errors and other 4xx fatal."""
        status = response.status_code
        if status < 400:
            return response
        if status in AUTH_STATUS and _looks_like_auth(response):
            hint = f"; check {self.credential_hint}" if self.credential_hint else ""
            raise AuthenticationError(
                self.source, endpoint, f"credentials rejected (HTTP {status}){hint}", status
            )
        raise SourceError(self.source, endpoint, f"HTTP {status}: {_excerpt(response)}", status)

    def json(self, response: requests.Response) -> Any:
        """Decode a JSON body; a malformed one is a SourceError naming source and endpoint."""
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            endpoint = f"{response.request.method} {endpoint_of(response.url)}"
            raise SourceError(
                self.source, endpoint, f"malformed JSON in response ({_excerpt(response)})"
            ) from None

    def get_json(self, path_or_url: str, **kwargs: Any) -> Any:
        return self.json(self.request("GET", path_or_url, **kwargs))

    def post_json(self, path_or_url: str, **kwargs: Any) -> Any:
        return self.json(self.request("POST", path_or_url, **kwargs))


def _looks_like_auth(response: requests.Response) -> bool:
    """403 is also used for limits (Salesforce REQUEST_LIMIT_EXCEEDED): only call auth what is."""
    if response.status_code == 401:
        return True
    body = response.text[:500].upper()
    return "REQUEST_LIMIT_EXCEEDED" not in body and "LIMIT" not in body


def _excerpt(response: requests.Response, limit: int = EXCERPT_LIMIT) -> str:
    """The start of a body for an error message, token-like content redacted (never a login's:
    its callers say the status and a fixed message instead)."""
    return excerpt(response.text, limit)
