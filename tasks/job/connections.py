"""Redis connections for the job store, the limiter and the producer: plain URLs, or Sentinel.

Every client has timeouts, TCP keepalive and periodic health checks, so a connection a
network partition left half-open is noticed and replaced rather than waited on forever.
With Redis Sentinel the URL lists the sentinels, as Celery's transport takes it
(``sentinel://USER:PASSWORD@h1:26379/0;sentinel://h2:26379;…``; the user and password are the
primary's), and ``VUQ_SENTINEL_MASTER`` names the primary they monitor; the client asks them
where the primary is and asks again after a failover. ``where(url)`` names a Redis for
messages: hosts and ports, never a password.

TLS: a ``rediss://`` URL (or a ``sentinel://`` URL with ``ssl_*`` parameters: TLS to the primary,
not to the sentinels) carries its TLS options in its query, under the names redis-py and kombu
both read (``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_check_hostname``), so the job store, the broker and a producer's Celery app all connect
alike. ``tasks.settings`` completes the URLs (verification on unless the URL says
``ssl_cert_reqs=none``; files and a password from settings); ``unreachable`` names a certificate
that was refused, and why.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

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
TLS_SCHEME = "rediss"
DEFAULT_SENTINEL_PORT = 26379
TLS_PREFIX = "ssl_"  # query parameters that are TLS options (redis-py's and kombu's names)
CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
HOSTNAME_MISMATCH = 62  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH


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
    parts = [urlsplit(part) for part in _parts(url)]
    return [(part.hostname or "127.0.0.1", part.port or DEFAULT_SENTINEL_PORT) for part in parts]


def _parts(url: str) -> list[str]:
    return [part for part in url.split(";") if part.strip()]


def url_password(url: str) -> str | None:
    """The password a Redis or sentinel URL carries (the first one that has any), decoded."""
    return next((unquote(p) for p in (urlsplit(part).password for part in _parts(url)) if p), None)


def url_username(url: str) -> str | None:
    """The ACL user name a Redis or sentinel URL carries (the first one that has any), decoded."""
    return next((unquote(u) for u in (urlsplit(part).username for part in _parts(url)) if u), None)


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in every part that has none (its user name kept)."""
    def one(part: str) -> str:
        pieces = urlsplit(part)
        if pieces.password:
            return part
        user, _, host = pieces.netloc.rpartition("@")
        netloc = f"{user.split(':')[0]}:{quote(password, safe='')}@{host}"
        return urlunsplit(pieces._replace(netloc=netloc))

    return ";".join(one(part) for part in _parts(url))


def url_query(url: str) -> dict[str, str]:
    """The query parameters of a URL (of its first part, for sentinel URLs)."""
    parts = _parts(url)
    return dict(parse_qsl(urlsplit(parts[0]).query)) if parts else {}


def with_query(url: str, parameters: Mapping[str, str]) -> str:
    """``url`` with ``parameters`` set in the query of every part (sentinel URLs: each sentinel)."""
    def one(part: str) -> str:
        pieces = urlsplit(part)
        query = {**dict(parse_qsl(pieces.query)), **parameters}
        return urlunsplit(pieces._replace(query=urlencode(query, safe="/")))

    return ";".join(one(part) for part in _parts(url))


def uses_tls(url: str) -> bool:
    """``rediss://``, or a sentinel URL whose primary is reached over TLS (``ssl_*`` parameters)."""
    scheme = urlsplit(url).scheme
    return scheme == TLS_SCHEME or (scheme == SENTINEL_SCHEME and any(k.startswith(TLS_PREFIX) for k in url_query(url)))


def is_false(value: str) -> bool:
    """A URL flag written as false (``false``, ``0``, ``no``, ``off``): redis-py and kombu disagree on some."""
    return value.strip().lower() in ("false", "0", "no", "off", "n", "f")


def cert_reqs_name(value: str) -> str | None:
    """``required``, ``optional`` or ``none`` for an ``ssl_cert_reqs`` value (``CERT_NONE`` too); None
    for a value neither redis-py nor kombu takes."""
    name = value.strip().lower().removeprefix("cert_")
    return name if name in CERT_REQS else None


def verifies_tls(url: str) -> bool:
    """Whether a TLS URL checks the server's certificate and host name (the default)."""
    query = url_query(url)
    return (cert_reqs_name(query.get("ssl_cert_reqs", "required")) != "none"
            and not is_false(query.get("ssl_check_hostname", "true")))


def tls_options(url: str) -> dict[str, Any]:
    """The TLS options of ``url`` as redis-py's keyword arguments and Celery's ``broker_use_ssl``
    (``ssl_cert_reqs`` as an ``ssl`` constant); empty without TLS."""
    if not uses_tls(url):
        return {}
    query = url_query(url)
    options: dict[str, Any] = {k: v for k, v in query.items() if k in TLS_FILES}
    options["ssl_cert_reqs"] = CERT_REQS[cert_reqs_name(query.get("ssl_cert_reqs", "required")) or "required"]
    if "ssl_check_hostname" in query:
        options["ssl_check_hostname"] = not is_false(query["ssl_check_hostname"])
    return options


def redis_client(url: str, sentinel: SentinelOptions | None = None) -> redis.Redis:
    """A decoding client for ``url`` with timeouts, keepalive and health checks; for sentinel URLs,
    a client of the primary ``sentinel.master`` that follows failovers."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, decode_responses=True, health_check_interval=HEALTH_CHECK_INTERVAL_S,
                                    retry_on_timeout=True, **_common())
    if sentinel is None:
        raise ValueError("a sentinel:// URL needs the name of the primary (VUQ_SENTINEL_MASTER)")
    first = urlsplit(_parts(url)[0])
    database = int(first.path.strip("/") or 0)
    sentinels = Sentinel(sentinel_nodes(url), sentinel_kwargs={**_common(), "password": sentinel.password},
                         **_common())
    tls = {"ssl": True, **tls_options(url)} if uses_tls(url) else {}
    return sentinels.master_for(sentinel.master, decode_responses=True, username=url_username(url),
                                password=url_password(url), db=database,
                                health_check_interval=HEALTH_CHECK_INTERVAL_S, retry_on_timeout=True, **tls)


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
    """One line for a Redis that did not answer, or whose TLS certificate was refused: where, and
    why (without any secret)."""
    refused = tls_refusal(exc)
    if refused:
        return f"{what} at {where(url)}: {refused}"
    reason = str(exc).strip().rstrip(".") or type(exc).__name__
    password = url_password(url)
    if password:
        reason = reason.replace(password, "***").replace(quote(password, safe=""), "***")
    return f"cannot reach {what} at {where(url)}: {reason}"


def tls_refusal(exc: BaseException) -> str | None:
    """What went wrong in a TLS handshake behind ``exc`` (redis-py and kombu wrap it), and the fix;
    None when ``exc`` is not about TLS."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = getattr(cause, "verify_message", None) or str(cause)
            if getattr(cause, "verify_code", None) == HOSTNAME_MISMATCH:
                return f"its TLS certificate does not name this host ({reason}); use a host name it names"
            return (f"its TLS certificate could not be verified ({reason}); set VUQ_REDIS_TLS_CA_FILE "
                    "(or ssl_ca_certs in the URL) to the CA that signed it")
        if isinstance(cause, ssl.SSLError):
            return (f"the TLS handshake failed ({cause.reason or cause}); check the server's TLS port and, if it "
                    "asks for one, the client certificate (VUQ_REDIS_TLS_CERT_FILE, VUQ_REDIS_TLS_KEY_FILE)")
        cause = cause.__cause__ or cause.__context__
    return None
