"""tasks.outbound.callbacks: one POST to a producer's receiver, cut at a wall-clock deadline however the
receiver paces its answer, reading at most 64 KiB of it. Real sockets on 127.0.0.1 (the hostile
receivers of tests/support), through the SSRF-guarded client."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from tasks.errors import PermanentError, RetryableError
from tasks.outbound.address_policy import BlockedAddress, NetPolicy, parse_allowed_nets
from tasks.outbound.callbacks import DEADLINE_S, MAX_ANSWER_BYTES, post_callback
from tasks.outbound.guarded_transport import guarded_client
from tests.support.hostile import HUGE_ANSWER_BYTES, hostile_receiver
from tests.support.receiver import receiving

BODY = b'{"event":"job.done"}'
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def guarded() -> Iterator[httpx.Client]:
    """The worker's guarded client, with loopback allowed and httpx's generous per-read timeout."""
    policy = NetPolicy(parse_allowed_nets("127.0.0.0/8"))
    with guarded_client(policy, httpx.Timeout(120.0, connect=10.0), httpx.Limits()) as client:
        yield client


def test_the_defaults_are_fifteen_seconds_and_64_kib() -> None:
    assert (DEADLINE_S, MAX_ANSWER_BYTES) == (15.0, 64 * 1024)


def test_a_receiver_answering_one_byte_at_a_time_is_cut_at_the_deadline(guarded: httpx.Client) -> None:
    with hostile_receiver("trickle", interval_s=0.05) as peer:
        began = time.monotonic()
        with pytest.raises(RetryableError, match=r"did not answer within 1 s") as info:
            post_callback(guarded, peer.url, BODY, HEADERS, deadline_s=1.0)
        took = time.monotonic() - began
    assert 0.9 <= took < 1.5, took  # httpx's 120 s read timeout never fired: each byte came in time
    assert info.value.reason == "callback" and "secret-query" not in str(info.value)
    assert 0 < peer.visits[0].sent < 40  # it had trickled part of its status line


def test_a_receiver_that_never_answers_is_cut_at_the_deadline(guarded: httpx.Client) -> None:
    with hostile_receiver("silent") as peer:
        began = time.monotonic()
        with pytest.raises(RetryableError, match=r"did not answer within 0\.5 s"):
            post_callback(guarded, peer.url, BODY, HEADERS, deadline_s=0.5)
        assert time.monotonic() - began < 1.0


def test_a_400_mib_answer_is_read_64_kib_deep_and_dropped(guarded: httpx.Client) -> None:
    with hostile_receiver("huge") as peer:
        tracemalloc.start()
        try:
            status = post_callback(guarded, peer.url, BODY, HEADERS, deadline_s=10.0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        time.sleep(0.2)  # let the receiver notice the closed connection
    assert status == 200
    assert peak < 2 * 1024 * 1024, peak  # not the 400 MiB, nor anything near it
    assert peer.visits[0].sent < HUGE_ANSWER_BYTES // 10  # the connection was closed long before the end


def test_a_short_answer_is_read_whole_and_its_connection_kept(guarded: httpx.Client) -> None:
    with receiving() as hooks:
        assert post_callback(guarded, hooks.url, BODY, HEADERS) == 204
        assert post_callback(guarded, hooks.url, BODY, HEADERS) == 204
    assert [body for _, body in hooks.requests] == [BODY, BODY]


def test_failures_are_still_sorted(guarded: httpx.Client) -> None:
    with receiving(fail_first=1) as hooks:
        with pytest.raises(RetryableError, match="answered 503"):
            post_callback(guarded, hooks.url, BODY, HEADERS)
        assert post_callback(guarded, hooks.url, BODY, HEADERS) == 204
    with pytest.raises(RetryableError, match="failed: ConnectError"):
        post_callback(guarded, "http://127.0.0.1:9/hooks", BODY, HEADERS, deadline_s=2.0)
    with guarded_client(NetPolicy(), httpx.Timeout(5.0), httpx.Limits()) as strict, \
            pytest.raises(BlockedAddress) as blocked:
        post_callback(strict, "http://127.0.0.1:9/hooks", BODY, HEADERS)
    assert isinstance(blocked.value, PermanentError)


def test_the_deadline_ends_with_the_call(guarded: httpx.Client) -> None:
    """A deadline is the attempt's own: the next call, on the same pooled client, has a fresh one."""
    with hostile_receiver("silent") as peer, pytest.raises(RetryableError):
        post_callback(guarded, peer.url, BODY, HEADERS, deadline_s=0.3)
    with receiving() as hooks:
        time.sleep(0.4)
        assert post_callback(guarded, hooks.url, BODY, HEADERS, deadline_s=0.3) == 204
