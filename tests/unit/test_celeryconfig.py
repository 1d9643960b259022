"""workers.process.celeryconfig and workers.process.broker: Redis and Sentinel URLs get vuq's transport,
rediss:// verifies, and Sentinel's primary is reached as the URL's ACL user."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from kombu import Connection
from kombu.transport import redis as kombu_redis
from redis.connection import SSLConnection
from redis.sentinel import SentinelManagedConnection

from tasks.settings import Settings
from workers.process import broker
from workers.process.celeryconfig import celery_config


@pytest.mark.parametrize(("url", "transport"), [
    ("redis://10.0.0.5:6379/0", broker.Transport),
    ("rediss://redis.internal:6380/0", broker.Transport),
    ("sentinel://h1:26379;sentinel://h2:26379", broker.SentinelTransport),
])
def test_the_broker_url_gets_vuqs_transport_and_keeps_its_scheme(url: str, transport: type) -> None:
    celery_config(Settings.from_env({"VUQ_BROKER_URL": url, "VUQ_SENTINEL_MASTER": "vuq"}))
    conn = Connection(url)
    assert conn.transport_cls == url.split("://")[0]  # what the banner and Flower's broker views read
    assert type(conn.transport) is transport
    assert conn.transport.Channel.QoS is broker.QoS  # type: ignore[attr-defined]


def test_a_rediss_broker_verifies_and_flower_gets_the_same_options(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem", encoding="utf-8")
    settings = Settings.from_env({"VUQ_BROKER_URL": "rediss://redis.internal:6380/0",
                                  "VUQ_REDIS_TLS_CA_FILE": str(ca)})
    config = celery_config(settings)
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
    with caplog.at_level(logging.WARNING, logger="kombu"):
        conn = Connection(config["broker_url"], ssl=config["broker_use_ssl"])  # as Celery makes it
    assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
    assert not [r for r in caplog.records if "insecure" in r.getMessage()]
    assert celery_config(Settings())["broker_use_ssl"] is None


def test_kombu_alone_would_not_verify_a_bare_rediss_url(caplog: pytest.LogCaptureFixture) -> None:
    """Why the URL is completed: kombu falls back to no verification (with a warning) otherwise."""
    with caplog.at_level(logging.WARNING, logger="kombu"):
        conn = Connection("rediss://redis.internal:6380/0")
    assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
    assert any("insecure" in r.getMessage() for r in caplog.records)


class RecordingSentinel:
    """Stands in for redis-py's Sentinel under kombu: records what the broker transport asks for and
    hands out an in-memory Redis, so the channel can be opened without a server."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, nodes: list[tuple[str, int]], **kwargs: Any) -> None:
        self.calls.append(("sentinel", {"nodes": nodes, **kwargs}))

    def master_for(self, name: str, redis_class: Any = None, **kwargs: Any) -> fakeredis.FakeRedis:
        self.calls.append(("master", {"name": name, **kwargs}))
        return fakeredis.FakeRedis()


def test_the_sentinel_broker_logs_in_as_the_urls_acl_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kombu_redis.sentinel, "Sentinel", RecordingSentinel)
    RecordingSentinel.calls = []
    settings = Settings.from_env({"VUQ_BROKER_URL": "sentinel://vuq@h1:26379/0;sentinel://h2:26379",
                                  "VUQ_SENTINEL_MASTER": "vuq-primary", "VUQ_REDIS_PASSWORD": "pw",
                                  "VUQ_SENTINEL_PASSWORD": "sentinel-pw"})
    config = celery_config(settings)
    with Connection(config["broker_url"], transport_options=config["broker_transport_options"]) as conn:
        assert conn.default_channel is not None  # opening the channel asks the sentinels for the primary
    (_, sentinel), (_, master) = RecordingSentinel.calls[:2]
    assert sentinel["nodes"] == [("h1", 26379), ("h2", 26379)]
    assert sentinel["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert (master["name"], master["username"], master["password"]) == ("vuq-primary", "vuq", "pw")


def test_the_sentinel_broker_reaches_the_primary_over_tls_when_the_url_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kombu_redis.sentinel, "Sentinel", RecordingSentinel)
    RecordingSentinel.calls = []
    settings = Settings.from_env({"VUQ_BROKER_URL": "sentinel://h1:26379/0?ssl_ca_certs=/ca.pem;sentinel://h2:26379",
                                  "VUQ_SENTINEL_MASTER": "vuq-primary"})
    config = celery_config(settings)
    with Connection(config["broker_url"], ssl=config["broker_use_ssl"],
                    transport_options=config["broker_transport_options"]) as conn:
        assert conn.default_channel is not None
    (_, sentinel), _ = RecordingSentinel.calls[:2]
    connection = sentinel["connection_class"]  # what reaches the primary
    assert issubclass(connection, SentinelManagedConnection) and issubclass(connection, SSLConnection)
    assert (sentinel["ssl_ca_certs"], sentinel["ssl_cert_reqs"]) == ("/ca.pem", ssl.CERT_REQUIRED)
    assert "ssl" not in sentinel["sentinel_kwargs"]  # the sentinels themselves: plain TCP
