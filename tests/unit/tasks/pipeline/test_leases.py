"""tasks.pipeline.leases.LeaseKeeper: the process's timer thread renews each held step's lease, takes back a
lapsed lease nobody took, gives up (``lost``) when another holder has it or the record moved on, rides
out a Redis error, and renews nothing once the step's ``hold`` block ended. Short TTLs; every wait
polls a condition with a deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from tasks.constants import JOB_KEY, LEASE_KEY, TASK_START
from tasks.job.spec import UploadSpec
from tasks.pipeline.leases import LOST, RECLAIMED, RENEWED, LeaseKeeper
from tasks.pipeline.upload import expectation
from tests.unit.tasks.fakes import CLOCK_JOB, CountingStore, wait_until

TTL_S = 0.4  # renewed every 0.1 s
EXPECT = expectation(TASK_START)


@pytest.fixture
def counting(redis_client: redis.Redis) -> CountingStore:
    store = CountingStore(redis_client)
    assert store.create(UploadSpec("/videos/j1.mp4", job_id="j1", token="to-token")).created
    assert store.claim("j1", "me", TTL_S, EXPECT).record is not None
    return store


def lapse(store: CountingStore) -> None:
    store.redis.delete(LEASE_KEY.format(job_id="j1"))


@contextmanager
def clock(keeper: LeaseKeeper, counting: CountingStore) -> Iterator[None]:
    """Hold one more lease on ``keeper``: its renewals show the keeper's rounds going by."""
    assert counting.create(UploadSpec("/videos/clock.mp4", job_id=CLOCK_JOB)).created
    assert counting.claim(CLOCK_JOB, "clock", keeper.ttl_s, EXPECT).record is not None
    with keeper.hold(CLOCK_JOB, "clock", EXPECT):
        yield


def rounds_after(counting: CountingStore, rounds: int) -> None:
    """Wait until the keeper's thread has done ``rounds`` more rounds (renewed the clock's lease)."""
    start = counting.clock_renewals
    wait_until(lambda: counting.clock_renewals >= start + rounds, what=f"{rounds} more rounds")


@pytest.mark.parametrize(("ttl_s", "interval_s"), [(60, 1.0), (4, 1.0), (2, 0.5), (TTL_S, 0.1)])
def test_the_interval_is_a_quarter_of_the_ttl_and_at_most_a_second(counting: CountingStore, ttl_s: float,
                                                                     interval_s: float) -> None:
    assert LeaseKeeper(counting, ttl_s).interval_s == pytest.approx(interval_s)


def test_it_renews_on_its_timer_so_the_lease_outlives_its_ttl(counting: CountingStore) -> None:
    began = time.monotonic()
    keeper = LeaseKeeper(counting, TTL_S)
    with keeper.hold("j1", "me", EXPECT) as held:
        wait_until(lambda: len(counting.renewals) >= 6, what="six renewals")
        elapsed = time.monotonic() - began
        assert counting.lease_holder("j1") == "me"
        assert 0 < counting.redis.pttl(LEASE_KEY.format(job_id="j1")) <= TTL_S * 1000
    assert elapsed > TTL_S  # the lease lived past its TTL because it was renewed...
    assert elapsed >= 5 * keeper.interval_s * 0.9  # ...on the timer, not in a busy loop
    assert set(counting.renewals) == {RENEWED}  # never lost, never taken back
    assert not held.lost.is_set()


def test_it_notes_the_bytes_streamed_and_the_heartbeat(counting: CountingStore) -> None:
    before = float(counting.redis.hget(JOB_KEY.format(job_id="j1"), "heartbeat_at") or 0)
    with LeaseKeeper(counting, TTL_S).hold("j1", "me", EXPECT) as held:
        held.streamed = 1234
        wait_until(lambda: counting.redis.hget(JOB_KEY.format(job_id="j1"), "chunk_bytes") == "1234",
                   what="chunk_bytes noted")
    assert float(counting.redis.hget(JOB_KEY.format(job_id="j1"), "heartbeat_at") or 0) > before


def test_it_takes_back_a_lapsed_lease_nobody_took(counting: CountingStore) -> None:
    lapse(counting)
    with LeaseKeeper(counting, TTL_S).hold("j1", "me", EXPECT) as held:
        wait_until(lambda: RECLAIMED in counting.renewals, what="a reclaim")
        assert counting.lease_holder("j1") == "me"
        wait_until(lambda: len(counting.renewals) >= 2, what="a renewal after the reclaim")
    assert counting.renewals[:2] == [RECLAIMED, RENEWED]
    assert not held.lost.is_set()


def test_a_lease_another_holder_took_is_lost(counting: CountingStore) -> None:
    lapse(counting)
    assert counting.claim("j1", "other", 5, EXPECT).record is not None
    keeper = LeaseKeeper(counting, TTL_S)
    with clock(keeper, counting), keeper.hold("j1", "me", EXPECT) as held:
        wait_until(held.lost.is_set, what="lost")
        rounds_after(counting, 2)  # it gave up on this lease: no more renewals
    assert counting.renewals == [LOST]
    assert counting.lease_holder("j1") == "other"


def test_a_lapsed_lease_of_a_record_that_moved_on_is_lost_not_taken(counting: CountingStore) -> None:
    lapse(counting)
    assert counting.update("j1", None, {"next_chunk": 3})  # another step ran meanwhile
    with LeaseKeeper(counting, TTL_S).hold("j1", "me", EXPECT) as held:
        wait_until(held.lost.is_set, what="lost")
    assert RECLAIMED not in counting.renewals and counting.lease_holder("j1") is None


def test_a_job_that_is_gone_is_lost(counting: CountingStore) -> None:
    counting.redis.delete(JOB_KEY.format(job_id="j1"))
    with LeaseKeeper(counting, TTL_S).hold("j1", "me", EXPECT) as held:
        wait_until(held.lost.is_set, what="lost")
    assert counting.renewals == [-1]


def test_it_keeps_going_through_a_redis_error(counting: CountingStore, caplog: pytest.LogCaptureFixture) -> None:
    assert counting.claim("j1", "me", 2.0, EXPECT).record is not None  # room for three failed ticks
    counting.fail_renewals = 3
    keeper = LeaseKeeper(counting, 2.0)
    keeper.interval_s = 0.05  # tick faster than the TTL needs, so three failures fit well inside it
    with caplog.at_level(logging.INFO, logger="tasks.pipeline.leases"), keeper.hold("j1", "me", EXPECT) as held:
        wait_until(lambda: len(counting.renewals) >= 2, what="renewals after the errors")
        assert counting.lease_holder("j1") == "me"
    assert counting.failures == 3 and counting.renewals[:2] == [RENEWED, RENEWED]
    assert not held.lost.is_set()
    warnings = [r for r in caplog.records if "cannot renew" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per tick
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_the_end_of_a_hold_is_immediate_and_nothing_is_renewed_after_it(counting: CountingStore) -> None:
    keeper = LeaseKeeper(counting, 60)  # a one-second interval
    with clock(keeper, counting):
        with keeper.hold("j1", "me", EXPECT):
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 0.1  # no thread to join: a step's end costs no wait
        rounds_after(counting, 1)
    assert counting.renewals == []


def test_nothing_is_renewed_after_the_step_raised(counting: CountingStore) -> None:
    keeper = LeaseKeeper(counting, TTL_S)
    with clock(keeper, counting):
        with pytest.raises(RuntimeError), keeper.hold("j1", "me", EXPECT):
            wait_until(lambda: len(counting.renewals) >= 1, what="a renewal")
            raise RuntimeError("the step failed")
        done = len(counting.renewals)
        rounds_after(counting, 2)
    assert len(counting.renewals) == done
    assert counting.lease_holder("j1") == "me"  # the lease stays for the adapter to release or reschedule


def test_one_thread_keeps_every_lease_of_the_process(counting: CountingStore) -> None:
    assert counting.create(UploadSpec("/videos/j2.mp4", job_id="j2")).created
    assert counting.claim("j2", "me-too", TTL_S, EXPECT).record is not None
    keeper = LeaseKeeper(counting, TTL_S)
    with keeper.hold("j1", "me", EXPECT):
        thread = keeper._thread
        with keeper.hold("j2", "me-too", EXPECT):
            wait_until(lambda: len(counting.renewals) >= 6, what="renewals of both")
            assert counting.lease_holder("j1") == "me" and counting.lease_holder("j2") == "me-too"
            assert keeper._thread is thread  # the second step started no thread of its own
