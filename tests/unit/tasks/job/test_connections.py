"""tasks.job.connections: passwords and TLS options in URLs, Sentinel's primary reached with the URL's ACL
user (and over TLS when asked), and one line naming a TLS certificate that was refused."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import redis
from redis.sentinel import SentinelManagedSSLConnection

from tasks.job import connections
from tasks.job.connections import (
    SentinelOptions,
    redis_client,
    tls_options,
    unreachable,
    url_password,
    url_query,
    url_username,
    uses_tls,
    verifies_tls,
    with_password,
    with_query,
)

SENTINELS = "sentinel://vuq:pw@h1:26379/2;sentinel://h2:26379;sentinel://h3:26379"


def test_with_password_fills_every_part_without_one_and_keeps_the_user() -> None:
    assert with_password("redis://redis:6379/0", "p@ss word") == "redis://:p%40ss%20word@redis:6379/0"
    assert url_password(with_password("redis://redis:6379/0", "p@ss word")) == "p@ss word"
    assert with_password("redis://vuq@redis:6379/0", "pw") == "redis://vuq:pw@redis:6379/0"
    assert with_password("redis://:other@redis/0", "pw") == "redis://:other@redis/0"
    assert with_password("sentinel://vuq@h1:26379;sentinel://h2:26379", "pw") == (
        "sentinel://vuq:pw@h1:26379;sentinel://:pw@h2:26379")


def test_user_and_password_of_a_sentinel_url() -> None:
    assert url_username(SENTINELS) == "vuq" and url_password(SENTINELS) == "pw"
    assert url_username("redis://redis/0") is None and url_password("redis://redis/0") is None


def test_with_query_sets_parameters_in_every_part() -> None:
    url = with_query("sentinel://h1:26379/0?a=1;sentinel://h2:26379", {"ssl_ca_certs": "/etc/ca.pem"})
    assert url == "sentinel://h1:26379/0?a=1&ssl_ca_certs=/etc/ca.pem;sentinel://h2:26379?ssl_ca_certs=/etc/ca.pem"
    assert url_query(url) == {"a": "1", "ssl_ca_certs": "/etc/ca.pem"}


@pytest.mark.parametrize(("url", "tls", "verified"), [
    ("redis://redis/0", False, True),
    ("rediss://redis/0", True, True),
    ("rediss://redis/0?ssl_cert_reqs=none", True, False),
    ("rediss://redis/0?ssl_check_hostname=false", True, False),
    ("sentinel://h1:26379", False, True),
    ("sentinel://h1:26379?ssl_cert_reqs=required;sentinel://h2", True, True),
])
def test_which_urls_use_tls_and_verify(url: str, tls: bool, verified: bool) -> None:
    assert uses_tls(url) is tls
    assert verifies_tls(url) is verified


def test_tls_options_are_the_urls_own() -> None:
    assert tls_options("redis://redis/0") == {}
    assert tls_options("rediss://redis/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem") == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem"}
    assert tls_options("rediss://redis/0?ssl_cert_reqs=none&ssl_check_hostname=false") == {
        "ssl_cert_reqs": ssl.CERT_NONE, "ssl_check_hostname": False}


class RecordingSentinel:
    """Stands in for redis-py's Sentinel: what the store's client asks of it."""

    made: list[dict[str, Any]] = []

    def __init__(self, nodes: list[tuple[str, int]], **kwargs: Any) -> None:
        self.made.append({"nodes": nodes, **kwargs})

    def master_for(self, name: str, **kwargs: Any) -> str:
        self.made.append({"master": name, **kwargs})
        return "client"


def test_the_stores_sentinel_client_logs_in_as_the_urls_acl_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "Sentinel", RecordingSentinel)
    RecordingSentinel.made = []
    redis_client(SENTINELS, SentinelOptions("vuq-primary", "sentinel-pw"))
    sentinel, master = RecordingSentinel.made
    assert sentinel["nodes"] == [("h1", 26379), ("h2", 26379), ("h3", 26379)]
    assert sentinel["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert master["master"] == "vuq-primary"
    assert (master["username"], master["password"], master["db"]) == ("vuq", "pw", 2)
    assert "ssl" not in master


def test_the_stores_sentinel_client_reaches_the_primary_over_tls_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "Sentinel", RecordingSentinel)
    RecordingSentinel.made = []
    redis_client("sentinel://:pw@h1:26379?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem", SentinelOptions("m"))
    master = RecordingSentinel.made[1]
    assert master["ssl"] is True and master["ssl_ca_certs"] == "/ca.pem"
    assert master["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_a_real_sentinel_pool_makes_tls_connections_to_the_primary() -> None:
    client = redis_client("sentinel://:pw@127.0.0.1:1?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem",
                          SentinelOptions("m"))
    pool = client.connection_pool
    assert pool.connection_class is SentinelManagedSSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem" and pool.connection_kwargs["password"] == "pw"


def verify_error(code: int, message: str) -> redis.ConnectionError:
    """A ConnectionError as redis-py raises it: the ssl module's error chained behind it."""
    cause = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    cause.verify_code, cause.verify_message = code, message
    try:
        try:
            raise cause
        except ssl.SSLError as exc:
            raise redis.ConnectionError(f"Error 1 connecting to redis:6380. {exc}.") from exc
    except redis.ConnectionError as wrapped:
        return wrapped


def test_an_untrusted_certificate_is_named_with_its_fix() -> None:
    refused = verify_error(19, "self-signed certificate in certificate chain")
    line = unreachable("rediss://:hunter2@redis:6380/0", refused)
    assert line == ("Redis at redis:6380: its TLS certificate could not be verified (self-signed certificate in "
                    "certificate chain); set VUQ_REDIS_TLS_CA_FILE (or ssl_ca_certs in the URL) to the CA that "
                    "signed it")
    assert "\n" not in line and "hunter2" not in line


def test_a_certificate_for_another_host_is_named_as_such() -> None:
    line = unreachable("rediss://redis:6380/0", verify_error(62, "Hostname mismatch, certificate is not valid for "
                                                                 "'redis'"), "the broker (Redis)")
    assert line.startswith("the broker (Redis) at redis:6380: its TLS certificate does not name this host")


def test_other_errors_are_still_unreachable_without_the_password() -> None:
    line = unreachable("redis://:p%40ss@redis:6379/0", redis.ConnectionError("Error 111 for p@ss and p%40ss"))
    assert line == "cannot reach Redis at redis:6379: Error 111 for *** and ***"
