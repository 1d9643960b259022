"""An httpx client that connects only where a ``tasks.outbound.address_policy.NetPolicy`` permits.

``GuardedBackend`` resolves the host itself, drops every address the policy refuses
and connects to a permitted one by IP, so the address judged is the address
connected to (DNS rebinding and redirects to private addresses fail too).

How the backend gets into httpx: httpx 0.28's ``HTTPTransport`` takes no network
backend, and the alternatives that patch it (setting ``transport._pool`` or the
pool's ``_network_backend``) write private attributes, which would *fail open*
(silently unguarded) if either library renamed them. ``GuardedTransport`` is
instead a small ``httpx.BaseTransport`` around ``httpcore.ConnectionPool(
network_backend=...)``, built only from public, documented APIs of both
libraries; it maps httpcore's exceptions to httpx's the way ``HTTPTransport``
does (the most specific match), and lets every other exception, ``BlockedAddress``
among them, through unchanged. So ``client.get``/``client.stream`` raise
``BlockedAddress`` for "refused" (permanent) and an ``httpx.TransportError`` for
"unreachable" (retry).

TLS still verifies the host *name*: httpcore's ``HTTPConnection`` calls
``connect_tcp(host=<the URL's host>)`` and then ``stream.start_tls(ssl_context,
server_hostname=<the URL's host>)``, so connecting by IP changes neither SNI nor
the certificate check (the integration tests show it with a certificate that
names only the host).

``guarded_client`` sets ``trust_env=False``: an ``HTTP(S)_PROXY`` from the
environment would make the guard judge the proxy's address, not the target's,
and ``.netrc`` credentials are not sent anywhere a producer chooses. The CA
bundle still honours ``SSL_CERT_FILE``/``SSL_CERT_DIR`` like the default client.
Redirects are not followed (httpx's default); a caller that follows one gets
each hop judged at connect time.

Deadlines (``deadline``): httpx's timeouts bound each network operation, not a
request: a peer that answers one byte a second never trips a 120 s read timeout.
Every stream the guarded backend makes clamps the timeout of each connect, TLS
handshake, read and write to what is left before the deadline the calling thread
set (a ``contextvars.ContextVar``), and fails at once with httpcore's timeout
error once it has passed. So a caller that sets one bounds the whole exchange,
whatever pace the peer keeps; httpx's own timeouts still apply when shorter. DNS
resolution waits at most the connect timeout too: ``socket.getaddrinfo`` takes no
timeout and cannot be interrupted, so a host name is looked up in a daemon thread
the caller stops waiting for (the lookup ends when the system resolver gives up).
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

from tasks.outbound.address_policy import BlockedAddress, IPAddress, NetPolicy, literal_address

# When (time.monotonic()) the guarded connections' current exchange in this thread must be over; None: no deadline.
_DEADLINE: ContextVar[float | None] = ContextVar("vuq_outbound_deadline", default=None)


@contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Until the block ends, no connect, read or write of a guarded client made in this thread waits
    past ``at`` (``time.monotonic()``); one started after it fails at once with a timeout
    (``httpx.ConnectTimeout``/``ReadTimeout``/``WriteTimeout``). Nested deadlines keep the earlier one;
    None adds none."""
    outer = _DEADLINE.get()
    effective = at if outer is None else outer if at is None else min(at, outer)
    token = _DEADLINE.set(effective)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _clamped(timeout: float | None, error: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` shortened to what is left before this thread's deadline; ``error`` if none is left."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the deadline for this exchange has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation waits at most until the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, _clamped(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects only to addresses the policy permits.

    ``connect_tcp`` resolves the host once (``socket.getaddrinfo``), drops refused
    addresses, and connects by IP to the permitted ones in the resolver's order,
    returning the first that answers. Every address refused: BlockedAddress (the
    first one's). Resolution failed: httpcore.ConnectError (a retryable
    "unreachable"); no answer within the connect timeout: httpcore.ConnectTimeout.
    ``policy`` None permits every address (api.video's own host, which the operator
    configured): the lookup is bounded all the same.
    """

    def __init__(self, policy: NetPolicy | None, inner: httpcore.NetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = httpcore.SyncBackend() if inner is None else inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        end = None if timeout is None else time.monotonic() + timeout  # the lookup and every connect together
        permitted: list[IPAddress] = []
        refused: BlockedAddress | None = None
        for ip in resolve(host, port, timeout):
            try:
                if self.policy is not None:
                    self.policy.check(ip, label=host)
            except BlockedAddress as exc:
                refused = refused or exc
            else:
                permitted.append(ip)
        if not permitted:
            if refused is not None:
                raise refused
            raise httpcore.ConnectError(f"{host} resolved to no address")
        failure: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for ip in permitted:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise httpcore.ConnectTimeout(f"cannot connect to {host} within {timeout:.3g} s")
            try:
                return self.inner.connect_tcp(str(ip), port, timeout=left, local_address=local_address,
                                              socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.UnsupportedProtocol("the guarded backend connects over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class DeadlineBackend(httpcore.NetworkBackend):
    """A network backend whose connections keep the calling thread's ``deadline``: the connect, the TLS
    handshake and every read and write wait at most until then."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self.inner.connect_tcp(host, port, timeout=_clamped(timeout, httpcore.ConnectTimeout),
                                        local_address=local_address, socket_options=socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self.inner.connect_unix_socket(path, _clamped(timeout, httpcore.ConnectTimeout),
                                                              socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def resolve(host: str, port: int, timeout: float | None = None) -> list[IPAddress]:
    """The distinct addresses ``host`` resolves to, in the resolver's order; httpcore.ConnectError if none,
    httpcore.ConnectTimeout when the resolver has not answered within ``timeout`` seconds."""
    try:
        infos = _lookup(host, port, timeout)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses: dict[IPAddress, None] = {}
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses[ipaddress.ip_address(sockaddr[0])] = None  # "fe80::1%eth0" keeps its zone
    return list(addresses)


_AddrInfo = list[tuple[Any, ...]]


def _lookup(host: str, port: int, timeout: float | None) -> _AddrInfo:
    """``socket.getaddrinfo`` waiting at most ``timeout`` seconds: a host name is looked up in a daemon
    thread (an address literal needs no resolver and is answered here)."""
    if timeout is None or literal_address(host) is not None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    answer: queue.SimpleQueue[tuple[_AddrInfo, None] | tuple[None, BaseException]] = queue.SimpleQueue()

    def look_up() -> None:
        try:
            answer.put((socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), None))
        except BaseException as exc:  # handed to the caller, who raises it
            answer.put((None, exc))

    threading.Thread(target=look_up, name="vuq-resolve", daemon=True).start()
    try:
        infos, error = answer.get(timeout=max(timeout, 0.0))
    except queue.Empty:
        raise httpcore.ConnectTimeout(f"cannot resolve {host}: the resolver did not answer within "
                                      f"{timeout:.3g} s") from None
    if error is not None:
        raise error
    assert infos is not None
    return infos


# httpcore exception -> httpx exception, as httpx's HTTPTransport maps them (the most specific wins).
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Re-raise httpcore exceptions as httpx's; anything else (BlockedAddress) passes unchanged."""
    try:
        yield
    except Exception as exc:
        mapped: type[httpx.TransportError] | None = None
        for source, target in _HTTPX_ERRORS:
            if isinstance(exc, source) and (mapped is None or issubclass(target, mapped)):
                mapped = target
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _httpx_errors():
                close()


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over ``httpcore.ConnectionPool(network_backend=GuardedBackend(...))``.

    HTTP/1.1 only, no proxy, no connect retries: what ``httpx.HTTPTransport``
    does by default, with the guard in the one place every connection is made,
    and the calling thread's ``deadline`` kept by every connection (``policy``
    None: no address is refused; the lookup and the deadline hold).
    """

    def __init__(self, policy: NetPolicy | None, *, limits: httpx.Limits | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 inner: httpcore.NetworkBackend | None = None) -> None:
        self.policy = policy
        limits = httpx.Limits() if limits is None else limits
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context() if ssl_context is None else ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=DeadlineBackend(GuardedBackend(policy, inner)),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream), extensions=response.extensions)

    def close(self) -> None:
        with _httpx_errors():
            self._pool.close()


def guarded_client(policy: NetPolicy, timeout: httpx.Timeout, limits: httpx.Limits, *,
                   ssl_context: ssl.SSLContext | None = None) -> httpx.Client:
    """A pooled httpx.Client that connects only where ``policy`` permits; BlockedAddress otherwise.

    ``trust_env=False``: no proxy from the environment (the guard must see the real
    target) and no .netrc. Redirects are not followed unless a request asks.
    """
    transport = GuardedTransport(policy, limits=limits, ssl_context=ssl_context)
    return httpx.Client(transport=transport, timeout=timeout, trust_env=False, follow_redirects=False)
