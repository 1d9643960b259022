"""The cluster-wide upload rate limiter, on fakeredis."""

from __future__ import annotations

import fakeredis
import pytest

from tasks.ratelimit import UploadRateLimiter


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def limiter(server: fakeredis.FakeServer, limit: int = 0) -> UploadRateLimiter:
    return UploadRateLimiter(fakeredis.FakeRedis(server=server, decode_responses=True), "https://ws.api.video",
                             limit)


def test_unknown_limit_admits_everything_until_learned(server: fakeredis.FakeServer) -> None:
    assert all(limiter(server).acquire() == 0 for _ in range(50))


def test_two_workers_share_one_budget_of_limit_minus_one(server: fakeredis.FakeServer) -> None:
    a, b = limiter(server), limiter(server)
    a.observe(201, {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "9", "x-ratelimit-retry-after": "60"})
    admitted = sum(1 for i in range(20) if (a if i % 2 else b).acquire() == 0)
    assert admitted == 9
    wait = a.acquire()
    assert 0 < wait <= 60


def test_a_429_blocks_every_worker_for_retry_after(server: fakeredis.FakeServer) -> None:
    a, b = limiter(server), limiter(server)
    a.observe(429, {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-retry-after": "42"})
    assert 41 < b.acquire() <= 42


def test_a_configured_limit_wins_over_the_headers(server: fakeredis.FakeServer) -> None:
    a = limiter(server, limit=3)
    a.observe(201, {"x-ratelimit-limit": "1000"})
    assert [a.acquire() == 0 for _ in range(3)] == [True, True, False]


def test_the_redis_keys_do_not_name_the_account(server: fakeredis.FakeServer) -> None:
    a = limiter(server, limit=5)
    a.acquire()
    keys = fakeredis.FakeRedis(server=server, decode_responses=True).keys("*")
    assert keys and not any("api.video" in key for key in keys)
