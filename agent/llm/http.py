"""The HTTP client of the OpenAI backend: every request ends by its deadline, whatever the server does.

Why not the SDK's own client: httpx's timeouts bound each socket operation, not a request. A server that
sends its headers and then one byte every half second restarts the read timeout with each byte, so a call
with a 2 s timeout and a 5 s total limit was measured still waiting after a minute (the total limit is
only checked between attempts). Here the network backend under httpx cuts the timeout of every socket
operation (connect, TLS handshake, each write, each read of headers or body) to the time left before the
deadline set with :func:`deadline`, and fails it once that has passed: the request then ends with
``httpx2.ConnectTimeout``/``ReadTimeout``/``WriteTimeout``, which the SDK reports as ``APITimeoutError``,
and the connection is closed as after any broken response. No thread watches the call, and nothing is left
open behind it.

Two waits are outside the sockets' timeouts: the DNS lookup of the host (bounded by the resolver's own
timeout, seconds), and a write of a body larger than the socket's send buffer to a server that stops
reading it - prompts of a few kilobytes are handed to that buffer whole.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpcore2
import httpx2
from openai import DefaultHttpxClient

if TYPE_CHECKING:
    import ssl

__all__ = ["bounded_http_client", "deadline", "environment_proxy"]

#: When (``time.monotonic()``) the request being made in this context must end; None: no deadline.
_DEADLINE: ContextVar[float | None] = ContextVar("tunesmith_http_deadline", default=None)


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Within the block, requests of a :func:`bounded_http_client` made in this thread end by ``at``.

    A context variable rather than a request option: the SDK reads the body after the transport returns,
    and the socket reads that it makes then must still see the deadline.
    """
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _cut(timeout: float | None, expired: type[httpcore2.TimeoutException]) -> float | None:
    """``timeout`` cut to the time left before the deadline; ``expired`` raised once none is left."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore2.NetworkStream):
    """A connection whose every operation waits at most until the current deadline."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _cut(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _cut(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _cut(timeout, httpcore2.ConnectTimeout))
        return _BoundedStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore2.NetworkBackend):
    """httpcore's network backend with every connection bounded by the current deadline."""

    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        cut = _cut(timeout, httpcore2.ConnectTimeout)
        return _BoundedStream(self._inner.connect_tcp(host, port, cut, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        cut = _cut(timeout, httpcore2.ConnectTimeout)
        return _BoundedStream(self._inner.connect_unix_socket(path, cut, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _BoundedClient(DefaultHttpxClient):
    """The SDK's defaults (limits, redirects), closed with the OpenAI client that owns it, as the SDK's is."""

    def __del__(self) -> None:
        if not self.is_closed:
            self.close()


def environment_proxy(base_url: str | None) -> str | None:
    """The proxy the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...) names for ``base_url``.

    httpx applies these itself only to a client built without its own transport, so they are looked up
    here, for the one server an OpenAI client talks to.
    """
    parts = urlsplit(base_url or "https://api.openai.com/v1")
    proxies = urllib.request.getproxies_environment()
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def bounded_http_client(base_url: str | None) -> httpx2.Client:
    """An ``httpx2.Client`` for ``openai.OpenAI(http_client=...)`` whose requests end by their :func:`deadline`."""
    transport = httpx2.HTTPTransport(proxy=environment_proxy(base_url))
    # httpx builds the pool and offers no way to give it a network backend; the pool takes one, and keeps
    # it in this attribute (the same in every httpcore release), read each time it opens a connection.
    pool: Any = transport._pool
    pool._network_backend = _BoundedBackend(pool._network_backend)
    return _BoundedClient(transport=transport)
