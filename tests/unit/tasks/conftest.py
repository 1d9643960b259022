"""Fixtures for the tasks/ unit tests: a Redis per test, the job store over it, a step collector.

The Redis is fakeredis unless a test asks for both backends (``helpers.both_backends``); then it
runs once more against a real Redis (``helpers.REAL_REDIS_URL``, database 10, flushed before each
test). Without a Redis there those runs skip, and fail when ``CI=true`` (as tests/conftest.py does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from tasks.job.store import JobStore
from tasks.pipeline.message import Step
from tests.support.redis_check import require_redis
from tests.unit.tasks.helpers import FAKE, REAL, REAL_REDIS_URL, RedisFactory
from tests.unit.tasks.rig import build, clip, fake  # noqa: F401 - the pipeline rig's fixtures


@pytest.fixture(scope="session")
def real_redis_url() -> str:
    """The real Redis the job store's scripts are also tested on; skip (or fail in CI) without it."""
    require_redis(REAL_REDIS_URL, "the job store's scripts, else tested on fakeredis only").close()
    return REAL_REDIS_URL


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    """Which Redis the test's clients talk to: fakeredis, unless parametrized (``both_backends``)."""
    backend = str(getattr(request, "param", FAKE))
    assert backend in (FAKE, REAL), backend
    return backend


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """One in-memory Redis server per test; clients made from it share its data."""
    return fakeredis.FakeServer()


@pytest.fixture
def redis_factory(request: pytest.FixtureRequest, redis_backend: str,
                  fake_server: fakeredis.FakeServer) -> Iterator[RedisFactory]:
    """Make clients of the test's Redis (two "workers" get two clients); all are closed after."""
    clients: list[redis.Redis] = []
    if redis_backend == REAL:
        url = str(request.getfixturevalue("real_redis_url"))
        admin = redis.Redis.from_url(url)
        admin.flushdb()
        admin.close()

        def connect() -> redis.Redis:
            return redis.Redis.from_url(url, decode_responses=True)
    else:
        def connect() -> redis.Redis:
            return fakeredis.FakeRedis(server=fake_server, decode_responses=True)

    def make() -> redis.Redis:
        client = connect()
        clients.append(client)
        return client

    yield make
    if clients and redis_backend == FAKE:
        clients[0].flushall()
    for client in clients:
        client.close()


@pytest.fixture
def redis_client(redis_factory: RedisFactory) -> redis.Redis:
    return redis_factory()


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture
def sent() -> list[Step]:
    """The steps a fake ``send`` collected."""
    return []


@pytest.fixture
def send(sent: list[Step]) -> Callable[[Step], None]:
    return sent.append


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A directory of source videos (resolved: the allowed-roots check compares real paths)."""
    path = tmp_path / "videos"
    path.mkdir()
    return path.resolve()
