"""workers.process.celeryconfig and workers.process.broker: Redis and Sentinel URLs get vuq's transport."""

from __future__ import annotations

import pytest
from kombu import Connection

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
