"""workers.process.broker against a real Redis: an acknowledgement that cannot reach Redis gives the worker's
prefetch slot back (kombu's own QoS keeps counting the message, and a prefetch-1 worker goes deaf)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from workers.process import broker

STOCK = "kombu.transport.redis:Transport"
OURS = broker.Transport


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    name = f"ack-{uuid.uuid4().hex[:8]}"
    yield Queue(name, Exchange(name, type="direct"), routing_key=name)
    client = redis.Redis.from_url(redis_url)
    client.delete(name)
    client.close()


def held_message(conn: Connection, queue: Queue) -> tuple[Any, Any]:
    """A channel with a prefetch of 1 holding one unacknowledged message."""
    with conn.Producer() as producer:
        producer.publish({"step": 1}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue])
    channel = conn.channel()
    channel.basic_qos(0, 1, False)
    message = channel.basic_get(queue.name, no_ack=False)
    assert message is not None and not channel.qos.can_consume()
    return channel, message


def redis_unreachable(failures: int) -> Any:
    """A ``_remove_from_indices`` that fails ``failures`` times, then works."""
    real = broker.QoS._remove_from_indices
    left = [failures]

    def remove(self: broker.QoS, delivery_tag: Any, pipe: Any = None) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise redis.ConnectionError("Error 32 while writing to socket. Broken pipe. (injected)")
        return real(self, delivery_tag, pipe)

    return remove


def test_kombus_own_qos_keeps_the_slot_after_a_failed_ack(redis_url: str, queue: Queue,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Why workers.process.broker exists: with the stock transport the worker could never consume again."""
    with Connection(redis_url, transport=STOCK) as conn:
        channel, message = held_message(conn, queue)
        monkeypatch.setattr(type(channel.qos), "_remove_from_indices", redis_unreachable(10**6))
        with pytest.raises(redis.ConnectionError):
            channel.qos.ack(message.delivery_tag)
        assert not channel.qos.can_consume()


def test_a_failed_ack_gives_the_slot_back_and_redis_keeps_the_message(redis_url: str, queue: Queue,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker, "PAUSE_S", 0.0)
    with Connection(redis_url, transport=OURS) as conn:
        channel, message = held_message(conn, queue)
        monkeypatch.setattr(broker.QoS, "_remove_from_indices", redis_unreachable(10**6))
        message.ack()
        assert channel.qos.can_consume()
        assert conn.default_channel.client.hexists(channel.unacked_key, message.delivery_tag), \
            "Redis keeps it as unacked, to deliver it again after the visibility timeout"


def test_an_ack_that_fails_once_is_done_on_a_fresh_connection(redis_url: str, queue: Queue,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker, "PAUSE_S", 0.0)
    with Connection(redis_url, transport=OURS) as conn:
        channel, message = held_message(conn, queue)
        monkeypatch.setattr(broker.QoS, "_remove_from_indices", redis_unreachable(1))
        message.ack()
        assert channel.qos.can_consume()
        assert not conn.default_channel.client.hexists(channel.unacked_key, message.delivery_tag)


def test_a_requeue_that_fails_gives_the_slot_back(redis_url: str, queue: Queue,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker, "PAUSE_S", 0.0)
    with Connection(redis_url, transport=OURS) as conn:
        channel, message = held_message(conn, queue)

        def unreachable(*_: Any, **__: Any) -> None:
            raise redis.ConnectionError("Connection closed by server. (injected)")

        monkeypatch.setattr(broker.QoS, "restore_by_tag", unreachable)
        message.reject(requeue=True)
        assert channel.qos.can_consume()



def clients_made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ``redis.Redis`` objects made from now on."""
    made = [0]
    real = redis.Redis.__init__

    def counting(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        made[0] += 1
        real(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    return made


@pytest.mark.parametrize("transport", [STOCK, OURS], ids=["kombu's", "ours"])
def test_a_channel_keeps_one_redis_client_for_publish_delivery_and_ack(
        redis_url: str, queue: Queue, transport: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with Connection(redis_url, transport=transport) as conn:
        channel, message = held_message(conn, queue)
        message.ack()
        made = clients_made(monkeypatch)
        with conn.Producer(channel) as producer:
            for step in range(10):
                producer.publish({"step": step}, exchange=queue.exchange, routing_key=queue.routing_key)
                got = channel.basic_get(queue.name, no_ack=False)
                assert got is not None and got.payload == {"step": step}
                got.ack()
    if transport is OURS:
        assert made[0] == 0, "a Redis client made per command: redis-py rebuilds its callback table each time"
    else:
        assert made[0] >= 30  # what the change saves: publish, delivery and ack each made one
