"""Whether a Redis the tests need answers: skip without it locally, fail under CI=true (CI has one)."""

from __future__ import annotations

import os

import pytest
import redis


def require_redis(url: str, why: str) -> redis.Redis:
    """A client of ``url`` once it answered a PING; else skip, or fail when ``CI=true``."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a Redis at {url} ({why}): {exc}")
        pytest.skip(f"no Redis at {url} ({why}): {exc}")
    return client
