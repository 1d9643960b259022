"""Shared test set-up: where Redis is, and whether its absence skips or fails.

Integration tests need a real Redis on 127.0.0.1:6379 (CI starts one). Without
one they skip locally and fail under ``CI=true``. Each session works in its own
Redis database, flushed at the start, so no earlier run leaks in.
"""

from __future__ import annotations

import os

import pytest

from tests.support.redis_check import require_redis

# `make test` runs on several processes (pytest-xdist): each gets databases of its own (13, 14, 15; the
# job store's unit tests 10, 9, 8), so one process's flush never meets another's tests.
XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
TEST_REDIS_DB = int(os.environ.get("VUQ_TEST_REDIS_DB", str(13 + XDIST_INDEX)))
# VUQ_TEST_REDIS (host:port) points a second checkout's run at a Redis of its own.
TEST_REDIS = os.environ.get("VUQ_TEST_REDIS", "127.0.0.1:6379")
TEST_REDIS_URL = f"redis://{TEST_REDIS}/{TEST_REDIS_DB}"
# The test process itself (producers, event receivers) talks to the test database.
os.environ["VUQ_BROKER_URL"] = TEST_REDIS_URL
os.environ.pop("VUQ_REDIS_URL", None)
for _name in ("VUQ_API_KEY", "VUQ_API_KEY_FILE", "VUQ_ALLOWED_ROOTS", "VUQ_QUEUE"):
    os.environ.pop(_name, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-chaos", action="store_true", help="run the long chaos suite (make chaos)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-chaos"):
        return
    skip = pytest.mark.skip(reason="the long chaos run needs --run-chaos (make chaos)")
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis database, flushed once per session; skip (or fail in CI) without Redis."""
    client = require_redis(TEST_REDIS_URL, "the integration tests")
    client.flushdb()
    client.close()
    return TEST_REDIS_URL
