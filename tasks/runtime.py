"""Per-process clients for the pipeline, built lazily after fork and never at import time.

Two HTTP clients: one for api.video (its base URL is configuration; its name lookup bounded like
every other), and one for sources and callbacks (user input), which connects only where the SSRF
policy permits. Both are
pooled and thread-safe, so a threads pool shares them; each task execution has its own
lease holder id (``new_holder``).
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from urllib.parse import urlsplit

import httpx

from tasks.apivideo.client import ApiClient
from tasks.job.store import job_store
from tasks.outbound.guarded_transport import GuardedTransport, guarded_client
from tasks.pipeline.reports import NULL_REPORTER, Reporter
from tasks.pipeline.upload import Pipeline
from tasks.settings import Settings, get_settings

_pipeline: Pipeline | None = None
_pid: int | None = None
_reporter: Reporter = NULL_REPORTER
_ssl_context: ssl.SSLContext | None = None
HTTP_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)


def http_timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(settings.http_io_timeout_s, connect=settings.http_connect_timeout_s)


def ssl_context() -> ssl.SSLContext:
    """The process's one verifying TLS context, shared by both HTTP clients. Making one reads the
    CA bundle (tens of milliseconds of CPU); a worker makes it before it forks its pool, so every
    child inherits it instead of paying that again at its first task."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


def api_http(settings: Settings) -> httpx.Client:
    """The HTTP client for api.video. Its host is the operator's to choose (no address policy), and its
    name lookup waits no longer than the connect timeout (httpx's own transport waits as long as the
    system resolver does). When the environment names a proxy for its scheme (``HTTPS_PROXY``,
    ``ALL_PROXY``) httpx's own client is kept, proxies and ``NO_PROXY`` read by httpx's own rules: the
    proxy resolves api.video's name."""
    if _proxied(settings.api_base_url):
        return httpx.Client(timeout=http_timeout(settings), limits=HTTP_LIMITS, verify=ssl_context())
    transport = GuardedTransport(None, limits=HTTP_LIMITS, ssl_context=ssl_context())
    return httpx.Client(transport=transport, timeout=http_timeout(settings))


def _proxied(url: str) -> bool:
    """Whether the environment names a proxy for ``url``'s scheme (whether ``NO_PROXY`` exempts the host
    is left to httpx, whose rules differ from urllib's)."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(urlsplit(url).scheme) or proxies.get("all"))


def build_pipeline(settings: Settings, reporter: Reporter = NULL_REPORTER) -> Pipeline:
    store = job_store(settings)
    api = ApiClient(api_http(settings), settings.api_base_url)
    sources = guarded_client(settings.net_policy, http_timeout(settings), HTTP_LIMITS, ssl_context=ssl_context())
    return Pipeline(settings=settings, store=store, api=api, sources=sources, reporter=reporter)


def set_reporter(reporter: Reporter) -> None:
    """Install what reports chunk, state and retry events (metrics, task events)."""
    global _reporter
    _reporter = reporter
    if _pipeline is not None:
        _pipeline.reporter = reporter


def pipeline() -> Pipeline:
    """This process's pipeline; rebuilt in a forked child so no socket is shared across processes."""
    global _pipeline, _pid
    if _pipeline is None or _pid != os.getpid():
        _pipeline, _pid = build_pipeline(get_settings(), _reporter), os.getpid()
    return _pipeline


def reset() -> None:
    global _pipeline, _pid
    _pipeline, _pid = None, None
