"""Per-process clients for the pipeline, built lazily after fork and never at import time."""

from __future__ import annotations

import os
import secrets
import socket

import httpx

from tasks.apiclient import ApiClient
from tasks.auth import AccessTokens
from tasks.jobstore import JobStore
from tasks.observer import NULL_OBSERVER, Observer
from tasks.pipeline import Pipeline
from tasks.ratelimit import UploadRateLimiter
from tasks.redisconn import redis_client
from tasks.settings import Settings, get_settings

_pipeline: Pipeline | None = None
_pid: int | None = None
_observer: Observer = NULL_OBSERVER


def http_client(settings: Settings) -> httpx.Client:
    """One pooled client per process: connections are reused from chunk to chunk."""
    timeout = httpx.Timeout(settings.http_io_timeout_s, connect=settings.http_connect_timeout_s)
    return httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=16, max_keepalive_connections=8))


def build_pipeline(settings: Settings, observer: Observer = NULL_OBSERVER) -> Pipeline:
    http = http_client(settings)
    client = redis_client(settings.redis_url)
    limiter = UploadRateLimiter(client, settings.api_base_url, settings.upload_rate_limit_per_minute)
    api = ApiClient(http, settings.api_base_url, on_upload_answer=limiter.observe)
    holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    return Pipeline(settings=settings, store=JobStore(client), api=api,
                    tokens=AccessTokens(client, api, settings.api_key), http=http, holder=holder,
                    observer=observer, limiter=limiter)


def set_observer(observer: Observer) -> None:
    """Install what reports chunk, state and retry events (metrics, task events)."""
    global _observer
    _observer = observer
    if _pipeline is not None:
        _pipeline.observer = observer


def pipeline() -> Pipeline:
    """This process's pipeline; rebuilt in a forked child so no socket is shared across processes."""
    global _pipeline, _pid
    if _pipeline is None or _pid != os.getpid():
        _pipeline, _pid = build_pipeline(get_settings(), _observer), os.getpid()
    return _pipeline


def reset() -> None:
    global _pipeline, _pid
    _pipeline, _pid = None, None
