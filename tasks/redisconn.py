"""Redis connections for the job store, the limiter and the producer.

Every client has timeouts, TCP keepalive and periodic health checks, so a connection a
network partition left half-open is noticed and replaced rather than waited on forever.
``where(url)`` names a Redis for messages: host and port, never a password.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import redis

SOCKET_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 25
# A dead peer on an idle connection is noticed after about 10 + 3 x 5 = 25 s (Linux).
KEEPALIVE_OPTIONS = {getattr(socket, name): value
                     for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
                     if hasattr(socket, name)}


def redis_client(url: str) -> redis.Redis:
    """A decoding client for ``url`` with timeouts, keepalive and health checks."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S,
                                socket_connect_timeout=CONNECT_TIMEOUT_S, socket_keepalive=True,
                                socket_keepalive_options=KEEPALIVE_OPTIONS,
                                health_check_interval=HEALTH_CHECK_INTERVAL_S, retry_on_timeout=True)


def where(url: str) -> str:
    """``host:port`` (and database) of a Redis URL, for error messages; never the password."""
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
    password = urlsplit(url).password
    if password:
        reason = reason.replace(password, "***")
    return f"cannot reach {what} at {where(url)}: {reason}"
