"""tasks.apivideo.limiter: the fleet's per-class limiter for api.video's budgets (upload, write, read), shared
through Redis (fakeredis here), and parse_rate_limits for VUQ_RATE_LIMITS."""

from __future__ import annotations

import fakeredis
import pytest

from tasks.apivideo.limiter import UNLIMITED_PER_MINUTE, WINDOW_S, FleetLimiter, parse_rate_limits

ACCOUNT = "https://ws.api.video"


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def limiter(server: fakeredis.FakeServer, configured: dict[str, int] | None = None,
            account: str = ACCOUNT) -> FleetLimiter:
    """One worker's limiter; two calls are two workers sharing the server."""
    return FleetLimiter(fakeredis.FakeRedis(server=server, decode_responses=True), account, configured)


def admitted(fleet: list[FleetLimiter], request_class: str, tries: int) -> int:
    return sum(1 for n in range(tries) if fleet[n % len(fleet)].acquire(request_class) == 0)


# -- per class -----------------------------------------------------------------------------
def test_each_class_has_its_own_budget_and_keys(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 3, "write": 4, "read": 5})
    assert (admitted([worker], "upload", 10), admitted([worker], "write", 10), admitted([worker], "read", 10)) == (
        2, 3, 4)  # limit - 1 each, one spent on one class leaves the others untouched
    assert len(set(worker.keys.values())) == 3
    assert len({key for pair in worker.keys.values() for key in pair}) == 6


def test_a_blocked_class_does_not_block_the_others(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("upload", 429, {"x-ratelimit-retry-after": "30"})
    assert worker.acquire("upload") > 0
    assert worker.acquire("write") == 0 and worker.acquire("read") == 0


def test_workers_share_one_budget(server: fakeredis.FakeServer) -> None:
    fleet = [limiter(server, {"upload": 10}), limiter(server, {"upload": 10})]
    assert admitted(fleet, "upload", 20) == 9
    wait = fleet[0].acquire("upload")
    assert 0 < wait <= WINDOW_S


def test_another_account_has_its_own_budget(server: fakeredis.FakeServer) -> None:
    assert admitted([limiter(server, {"upload": 3})], "upload", 5) == 2
    assert admitted([limiter(server, {"upload": 3}, account="https://sandbox.api.video")], "upload", 5) == 2


def test_the_redis_keys_do_not_name_the_account(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 5})
    worker.acquire("upload")
    worker.observe("upload", 429, {"x-ratelimit-retry-after": "1"})
    keys = fakeredis.FakeRedis(server=server, decode_responses=True).keys("*")
    assert len(keys) == 2 and not any("api.video" in key for key in keys)


# -- configured and learned limits -----------------------------------------------------------
def test_an_unknown_limit_admits_everything(server: fakeredis.FakeServer) -> None:
    assert admitted([limiter(server)], "upload", 50) == 50


def test_a_limit_is_learned_from_the_headers_for_every_worker(server: fakeredis.FakeServer) -> None:
    first, second = limiter(server), limiter(server)
    first.observe("upload", 201, {"x-ratelimit-limit": "5", "x-ratelimit-remaining": "4"})
    assert admitted([second], "upload", 10) == 4
    assert second.usage("upload") == (4, 5)


def test_requests_before_the_limit_was_learned_count_once_it_is(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    assert admitted([worker], "write", 3) == 3
    worker.observe("write", 200, {"x-ratelimit-limit": "5"})
    assert admitted([worker], "write", 5) == 1  # 3 + 1 = limit - 1


def test_a_configured_limit_wins_over_the_headers(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 3})
    worker.observe("upload", 201, {"x-ratelimit-limit": "1000"})
    assert admitted([worker], "upload", 5) == 2
    assert worker.usage("upload") == (2, 3)


def test_a_limit_no_fleet_reaches_is_not_paced(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("read", 200, {"x-ratelimit-limit": str(UNLIMITED_PER_MINUTE)})
    assert admitted([worker], "read", 20) == 20
    assert worker.usage("read")[0] == 0  # not even logged: no round trip


@pytest.mark.parametrize("value", ["", "abc", "0"])
def test_a_missing_or_bad_limit_header_is_ignored(server: fakeredis.FakeServer, value: str) -> None:
    worker = limiter(server)
    worker.observe("upload", 201, {"x-ratelimit-limit": value})
    assert worker.usage("upload") == (0, 0)


# -- blocking until Retry-After ------------------------------------------------------------
def test_a_429_blocks_every_worker_until_retry_after(server: fakeredis.FakeServer) -> None:
    first, second = limiter(server), limiter(server)
    first.observe("upload", 429, {"x-ratelimit-limit": "100", "x-ratelimit-retry-after": "42"})
    assert 41 < second.acquire("upload") <= 42


def test_remaining_zero_blocks_until_retry_after(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("write", 201, {"x-ratelimit-remaining": "0", "x-ratelimit-retry-after": "20"})
    assert 19 < worker.acquire("write") <= 20


def test_remaining_requests_do_not_block(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("write", 201, {"x-ratelimit-remaining": "3", "x-ratelimit-retry-after": "20"})
    assert worker.acquire("write") == 0


def test_a_shorter_block_does_not_cut_a_longer_one(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("upload", 429, {"x-ratelimit-retry-after": "50"})
    worker.observe("upload", 429, {"x-ratelimit-retry-after": "5"})
    assert worker.acquire("upload") > 45


def test_a_429_without_retry_after_does_not_block(server: fakeredis.FakeServer) -> None:
    worker = limiter(server)
    worker.observe("upload", 429, {})
    assert worker.acquire("upload") == 0


# -- usage ---------------------------------------------------------------------------------
def test_usage_counts_the_requests_of_the_last_minute_per_class(server: fakeredis.FakeServer) -> None:
    worker = limiter(server, {"upload": 10})
    assert worker.usage("upload") == (0, 10)
    admitted([worker], "upload", 3)
    admitted([worker], "read", 2)
    assert worker.usage("upload") == (3, 10)
    assert worker.usage("read") == (2, 0)  # counted, limit not known yet
    assert worker.usage("write") == (0, 0)


# -- VUQ_RATE_LIMITS -----------------------------------------------------------------------
@pytest.mark.parametrize(("text", "limits"), [
    ("upload=100,write=200,read=500", {"upload": 100, "write": 200, "read": 500}),
    ("upload=40", {"upload": 40}),
    (" read = 7 , write=1,", {"read": 7, "write": 1}),
    ("", {}),
])
def test_rate_limits_parse_any_subset(text: str, limits: dict[str, int]) -> None:
    assert parse_rate_limits(text) == limits


@pytest.mark.parametrize(("text", "message"), [
    ("uploads=10", r"'uploads=10' is not CLASS=N with CLASS one of upload, write, read"),
    ("upload", r"'upload' is not CLASS=N"),
    ("upload=0", r"upload: '0' is not a whole number of requests a minute, at least 1"),
    ("write=-3", r"write: '-3' is not a whole number"),
    ("read=1.5", r"read: '1.5' is not a whole number"),
    ("upload=ten", r"upload: 'ten' is not a whole number"),
    ("upload=10,read=", r"read: '' is not a whole number"),
])
def test_bad_rate_limits_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate_limits(text)
