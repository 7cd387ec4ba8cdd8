"""A request's total time limit and the run's deadline, against a real socket on loopback.

The server answers each connection by trickling: one byte every 50 ms, forever (until the client
hangs up; at most 3 s, so that a broken limit fails a test rather than hanging it). requests' read
timeout never fires on it (every read gets a byte in time); the total per-request limit must.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from health_score.deadline import Deadline, DeadlineExceeded
from health_score.sources.http import HttpPolicy, SourceClient, SourceError

TRICKLE_EVERY = 0.05


class Trickler:
    """A loopback server that sends ``head`` at once, then ``drip`` one byte at a time forever."""

    def __init__(self, head: bytes, drip: bytes) -> None:
        self.head = head
        self.drip = drip
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.hung_up = threading.Event()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (small: one GET)
            try:
                conn.sendall(self.head)
                # "Forever", but 3 s at most: a broken limit fails the test instead of hanging it.
                until = time.monotonic() + 3
                while not self._stop.is_set() and time.monotonic() < until:
                    conn.sendall(self.drip)
                    time.sleep(TRICKLE_EVERY)
            except OSError:  # the client cut the connection: what the tests expect
                self.hung_up.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()


@pytest.fixture
def trickling_body() -> Iterator[Trickler]:
    server = Trickler(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
        b" ",  # JSON whitespace, forever
    )
    yield server
    server.close()


@pytest.fixture
def trickling_headers() -> Iterator[Trickler]:
    server = Trickler(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"y")  # a header that never ends
    yield server
    server.close()


def client_for(server: Trickler, policy: HttpPolicy) -> SourceClient:
    return SourceClient("trickle", server.url, policy=policy)


def test_a_trickling_body_is_cut_off_at_the_total_request_limit(trickling_body: Trickler) -> None:
    # read timeout 5 s never fires (a byte every 50 ms); the 0.5 s total limit does.
    client = client_for(trickling_body, HttpPolicy(read_timeout=5, request_timeout=0.5, attempts=1))
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        client.get_json("/slow")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5
    assert str(caught.value) == (
        "trickle: GET /slow: cut off: no complete response within 0.5 s (the total limit of one "
        "request; the server was sending too slowly or not at all)"
    )
    assert trickling_body.hung_up.wait(1)


def test_trickling_headers_are_cut_off_too(trickling_headers: Trickler) -> None:
    client = client_for(
        trickling_headers, HttpPolicy(read_timeout=5, request_timeout=0.4, attempts=1)
    )
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"cut off: no complete response within 0\.4 s"):
        client.get_json("/slow")
    assert time.monotonic() - started < 1.4


def test_a_cut_off_request_is_retried_within_the_calls_budget(trickling_body: Trickler) -> None:
    # Two attempts of 0.3 s each (a cut-off is retried like a timeout), with a short backoff.
    policy = HttpPolicy(
        read_timeout=5, request_timeout=0.3, attempts=2, wait_initial=0.01, wait_jitter=0.0
    )
    client = client_for(trickling_body, policy)
    started = time.monotonic()
    with pytest.raises(SourceError, match="cut off"):
        client.get_json("/slow")
    assert 0.6 <= time.monotonic() - started < 1.6
    assert trickling_body.connections == 2
    assert client.retries == 1


def test_the_run_deadline_bounds_a_request_below_its_own_limit(trickling_body: Trickler) -> None:
    # The request may take 180 s, but the run has 0.6 s left: the source stops at the deadline.
    deadline = Deadline(0.6, origin="run.budget_seconds")
    client = client_for(trickling_body, HttpPolicy(read_timeout=5, deadline=deadline))
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as caught:
        client.get_json("/slow")
    assert time.monotonic() - started < 1.6
    assert str(caught.value) == "deadline: stopped after 1 s (run budget 0.6 s, run.budget_seconds)"
