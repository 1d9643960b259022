"""Redis over TLS for the tests of ``rediss://``: a throw-away certificate authority made with the
``openssl`` command line, and a private ``redis-server`` that speaks only TLS::

    ca = CertificateAuthority.create(tmp / "ca")
    with running_tls_redis(tmp / "redis", ca) as server:      # its certificate names 127.0.0.1 only
        env = {"VUQ_BROKER_URL": server.url(), "VUQ_REDIS_TLS_CA_FILE": str(ca.cert)}

The server's certificate names the IP address 127.0.0.1 and nothing else, so ``server.url("localhost")``
reaches the same server under a name its certificate does not hold. ``client_certs=True`` makes the
server ask for a client certificate (``ca.issue(…, client=True)``). Without ``openssl``, or with a
``redis-server`` built without TLS, the test skips (and fails under ``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from workers.lab.services import answers, redis_server_binary
from workers.lab.supervise import Child, free_port, start, wait_until

START_TIMEOUT_S = 20.0
DAYS = "2"


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {why}")
    pytest.skip(why)


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        _unavailable("the openssl command line (to make test certificates)")
    subprocess.run([str(openssl), *args], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority(KeyPair):
    """A self-signed CA in ``directory`` that issues server and client certificates."""

    directory: Path

    @classmethod
    def create(cls, directory: Path, name: str = "vuq test CA") -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / "ca.pem", directory / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                 "-days", DAYS, "-subj", f"/CN={name}")
        return cls(cert, key, directory)

    def issue(self, name: str, alt_names: str = "IP:127.0.0.1", client: bool = False) -> KeyPair:
        """A certificate for ``alt_names`` (``IP:…``/``DNS:…``, comma-separated) signed by this CA."""
        cert, key, request = (self.directory / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr"))
        extensions = self.directory / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        extensions.write_text(f"subjectAltName={alt_names}\nextendedKeyUsage={usage}\n", encoding="utf-8")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
                 "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-CAcreateserial", "-out", str(cert), "-days", DAYS, "-extfile", str(extensions))
        return KeyPair(cert, key)


@dataclass
class TlsRedis:
    """A running TLS-only redis-server on 127.0.0.1."""

    child: Child
    port: int
    ca: CertificateAuthority

    def url(self, host: str = "127.0.0.1", database: int = 0, query: str = "") -> str:
        return f"rediss://{host}:{self.port}/{database}" + (f"?{query}" if query else "")

    def client(self, **options: object) -> redis.Redis:
        """A client that trusts the CA (the tests' own view of the server)."""
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(self.ca.cert),
                           socket_connect_timeout=1, socket_timeout=2, **options)  # type: ignore[arg-type]


@contextmanager
def running_tls_redis(directory: Path, ca: CertificateAuthority, client_certs: bool = False,
                      extra_args: tuple[str, ...] = ()) -> Iterator[TlsRedis]:
    """A redis-server with TLS on a free port (no plain port), stopped on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    server = ca.issue(f"server-{directory.name}")
    port = free_port()
    argv = [redis_server_binary(), "--port", "0", "--bind", "127.0.0.1", "--tls-port", str(port),
            "--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key),
            "--tls-ca-cert-file", str(ca.cert), "--tls-auth-clients", "yes" if client_certs else "no",
            "--dir", str(directory), "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
            "--logfile", "", *extra_args]
    child = start(f"tls-redis-{port}", argv, os.environ, directory)
    running = TlsRedis(child, port, ca)
    admin = ca.issue(f"admin-{port}", client=True)
    probe = running.client(ssl_certfile=str(admin.cert), ssl_keyfile=str(admin.key))
    try:
        wait_until(lambda: _answers(child, probe), START_TIMEOUT_S, f"redis-server with TLS on port {port}")
        yield running
    finally:
        probe.close()
        child.stop()


def _answers(child: Child, client: redis.Redis) -> bool:
    if not child.alive and ("TLS" in child.log() or "tls" in child.log()):
        _unavailable(f"a redis-server built with TLS:\n{child.log()[-500:]}")
    return answers(child, client, "redis-server with TLS")
