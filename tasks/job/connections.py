"""Redis connections for the job store, the limiter and the producer: plain URLs, or Sentinel.

Every client has timeouts, TCP keepalive and periodic health checks, so a connection a
network partition left half-open is noticed and replaced rather than waited on forever.
With Redis Sentinel the URL lists the sentinels, as Celery's transport takes it
(``sentinel://:PASSWORD@h1:26379/0;sentinel://h2:26379;…``; the password is the primary's),
and ``VUQ_SENTINEL_MASTER`` names the primary they monitor; the client asks them where the
primary is and asks again after a failover. ``where(url)`` names a Redis for messages:
hosts and ports, never a password.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

T = TypeVar("T")
SOCKET_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 25
# A dead peer on an idle connection is noticed after about 10 + 3 x 5 = 25 s (Linux).
KEEPALIVE_OPTIONS = {getattr(socket, name): value
                     for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
                     if hasattr(socket, name)}
SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelOptions:
    """Which primary the sentinels monitor, and the sentinels' own password (if they have one)."""

    master: str
    password: str | None = field(default=None, repr=False)


def _common() -> dict[str, Any]:
    return {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_keepalive": True, "socket_keepalive_options": KEEPALIVE_OPTIONS}


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme == SENTINEL_SCHEME


def sentinel_nodes(url: str) -> list[tuple[str, int]]:
    """The (host, port) of each sentinel a ``sentinel://…;sentinel://…`` URL lists."""
    parts = [urlsplit(part) for part in url.split(";") if part.strip()]
    return [(part.hostname or "127.0.0.1", part.port or DEFAULT_SENTINEL_PORT) for part in parts]


def url_password(url: str) -> str | None:
    """The password a Redis or sentinel URL carries (the first one that has any)."""
    return next((p for p in (urlsplit(part).password for part in url.split(";")) if p), None)


def redis_client(url: str, sentinel: SentinelOptions | None = None) -> redis.Redis:
    """A decoding client for ``url`` with timeouts, keepalive and health checks; for sentinel URLs,
    a client of the primary ``sentinel.master`` that follows failovers."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, decode_responses=True, health_check_interval=HEALTH_CHECK_INTERVAL_S,
                                    retry_on_timeout=True, **_common())
    if sentinel is None:
        raise ValueError("a sentinel:// URL needs the name of the primary (VUQ_SENTINEL_MASTER)")
    first = urlsplit(url.split(";")[0])
    database = int(first.path.strip("/") or 0)
    sentinels = Sentinel(sentinel_nodes(url), sentinel_kwargs={**_common(), "password": sentinel.password},
                         **_common())
    return sentinels.master_for(sentinel.master, decode_responses=True, password=url_password(url), db=database,
                                health_check_interval=HEALTH_CHECK_INTERVAL_S, retry_on_timeout=True)


def broker_transport_options(sentinel: SentinelOptions | None) -> dict[str, Any]:
    """Celery's Redis transport options for vuq's connections (and Sentinel's, when used)."""
    options: dict[str, Any] = {**_common(), "health_check_interval": HEALTH_CHECK_INTERVAL_S}
    if sentinel is not None:
        options["master_name"] = sentinel.master
        options["sentinel_kwargs"] = {**_common(), "password": sentinel.password}
    return options


def patiently(call: Callable[[], T], patience_s: float, pause_s: float = 0.5) -> T:
    """``call()``, tried again while Redis is unreachable (a restart, a failover) for up to
    ``patience_s``; its last ConnectionError or TimeoutError if Redis does not come back."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause_s)  # waiting for Redis to answer again, with a deadline


def where(url: str, sentinel: SentinelOptions | None = None) -> str:
    """``host:port`` (and database) of a Redis URL, or its sentinels, for messages; never a password."""
    if is_sentinel(url):
        nodes = ", ".join(f"{host}:{port}" for host, port in sentinel_nodes(url))
        return f"sentinels {nodes}" + (f" (primary {sentinel.master!r})" if sentinel else "")
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    database = parts.path.strip("/")
    return f"{shown}:{parts.port or 6379}" + (f"/{database}" if database and database != "0" else "")


def unreachable(url: str, exc: BaseException, what: str = "Redis") -> str:
    """One line for a Redis that did not answer: where, and why (without any secret)."""
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    password = url_password(url)
    if password:
        reason = reason.replace(password, "***")
    return f"cannot reach {what} at {where(url)}: {reason}"
