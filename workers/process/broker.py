"""Celery's Redis transport (plain and Sentinel) with one change: an acknowledgement that cannot
reach Redis no longer takes the worker's prefetch slot with it.

kombu's Redis QoS first removes a message from Redis's unacked set, then from its own count of
the messages this worker holds. When the removal fails (a partition killed the connection and
the first command after the heal finds it dead), kombu logs "Couldn't ack" and goes on counting
the message as held: with vuq's prefetch of 1 the worker never asks for another message, a
deaf worker that looks alive. Here the removal is tried again on fresh connections (Redis is
usually back by then); if Redis still cannot take it, the message is let go here anyway. Redis
keeps it as unacked and delivers it again after the visibility timeout, and the job's lease and
step fencing make that copy a no-op.

And one change for speed: kombu makes a new ``redis.Redis`` for every publish, delivery and ack,
and each one rebuilds redis-py's table of some 170 response callbacks (redis-py #3624): about a
third of a millisecond of CPU each on a small machine, several times on the way from one chunk to
the next. A channel here keeps one client per connection pool (the client is only a thread-safe
handle on the pool; a new pool after a fork or a disconnect gets a new client).

``install()`` (called by ``celery_config``) makes them what kombu uses for ``redis://``,
``rediss://`` and ``sentinel://`` URLs in this process, so the URLs, the worker's banner and
Flower's broker views stay as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

log = logging.getLogger(__name__)
ATTEMPTS = 3
PAUSE_S = 0.2


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS whose ack and reject always give the prefetch slot back."""

    def ack(self, delivery_tag: Any) -> None:
        self._in_redis(lambda: self._remove_from_indices(delivery_tag).execute(), "acknowledge", delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if requeue:
            self._in_redis(lambda: self.restore_by_tag(delivery_tag, leftmost=True), "requeue", delivery_tag)
        else:
            self._in_redis(lambda: self._remove_from_indices(delivery_tag).execute(), "reject", delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def _in_redis(self, call: Callable[[], object], what: str, delivery_tag: Any) -> None:
        errors = self.channel.connection_errors
        for attempt in range(1, ATTEMPTS + 1):
            try:
                call()
                return
            except errors as exc:
                if attempt == ATTEMPTS:
                    log.warning("could not %s message %s in Redis (%s); Redis delivers it again after the "
                                "visibility timeout, where its step finds its job moved on", what, delivery_tag,
                                type(exc).__name__)
                    return
                # a partition may have killed every idle connection of the pool: start afresh
                self.channel.pool.disconnect(inuse_connections=False)  # the pool acks and requeues use
                time.sleep(PAUSE_S)  # a short pause on the event loop, only after a connection error


class OneClient:
    """A channel mixin: one ``redis.Redis`` per connection pool instead of one per command group."""

    _one_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        if self._one_client is None or self._one_client.connection_pool is not pool:
            self._one_client = super()._create_client()  # type: ignore[misc]
        return self._one_client


class Channel(OneClient, kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(OneClient, kombu_redis.SentinelChannel):
    QoS = QoS


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORTS = {"redis": f"{__name__}:Transport", "rediss": f"{__name__}:Transport",
              "sentinel": f"{__name__}:SentinelTransport"}


def install() -> None:
    """Use these transports for Redis and Sentinel URLs from now on (idempotent)."""
    for scheme, path in TRANSPORTS.items():
        kombu_transport.TRANSPORT_ALIASES[scheme] = path
        kombu_transport._transport_cache.pop(scheme, None)  # resolved before: resolve again
