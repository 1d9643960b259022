"""tasks.outbound.guarded_transport with real sockets, on the loopback interface only.

The guarded client against small HTTP(S) servers on 127.0.0.1 (and 127.0.0.2 where
a second address is needed): refused by default, reached when 127.0.0.0/8 is
allowed, and names that resolve (through a patched ``socket.getaddrinfo``, so no
real DNS is asked) to loopback addresses are judged by the address connected to.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from tasks.errors import PermanentError
from tasks.outbound.address_policy import BlockedAddress, NetPolicy, check_url, parse_allowed_nets
from tasks.outbound.guarded_transport import GuardedTransport, deadline, guarded_client
from tasks.outbound.sources import HttpSource
from tests.support.range_server import serving
from tests.support.resolver import silent_resolver

TIMEOUT = httpx.Timeout(5.0)
LIMITS = httpx.Limits(max_connections=4, max_keepalive_connections=2)
DEFAULT = NetPolicy()
LOOPBACK = NetPolicy(parse_allowed_nets("127.0.0.0/8"))
ONLY_127_0_0_1 = NetPolicy(parse_allowed_nets("127.0.0.1/32"))


@dataclass
class Served:
    """A running test server: its port, and the Host headers and TLS server names it saw."""

    port: int
    hosts: list[str] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


@contextmanager
def answering(body: bytes, address: str = "127.0.0.1", port: int = 0, *, location: str | None = None,
              tls: ssl.SSLContext | None = None) -> Iterator[Served]:
    """Serve ``body`` to every GET (or a 302 to ``location``) on ``address:port``; TLS with ``tls``."""
    served = Served(port=0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            served.hosts.append(self.headers.get("Host", ""))
            if location is not None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def get_request(self) -> tuple[Any, Any]:
            sock, peer = super().get_request()
            return (tls.wrap_socket(sock, server_side=True) if tls else sock), peer

    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: served.server_names.append(name)
    server = Server((address, port), Handler)
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def resolve_as(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``resolve_as({"rebind.test": ["127.0.0.1"]})``: made-up names resolve there; others as usual.

    Yields the setter; the list it returns records each lookup of a made-up name.
    """
    real = socket.getaddrinfo
    asked: list[str] = []
    answers: dict[str, list[str]] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in answers:
            if isinstance(host, str) and host.endswith(".test"):
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real(host, port, *args, **kwargs)
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in answers[host]]

    def set_answers(mapping: dict[str, list[str]]) -> list[str]:
        answers.update(mapping)
        return asked

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield set_answers


class RecordingBackend(httpcore.SyncBackend):
    """The stock backend, remembering every host it was asked to connect to."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        self.hosts.append(host)
        return super().connect_tcp(host, port, timeout, local_address, socket_options)


def recording_client(policy: NetPolicy) -> tuple[httpx.Client, RecordingBackend]:
    inner = RecordingBackend()
    transport = GuardedTransport(policy, limits=LIMITS, inner=inner)
    return httpx.Client(transport=transport, timeout=TIMEOUT, trust_env=False), inner


def can_bind(address: str) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


needs_127_0_0_2 = pytest.mark.skipif(not can_bind("127.0.0.2"), reason="127.0.0.2 is not a local address here")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A range server on 127.0.0.1 serving ``video.mp4`` (b"0123456789"); yields its base URL."""
    (tmp_path / "video.mp4").write_bytes(b"0123456789")
    with serving(tmp_path) as base:
        yield base


def test_a_loopback_server_is_refused_by_default(site: str) -> None:
    with guarded_client(DEFAULT, TIMEOUT, LIMITS) as client:
        with pytest.raises(BlockedAddress, match=r"^127\.0\.0\.1 is a loopback address") as caught:
            client.get(f"{site}/video.mp4")
        assert not isinstance(caught.value, httpx.HTTPError)
        with pytest.raises(BlockedAddress), client.stream("GET", f"{site}/video.mp4", headers={"Range": "bytes=0-1"}):
            pass


def test_a_loopback_server_is_reached_when_loopback_is_allowed(site: str) -> None:
    with guarded_client(LOOPBACK, TIMEOUT, LIMITS) as client:
        assert client.get(f"{site}/video.mp4").content == b"0123456789"
        with client.stream("GET", f"{site}/video.mp4", headers={"Range": "bytes=2-5"}) as response:
            assert response.status_code == 206 and response.read() == b"2345"


def test_http_source_fails_permanently_on_a_refused_address(site: str) -> None:
    with guarded_client(DEFAULT, TIMEOUT, LIMITS) as client, pytest.raises(BlockedAddress) as caught:
        HttpSource(f"{site}/video.mp4?X-Amz-Signature=abc", client).info()
    assert isinstance(caught.value, PermanentError)


def test_dns_rebinding_is_judged_by_the_address_connected_to(resolve_as: Any) -> None:
    asked = resolve_as({"rebind.test": ["127.0.0.1"]})
    with answering(b"internal") as served:
        url = f"http://rebind.test:{served.port}/secret"
        check_url(url, DEFAULT)  # a host name passes at enqueue: what it resolves to is judged at connect time
        with guarded_client(DEFAULT, TIMEOUT, LIMITS) as client, \
                pytest.raises(BlockedAddress, match=r"^rebind\.test \(127\.0\.0\.1\) is a loopback address"):
            client.get(url)
        assert served.hosts == []  # refused before any byte was sent
        asked.clear()
        with guarded_client(LOOPBACK, TIMEOUT, LIMITS) as client:
            assert client.get(url).content == b"internal"
        assert asked == ["rebind.test"]  # resolved once: the connection is made by IP
        assert served.hosts == [f"rebind.test:{served.port}"]  # the request still names the host


def test_a_name_with_refused_and_permitted_addresses_connects_only_to_the_permitted(resolve_as: Any) -> None:
    resolve_as({"mixed.test": ["169.254.169.254", "10.0.0.1", "127.0.0.1"]})
    with answering(b"permitted") as served:
        client, inner = recording_client(LOOPBACK)
        with client:
            assert client.get(f"http://mixed.test:{served.port}/").content == b"permitted"
        assert inner.hosts == ["127.0.0.1"]  # 169.254.169.254 and 10.0.0.1 were never tried


@needs_127_0_0_2
def test_a_refused_address_is_not_used_even_when_it_answers(resolve_as: Any) -> None:
    """Two addresses, one server: the refused 127.0.0.2 has it, the permitted 127.0.0.1 has none."""
    with answering(b"refused", "127.0.0.2") as refused:
        resolve_as({"mixed.test": ["127.0.0.2", "127.0.0.1"]})
        url = f"http://mixed.test:{refused.port}/"
        with guarded_client(ONLY_127_0_0_1, TIMEOUT, LIMITS) as client, pytest.raises(httpx.ConnectError):
            client.get(url)
        assert refused.hosts == []
        with guarded_client(LOOPBACK, TIMEOUT, LIMITS) as client:  # the server was there all along
            assert client.get(url).content == b"refused"


@needs_127_0_0_2
def test_with_servers_on_both_addresses_the_permitted_one_answers(resolve_as: Any) -> None:
    with answering(b"permitted", "127.0.0.1") as permitted, answering(b"refused", "127.0.0.2", permitted.port):
        resolve_as({"mixed.test": ["127.0.0.2", "127.0.0.1"]})
        with guarded_client(ONLY_127_0_0_1, TIMEOUT, LIMITS) as client:
            assert client.get(f"http://mixed.test:{permitted.port}/").content == b"permitted"


def test_a_redirect_to_the_metadata_address_is_not_followed_and_refused_if_followed() -> None:
    with answering(b"", location="http://169.254.169.254/latest/meta-data/iam/") as served, \
            guarded_client(LOOPBACK, TIMEOUT, LIMITS) as client:
        url = f"http://127.0.0.1:{served.port}/video.mp4"
        assert client.get(url).status_code == 302  # httpx does not follow redirects unless asked
        with pytest.raises(BlockedAddress, match=r"^169\.254\.169\.254 is a link-local address"):
            client.get(url, follow_redirects=True)


def test_a_name_that_does_not_resolve_is_unreachable_not_refused(resolve_as: Any) -> None:
    resolve_as({})
    with guarded_client(DEFAULT, TIMEOUT, LIMITS) as client, pytest.raises(httpx.ConnectError) as caught:
        client.get("http://nxdomain.test/")
    assert not isinstance(caught.value, BlockedAddress)


def test_a_resolver_that_never_answers_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo takes no timeout: the guarded client stops waiting for it after the connect timeout, or
    at the calling thread's deadline when that comes first."""
    with silent_resolver(monkeypatch, "silent.test"), \
            guarded_client(DEFAULT, httpx.Timeout(5.0, connect=0.3), LIMITS) as client:
        with pytest.raises(httpx.ConnectTimeout, match=r"silent\.test: the resolver did not answer within 0\.3 s"):
            client.get("http://silent.test/")
        with deadline(time.monotonic() + 0.2), pytest.raises(httpx.ConnectTimeout, match=r"within 0\.2"):
            client.get("http://silent.test/")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate naming only rebind.test (no IP address), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=rebind.test", "-addext", "subjectAltName=DNS:rebind.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_checks_the_host_name_although_the_connection_is_made_by_ip(
        resolve_as: Any, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    resolve_as({"rebind.test": ["127.0.0.1"]})
    with answering(b"over tls", tls=server_tls) as served, \
            guarded_client(LOOPBACK, TIMEOUT, LIMITS, ssl_context=client_tls) as client:
        assert client.get(f"https://rebind.test:{served.port}/").content == b"over tls"
        assert served.server_names == ["rebind.test"]  # SNI carries the name, not 127.0.0.1
        # The same server by IP: the certificate does not name 127.0.0.1, so verification fails.
        with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
            client.get(f"https://127.0.0.1:{served.port}/")
