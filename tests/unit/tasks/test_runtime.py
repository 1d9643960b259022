"""The per-process clients: pipelines share one TLS context instead of reading the CA bundle each; api.video's
client bounds its name lookup, and goes through a proxy the environment names."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import httpx
import pytest

from tasks import runtime
from tasks.settings import Settings
from tests.support.resolver import silent_resolver


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


def test_api_videos_name_lookup_is_bounded_by_the_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(api_base_url="https://ws.silent.test", http_connect_timeout_s=0.3)
    with silent_resolver(monkeypatch, "ws.silent.test"), runtime.api_http(settings) as http, \
            pytest.raises(httpx.ConnectTimeout, match="did not answer within"):
        http.get("https://ws.silent.test/videos")


def test_behind_a_proxy_api_video_is_reached_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY keeps working: the request goes to the proxy (a CONNECT for api.video's host)."""
    asked: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as proxy:
        def accept() -> None:
            connection, _ = proxy.accept()
            with connection:
                asked.append(connection.recv(4096))
                connection.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=accept, daemon=True).start()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with runtime.api_http(Settings(api_base_url="https://ws.api.video")) as http, pytest.raises(httpx.ProxyError):
            http.get("https://ws.api.video/videos")
    assert asked and asked[0].startswith(b"CONNECT ws.api.video:443 ")
