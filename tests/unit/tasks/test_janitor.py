"""tasks.janitor: stuck jobs get their next step re-enqueued, once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tasks.constants import JOB_INDEX_KEY, JOB_KEY, LEASE_KEY, TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.janitor import is_stuck, sweep
from tasks.jobstore import JobStore
from tasks.pipeline import Step
from tasks.record import JobRecord, State
from tests.unit.tasks.helpers import put_job

NOW = 1_800_000_000.0
STALE_S = 90.0
Send = Callable[[Step], None]


def stale_uploading(store: JobStore, job_id: str = "j1", **fields: object) -> None:
    put_job(store, job_id, None, **{"state": State.UPLOADING, "chunks_total": 5, "next_chunk": 3,
                              "heartbeat_at": NOW - 300, **fields})


def test_stale_uploading_job_is_re_enqueued_at_its_next_chunk(store: JobStore, send: Send,
                                                              sent: list[Step]) -> None:
    stale_uploading(store)
    assert sweep(store, send, STALE_S, now=NOW) == ["j1"]
    assert sent == [Step(TASK_CHUNK, "j1", 3)]
    job = store.get("j1")
    assert job is not None and job.wake_at == pytest.approx(NOW)
    assert job.state == State.UPLOADING and job.next_chunk == 3


def test_a_second_sweep_right_after_leaves_it_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    stale_uploading(store)
    sweep(store, send, STALE_S, now=NOW)
    assert sweep(store, send, STALE_S, now=NOW + 1) == []
    assert len(sent) == 1


def test_it_is_rescued_again_once_the_rescue_is_stale_too(store: JobStore, send: Send, sent: list[Step]) -> None:
    stale_uploading(store)
    sweep(store, send, STALE_S, now=NOW)
    assert sweep(store, send, STALE_S, now=NOW + STALE_S + 1) == ["j1"]
    assert len(sent) == 2


def test_a_job_with_a_live_lease_is_left_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    stale_uploading(store)
    store.redis.set(LEASE_KEY.format(job_id="j1"), "w1")
    assert sweep(store, send, STALE_S, now=NOW) == []
    assert sent == []
    assert store.get("j1").wake_at is None  # type: ignore[union-attr]


def test_a_fresh_heartbeat_is_left_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    stale_uploading(store, heartbeat_at=NOW - 10)
    assert sweep(store, send, STALE_S, now=NOW) == []
    assert sent == []


def test_a_recent_wake_at_is_left_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    stale_uploading(store, wake_at=NOW - 10)  # a retry is scheduled (countdown) for about now
    assert sweep(store, send, STALE_S, now=NOW) == []
    assert sent == []


def test_a_never_started_queued_job_is_left_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_job(store, "q1")  # its start message is still in the queue: no heartbeat yet
    assert sweep(store, send, STALE_S, now=NOW + 10_000) == []
    assert sent == []


def test_a_started_queued_job_that_went_quiet_is_restarted(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_job(store, "q1", heartbeat_at=NOW - 300)
    assert sweep(store, send, STALE_S, now=NOW) == ["q1"]
    assert sent == [Step(TASK_START, "q1")]


def test_a_stale_finalizing_job_is_finalized(store: JobStore, send: Send, sent: list[Step]) -> None:
    stale_uploading(store, state=State.FINALIZING, next_chunk=5)
    assert sweep(store, send, STALE_S, now=NOW) == ["j1"]
    assert sent == [Step(TASK_FINALIZE, "j1")]


@pytest.mark.parametrize("state", [State.DONE, State.FAILED, State.CANCELLED])
def test_final_jobs_are_never_touched(store: JobStore, send: Send, sent: list[Step], state: State) -> None:
    stale_uploading(store, state=state)
    assert sweep(store, send, STALE_S, now=NOW) == []
    assert sent == []


def test_is_stuck_boundaries() -> None:
    job = JobRecord.from_hash({"job_id": "j", "state": "uploading", "heartbeat_at": str(NOW - STALE_S)})
    assert not is_stuck(job, NOW, STALE_S)
    assert is_stuck(job, NOW + 0.5, STALE_S)


def test_a_stuck_job_behind_a_thousand_newer_finished_jobs_is_rescued(store: JobStore, send: Send,
                                                                      sent: list[Step]) -> None:
    stale_uploading(store, "stuck")
    store.redis.zadd(JOB_INDEX_KEY, {"stuck": 1.0})  # the oldest job
    pipe = store.redis.pipeline(transaction=False)
    for n in range(1000):
        pipe.hset(JOB_KEY.format(job_id=f"done{n}"), mapping={"job_id": f"done{n}", "state": "done"})
        pipe.zadd(JOB_INDEX_KEY, {f"done{n}": 2.0 + n})
    pipe.execute()
    assert sweep(store, send, STALE_S, now=NOW) == ["stuck"]
    assert sent == [Step(TASK_CHUNK, "stuck", 3)]
