"""One HTTP policy for every source.

Timeouts on every call; retries only on 429, 5xx and connection errors, with exponential backoff
and jitter, honouring ``Retry-After`` / ``X-RateLimit-Reset``, inside a total time budget; a
client-side rate limit per source; fatal 4xx fail fast naming the source and endpoint; an expired
token is refreshed once.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import stamina

log = logging.getLogger(__name__)

RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_SERVER_DELAY = 120.0  # never sleep longer than this on a server's say-so


class SourceError(Exception):
    """A source failed as a whole; the message names the source and the endpoint."""

    def __init__(self, source: str, endpoint: str, message: str, status: int | None = None):
        self.source = source
        self.endpoint = endpoint
        self.status = status
        super().__init__(f"{source}: {endpoint}: {message}")


class AuthenticationError(SourceError):
    """Credentials were rejected; the message names the variables to check."""


class RetriableHTTPError(Exception):
    """A response worth retrying (429 / 5xx); carries the server's requested delay if any."""

    def __init__(self, response: requests.Response, delay: float | None) -> None:
        self.response = response
        self.delay = delay
        super().__init__(f"HTTP {response.status_code}")


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Timeouts, retries and pacing for one source."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    attempts: int = 8
    budget_seconds: float = 300.0  # total time one call may spend retrying
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0
    requests_per_second: float | None = None  # client-side rate limit; None = unlimited
    pool_size: int = 8


def _retry_after_seconds(response: requests.Response, now: float | None = None) -> float | None:
    """The delay a 429/503 asks for: ``Retry-After`` (seconds or HTTP date) or a reset epoch."""
    now = time.time() if now is None else now
    header = response.headers.get("Retry-After")
    if header:
        header = header.strip()
        if header.replace(".", "", 1).isdigit():
            return min(float(header), MAX_SERVER_DELAY)
        try:
            when = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return min(max(when - now, 0.0), MAX_SERVER_DELAY)
    reset = response.headers.get("X-RateLimit-Reset") or response.headers.get("X-Ratelimit-Reset")
    if reset and response.status_code == 429:
        try:
            value = float(reset)
        except ValueError:
            return None
        # Epoch seconds (Intercom) or, from some APIs, seconds remaining.
        delay = value - now if value > 1_000_000_000 else value
        return min(max(delay, 0.0), MAX_SERVER_DELAY)
    return None


def _backoff_hook(exc: Exception) -> bool | float:
    """stamina hook: retry connection errors and retriable statuses, waiting as the server asks."""
    if isinstance(exc, RetriableHTTPError):
        return exc.delay if exc.delay is not None else True
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


class RateLimiter:
    """A thread-safe token bucket: at most ``rate`` calls a second, bursts up to ``rate``."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._tokens = rate or 0.0
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.rate:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)


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
        adapter = requests.adapters.HTTPAdapter(
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

    def _send(
        self, method: str, url: str, refresh: bool, kwargs: dict[str, Any]
    ) -> requests.Response:
        headers = {**kwargs.pop("headers", {}), **self._headers(refresh)}
        self._limiter.acquire()
        self.count_request()
        try:
            return self.session.request(
                method,
                url,
                headers=headers,
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                **kwargs,
            )
        finally:
            kwargs["headers"] = {k: v for k, v in headers.items() if k.lower() != "authorization"}

    # -- the call --------------------------------------------------------------------------

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """Send with the policy; return a 2xx response or raise SourceError."""
        url = self.url(path_or_url)
        endpoint = f"{method} {endpoint_of(url)}"
        refreshed = False
        try:
            for attempt in stamina.retry_context(
                on=_backoff_hook,
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
                    response = self._send(method, url, False, dict(kwargs))
                    if response.status_code == 401 and self.reauthenticate_on_401 and not refreshed:
                        refreshed = True
                        log.info("%s: token rejected, authenticating again", self.source)
                        response = self._send(method, url, True, dict(kwargs))
                    if response.status_code in RETRIABLE_STATUS:
                        raise RetriableHTTPError(response, _retry_after_seconds(response))
        except RetriableHTTPError as exc:
            raise SourceError(
                self.source,
                endpoint,
                f"HTTP {exc.response.status_code} after retries ({_excerpt(exc.response)})",
                exc.response.status_code,
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SourceError(
                self.source, endpoint, f"cannot connect: {type(exc).__name__}"
            ) from None
        return self.check(response, endpoint)

    def check(self, response: requests.Response, endpoint: str) -> requests.Response:
        """Sort a final response: 2xx through, auth errors and other 4xx fatal."""
        status = response.status_code
        if status < 400:
            return response
        if status in (401, 403) and _looks_like_auth(response):
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


def _excerpt(response: requests.Response, limit: int = 200) -> str:
    text = " ".join(response.text.split())
    return text[:limit] + ("…" if len(text) > limit else "")
