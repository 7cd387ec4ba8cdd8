"""A total wall-clock limit per HTTP request, body included.

requests' ``timeout`` bounds each socket read, not the request: a server that sends one byte a
second never trips it. :class:`Watch` is a timer that, when the limit passes, shuts down the
socket of the connection the request is using; the blocked read returns at once and requests
raises, which :class:`health_score.sources.http.SourceClient` reports as a cut-off request.

The connection is learnt from the pool on the requesting thread (``_get_conn`` runs there), so
:class:`WatchedAdapter` only swaps urllib3's pool classes; nothing else in the stack changes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

import requests.adapters
import urllib3.poolmanager
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["Watch", "WatchedAdapter"]

_current = threading.local()


class Watch:
    """For the ``with`` block on this thread: after ``seconds``, cut the request's connection."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._done = False
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watch:
        _current.watch = self
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        with self._lock:
            self._done = True  # a timer firing from now on finds nothing to cut
        self._timer.cancel()
        _current.watch = None

    def adopt(self, connection: Any) -> None:
        with self._lock:
            if self.fired:
                _cut(connection)
            else:
                self._connections.append(connection)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for connection in self._connections:
                _cut(connection)


def _cut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:  # still connecting: the connect timeout (capped to the limit) bounds it
        return
    # The plain socket's shutdown, also for TLS: it wakes a read blocked in another thread
    # (close() alone does not) without touching the TLS object that thread is using.
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _adopt(connection: Any) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.adopt(connection)


class _WatchedHTTPPool(HTTPConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        _adopt(connection)
        return connection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        _adopt(connection)
        return connection


def _watch_pools(manager: Any) -> None:
    # Only managers using urllib3's own pools (direct and HTTP(S) proxies); a SOCKS manager
    # keeps its pools and gets the per-read timeouts only.
    if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections a :class:`Watch` can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        _watch_pools(manager)
        return manager
