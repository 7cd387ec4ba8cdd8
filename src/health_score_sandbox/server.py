"""The shared machinery of the four stand-in servers.

Each vendor is a :class:`VendorApp` (routing and the vendor's wire formats); :class:`VendorServer`
runs one on loopback in a thread and applies what every vendor shares: latency, a rate-limit
window, fault injection, request accounting and ``GET /__sandbox/stats``.
"""

from __future__ import annotations

import json
import random
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATS_PATH = "/__sandbox/stats"
FAULT_KINDS = (
    "down",  # connection refused
    "always_503",  # every request answers 503
    "storm_429",  # the next K requests answer 429 (K = storm_429 count)
    "error_rate_5xx",  # a fraction of requests answer 500/502/503 at random (seeded)
    "malformed",  # 2xx bodies are cut short (invalid JSON)
    "auth_rejected",  # every credential is refused (vendor's 401)
    "token_expiry",  # issued tokens expire after K authorised calls
    "limit",  # Looker only: a Look run returns at most N rows, whatever limit it asks for
    "hide",  # Salesforce only: an object the user cannot see (INVALID_TYPE), e.g. hide=Event
    "login_5xx",  # Salesforce only: the login endpoints answer this 5xx (default 500)
)
#: Fault kinds that only one vendor's stand-in implements.
VENDOR_FAULTS = {"limit": "looker", "hide": "salesforce", "login_5xx": "salesforce"}


@dataclass
class Faults:
    """Misbehaviour knobs; change them at any time, they apply to the next request."""

    down: bool = False
    always_503: bool = False
    storm_429: int = 0  # requests still to answer with 429
    storm_retry_after: float = 1.0  # seconds the 429s ask the client to wait
    error_rate_5xx: float = 0.0
    malformed: bool = False
    auth_rejected: bool = False
    token_expiry_after: int | None = None  # authorised calls per token before it expires
    row_limit: int | None = None  # Looker: rows a Look run returns at most (an instance cap)
    #: Salesforce: objects the integration user cannot see (queries on them: INVALID_TYPE).
    hidden_objects: list[str] = field(default_factory=list)
    #: Salesforce: the OAuth token endpoint and SOAP login answer this status (an outage).
    login_status: int | None = None


@dataclass
class Knobs:
    """Per-vendor behaviour: latency and a fixed-window rate limit."""

    latency_ms: float = 0.0
    rate_limit: int | None = None  # requests per window; None = unlimited
    rate_window_seconds: float = 10.0


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8")).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list → JSON; str/bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, separators=(",", ":")).encode("utf-8")


class HttpError(Exception):
    """Raised by vendor handlers to answer with the vendor's error shape."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status}")


class VendorApp:
    """Base for a vendor stand-in. Subclasses set ``name`` and implement the hooks."""

    name = "vendor"

    def __init__(self) -> None:
        self.server: VendorServer | None = None

    # Routing --------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def endpoint_label(self, request: Request) -> str:
        """How a request is counted in the stats (override to fold ids out of paths)."""
        return f"{request.method} {request.path}"

    # Vendor shapes ---------------------------------------------------------------------------
    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, {"error": code, "message": message})

    def too_many_requests(self, retry_after: float, reset_epoch: float) -> Response:
        return Response(429, {"error": "rate_limited"}, {"Retry-After": f"{retry_after:.0f}"})

    def unauthorized(self) -> Response:
        return self.error(401, "unauthorized", "Access Token Invalid")

    def decorate(
        self, response: Response, limit: int | None, remaining: int | None, reset_epoch: float
    ) -> None:
        """Add headers every response carries (rate-limit info, API usage…)."""

    # Faults ----------------------------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        assert self.server is not None
        return self.server.faults

    def count(self, label: str) -> None:
        if self.server is not None:
            self.server.count(label)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two sends; with Nagle + delayed ACK the second one stalls ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sandbox counts requests instead of logging each."""

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.server.owner.respond(request)
        payload = response.payload()
        self.send_response(response.status)
        if payload or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: VendorServer


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class VendorServer:
    """Runs one VendorApp on 127.0.0.1 in a background thread; a context manager."""

    def __init__(
        self,
        app: VendorApp,
        *,
        knobs: Knobs | None = None,
        faults: Faults | None = None,
        tls: ssl.SSLContext | None = None,
        seed: int = 0,
    ) -> None:
        self.app = app
        app.server = self
        self.knobs = knobs or Knobs()
        self.faults = faults or Faults()
        self.tls = tls
        self._httpd: _Server | None = None
        if self.faults.down:
            self.port = free_port()  # nothing will listen there: connections are refused
        else:
            # Bound now, not at start(): a sandbox takes seconds to generate its vendors' data
            # between the two, and a port merely probed free could be taken meanwhile.
            self._httpd = self._listen(0)
            self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self._window_start = time.time()
        self._window_count = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.stats.values())

    def count(self, label: str) -> None:
        with self._lock:
            self.stats[label] += 1

    def reset_stats(self) -> None:
        with self._lock:
            self.stats.clear()

    # Lifecycle --------------------------------------------------------------------------------
    def _listen(self, port: int) -> _Server:
        httpd = _Server(("127.0.0.1", port), _Handler)
        httpd.owner = self
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        return httpd

    def start(self) -> VendorServer:
        if self.faults.down:
            return self  # nothing listens: connections are refused
        if self._thread is not None:
            return self  # already serving
        httpd = self._httpd or self._listen(self.port)  # a restart binds its port again
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.app.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            if self._thread is not None:
                self._httpd.shutdown()  # waits for serve_forever, which only a thread runs
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> VendorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # One request --------------------------------------------------------------------------------
    def _rate_state(self) -> tuple[bool, int | None, int | None, float]:
        """(over the limit?, limit, remaining, reset epoch) for the current fixed window."""
        limit = self.knobs.rate_limit
        now = time.time()
        with self._lock:
            if now - self._window_start >= self.knobs.rate_window_seconds:
                self._window_start = now
                self._window_count = 0
            self._window_count += 1
            reset = self._window_start + self.knobs.rate_window_seconds
            if limit is None:
                return False, None, None, reset
            remaining = max(limit - self._window_count, 0)
            return self._window_count > limit, limit, remaining, reset

    def respond(self, request: Request) -> Response:
        if request.path == STATS_PATH:
            with self._lock:
                body = {
                    "vendor": self.app.name,
                    "requests": dict(self.stats),
                    "total": sum(self.stats.values()),
                }
            return Response(200, body)
        if self.knobs.latency_ms:
            time.sleep(self.knobs.latency_ms / 1000)
        label = self.app.endpoint_label(request)
        self.count(label)
        over, limit, remaining, reset = self._rate_state()
        response = self._faulty(request, reset)
        if response is None and over:
            response = self.app.too_many_requests(max(reset - time.time(), 0.0), reset)
        if response is None:
            try:
                response = self.app.handle(request)
            except HttpError as exc:
                response = exc.response
            except Exception as exc:  # a bug in a stand-in must show, not hang the client
                response = self.app.error(500, "sandbox_error", f"{type(exc).__name__}: {exc}")
        if self.faults.malformed and 200 <= response.status < 300 and response.body is not None:
            payload = response.payload()
            response = Response(
                response.status,
                payload[: max(len(payload) // 2, 1)],
                response.headers,
                response.content_type,
            )
        self.app.decorate(response, limit, remaining, reset)
        return response

    def _faulty(self, request: Request, reset: float) -> Response | None:
        faults = self.faults
        if faults.always_503:
            return self.app.error(503, "service_unavailable", "Service Unavailable")
        with self._lock:
            storm = faults.storm_429 > 0
            if storm:
                faults.storm_429 -= 1
            flaky = faults.error_rate_5xx and self._rng.random() < faults.error_rate_5xx
            flaky_status = self._rng.choice((500, 502, 503))
        if storm:
            retry_after = faults.storm_retry_after
            return self.app.too_many_requests(retry_after, time.time() + retry_after)
        if flaky:
            return self.app.error(flaky_status, "server_error", "Internal Server Error")
        return None


def serve_all(servers: Mapping[str, VendorServer], on_ready: Callable[[], None]) -> None:
    """Start servers, call ``on_ready``, block until interrupted, stop them."""
    for server in servers.values():
        server.start()
    try:
        on_ready()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for server in servers.values():
            server.stop()
