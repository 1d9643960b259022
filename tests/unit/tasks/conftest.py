"""Fixtures for the tasks/ unit tests: an in-memory Redis per test, the job store over it, a step collector."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fakeredis
import pytest

from tasks.jobstore import JobStore
from tasks.pipeline import Step
from tests.unit.tasks.helpers import RedisFactory


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """One in-memory Redis server per test; clients made from it share its data."""
    return fakeredis.FakeServer()


@pytest.fixture
def redis_factory(fake_server: fakeredis.FakeServer) -> Iterator[RedisFactory]:
    """Make clients of the test's server (two "workers" get two clients); all are flushed and closed after."""
    clients: list[fakeredis.FakeRedis] = []

    def make() -> fakeredis.FakeRedis:
        client = fakeredis.FakeRedis(server=fake_server, decode_responses=True)
        clients.append(client)
        return client

    yield make
    if clients:
        clients[0].flushall()
    for client in clients:
        client.close()


@pytest.fixture
def redis_client(redis_factory: RedisFactory) -> fakeredis.FakeRedis:
    return redis_factory()


@pytest.fixture
def store(redis_client: fakeredis.FakeRedis) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture
def sent() -> list[Step]:
    """The steps a fake ``send`` collected."""
    return []


@pytest.fixture
def send(sent: list[Step]) -> Callable[[Step], None]:
    return sent.append

