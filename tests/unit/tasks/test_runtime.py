"""The per-process clients: pipelines share one TLS context instead of reading the CA bundle each."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from tasks import runtime
from tasks.settings import Settings


def test_pipelines_share_the_process_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:  # every TLS context httpx makes comes here
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(runtime, "_ssl_context", None)
    monkeypatch.setattr(ssl, "create_default_context", counting)
    settings = Settings(redis_url="redis://127.0.0.1:1/0")  # never connected: clients are lazy
    first = runtime.ssl_context()  # what a worker makes before it forks its pool
    for _ in range(3):  # a pool child's pipeline, built at its first task: api and source clients
        runtime.build_pipeline(settings)
    assert made == [first]
