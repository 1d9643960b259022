"""tasks.pipeline.deferred: deferred and retried steps published when due on Redis's clock, each exactly once,
with their hand-off time, task id and retry count; and the pump thread that does it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from kombu.exceptions import OperationalError

from tasks.constants import DELAYED_KEY, TAKEN_KEY, TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.job.spec import UploadSpec
from tasks.job.store import Due, JobStore
from tasks.pipeline.deferred import PUMP_BATCH, DelayedStepPump, publish_due
from tasks.pipeline.message import Step
from tasks.pipeline.upload import expectation
from tests.unit.tasks.fakes import wait_until

Published = list[tuple[Step, str | None, int]]


@pytest.fixture
def published() -> Published:
    return []


def publisher(published: Published) -> Callable[[Step, str | None, int], None]:
    return lambda step, task_id, retries: published.append((step, task_id, retries))


def make_job(store: JobStore, job_id: str = "j1") -> None:
    assert store.create(UploadSpec(f"/videos/{job_id}.mp4", job_id=job_id, token="to-token")).created


def test_a_due_step_is_published_once_with_its_handoff_task_id_and_retries(store: JobStore,
                                                                         published: Published) -> None:
    make_job(store)
    step = Step(TASK_CHUNK, "j1", 3, "{'job_id': 'j1', 'chunk': '4/9'}")
    store.later(step.to_member("task-1", 2), 0)
    assert publish_due(store, publisher(published)) == 1
    ((sent, task_id, retries),) = published
    assert (sent.task, sent.job_id, sent.chunk, sent.label, task_id, retries) == (
        TASK_CHUNK, "j1", 3, step.label, "task-1", 2)
    record = store.get("j1")
    assert record is not None and sent.handoff_at is not None
    assert sent.handoff_at == record.handoff_at  # the message carries the hand-off the record notes
    assert publish_due(store, publisher(published)) == 0 and len(published) == 1


def test_a_step_not_yet_due_waits(store: JobStore, published: Published) -> None:
    make_job(store)
    store.later(Step(TASK_FINALIZE, "j1").to_member(), 60)
    assert publish_due(store, publisher(published)) == 0
    assert published == [] and store.redis.zcard(DELAYED_KEY) == 1


def test_a_scheduled_retry_is_published_with_its_count(store: JobStore, published: Published) -> None:
    make_job(store)
    assert store.claim("j1", "w", 5, expectation(TASK_START)).record is not None
    written = store.schedule("j1", "w", Step(TASK_START, "j1").to_member("task-9", 1), 0, expectation(TASK_START),
                             retry_reason="timeout")
    assert written
    assert publish_due(store, publisher(published)) == 1
    assert [(s.task, task_id, retries) for s, task_id, retries in published] == [(TASK_START, "task-9", 1)]
    record = store.get("j1")
    assert record is not None and (record.retries, record.last_retry_reason) == (1, "timeout")
    assert store.lease_holder("j1") is None


def test_two_workers_publish_each_step_once(redis_factory: Callable[[], redis.Redis], published: Published) -> None:
    first, second = JobStore(redis_factory()), JobStore(redis_factory())
    for n in range(5):
        make_job(first, f"j{n}")
        first.later(Step(TASK_START, f"j{n}").to_member(f"t{n}"), 0)
    assert publish_due(first, publisher(published), limit=3) + publish_due(second, publisher(published)) == 5
    assert sorted(task_id or "" for _, task_id, _ in published) == [f"t{n}" for n in range(5)]


def test_a_step_of_a_job_that_is_gone_is_still_published(store: JobStore, published: Published) -> None:
    store.later(Step(TASK_CHUNK, "gone", 1).to_member(), 0)  # its step finds no record and does nothing
    assert publish_due(store, publisher(published)) == 1
    assert store.get("gone") is None


def test_the_pump_publishes_due_steps_until_stopped(store: JobStore, published: Published) -> None:
    make_job(store)
    pump = DelayedStepPump(lambda: store, publisher(published), interval_s=0.02)
    pump.start()
    try:
        store.later(Step(TASK_FINALIZE, "j1").to_member("t1"), 0)
        wait_until(lambda: len(published) == 1, what="the pump to publish")
    finally:
        pump.stop()
    assert not pump._thread.is_alive()
    assert published[0][0].task == TASK_FINALIZE and published[0][1] == "t1"


def test_the_pump_wakes_when_the_earliest_step_is_due_not_at_its_interval(store: JobStore,
                                                                          published: Published) -> None:
    make_job(store)
    store.later(Step(TASK_FINALIZE, "j1").to_member("t1"), 0.3)
    assert store.pop_due().next_in == pytest.approx(0.3, abs=0.1)  # none due yet: when the first will be
    pump = DelayedStepPump(lambda: store, publisher(published), interval_s=60)  # would sleep a minute
    pump.start()
    try:
        wait_until(lambda: len(published) == 1, what="the step published once due")
    finally:
        pump.stop()
    assert store.pop_due().next_in is None  # nothing waits


def test_the_pump_drains_more_than_a_batch(store: JobStore, published: Published) -> None:
    for n in range(PUMP_BATCH + 5):
        store.later(Step(TASK_START, f"j{n}").to_member(), 0)
    pump = DelayedStepPump(lambda: store, publisher(published), interval_s=0.02)
    pump.start()
    try:
        wait_until(lambda: len(published) == PUMP_BATCH + 5, what="every step published")
    finally:
        pump.stop()
    assert len({s.job_id for s, _, _ in published}) == PUMP_BATCH + 5


class FlakyStore(JobStore):
    """Redis fails the first ``failures`` times the pump asks for due steps."""

    def __init__(self, client: redis.Redis, failures: int) -> None:
        super().__init__(client)
        self.failures = failures

    def pop_due(self, limit: int = 100, taken_timeout_s: float = 30) -> Due:
        if self.failures > 0:
            self.failures -= 1
            raise redis.ConnectionError("Redis went away (injected)")
        return super().pop_due(limit, taken_timeout_s)


def test_the_pump_keeps_going_through_a_redis_error(redis_client: redis.Redis, published: Published) -> None:
    flaky = FlakyStore(redis_client, failures=3)
    flaky.later(Step(TASK_START, "j1").to_member(), 0)
    pump = DelayedStepPump(lambda: flaky, publisher(published), interval_s=0.02)
    pump.start()
    try:
        wait_until(lambda: len(published) == 1, what="a publication after the errors")
    finally:
        pump.stop()
    assert flaky.failures == 0


class BrokerDown:
    """A publisher whose broker connection fails the first ``failures`` publications."""

    def __init__(self, published: Published, failures: int) -> None:
        self.published, self.failures = published, failures

    def __call__(self, step: Step, task_id: str | None, retries: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("broker connection lost (injected)")
        self.published.append((step, task_id, retries))


def test_a_step_whose_publication_fails_is_held_and_published_next_round(store: JobStore,
                                                                         published: Published) -> None:
    make_job(store)
    store.later(Step(TASK_CHUNK, "j1", 2).to_member("t1", 1), 0)
    store.later(Step(TASK_FINALIZE, "j2").to_member("t2"), 0)
    held: list[tuple[float, str]] = []
    publish = BrokerDown(published, failures=1)
    with pytest.raises(OperationalError):
        publish_due(store, publish, held=held)
    assert len(held) == 2 and store.redis.zcard(DELAYED_KEY) == 0  # taken from the set, not lost
    assert publish_due(store, publish, held=held) == 2
    assert held == [] and sorted(task_id or "" for _, task_id, _ in published) == ["t1", "t2"]


def test_the_pump_publishes_through_a_broker_outage(store: JobStore, published: Published) -> None:
    make_job(store)
    store.later(Step(TASK_CHUNK, "j1", 1).to_member("t1", 1), 0)
    pump = DelayedStepPump(lambda: store, BrokerDown(published, failures=5), interval_s=0.02,
                           outages=(OperationalError,))
    pump.start()
    try:
        wait_until(lambda: len(published) == 1, what="the held step published once the broker is back")
    finally:
        pump.stop()
    assert published[0][1:] == ("t1", 1) and pump.held == []


def test_a_stopping_pump_gives_back_what_it_could_not_publish(store: JobStore, published: Published) -> None:
    make_job(store)
    store.later(Step(TASK_CHUNK, "j1", 1).to_member("t1"), 0)
    pump = DelayedStepPump(lambda: store, BrokerDown(published, failures=10**6), interval_s=0.02,
                           outages=(OperationalError,))
    pump.start()
    try:
        wait_until(lambda: bool(pump.held), what="the pump to take the step")
    finally:
        pump.stop()
    assert published == [] and pump.held == []
    assert publish_due(store, publisher(published)) == 1  # back in the set, due at once
    assert published[0][1] == "t1"


def test_a_published_step_is_confirmed(store: JobStore, published: Published) -> None:
    make_job(store)
    store.later(Step(TASK_CHUNK, "j1", 1).to_member("t1"), 0)
    assert publish_due(store, publisher(published)) == 1
    assert store.redis.zcard(TAKEN_KEY) == 0 and store.redis.zcard(DELAYED_KEY) == 0


def test_a_step_taken_but_never_confirmed_is_due_again(store: JobStore, published: Published) -> None:
    """The take ran in Redis but its reply was lost (a command delivered late after a partition), or
    the pump died before publishing: after the timeout another pump publishes the step."""
    make_job(store)
    step = Step(TASK_CHUNK, "j1", 1)
    store.later(step.to_member("t1", 2), 0)
    taken = store.pop_due().members  # the reply that never reached its pump
    assert len(taken) == 1 and store.redis.zcard(TAKEN_KEY) == 1
    assert publish_due(store, publisher(published)) == 0  # not yet: its pump may still publish it
    again = store.pop_due(taken_timeout_s=0).members
    assert again == taken and store.redis.zcard(TAKEN_KEY) == 1
    assert Step.from_member(again[0])[1:] == ("t1", 2)


def test_a_given_back_step_leaves_the_taken_set(store: JobStore) -> None:
    store.later(Step(TASK_CHUNK, "j1", 1).to_member(), 0)
    taken = store.pop_due().members
    store.give_back(taken)
    assert store.redis.zcard(TAKEN_KEY) == 0 and store.redis.zrange(DELAYED_KEY, 0, -1) == taken
