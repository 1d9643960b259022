"""tasks.operations: resume, cancel and retry_failed over the store."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tasks.constants import JOB_KEY, TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.jobstore import JobStore
from tasks.operations import OperationError, cancel, next_step, resume, retry_failed
from tasks.pipeline import Step
from tasks.record import State
from tests.unit.tasks.helpers import put_job

Send = Callable[[Step], None]


def failed_job(store: JobStore, job_id: str = "j1", next_chunk: int = 2, retryable: bool = True) -> None:
    put_job(store, job_id, state=State.FAILED, chunks_total=5, next_chunk=next_chunk, error="api.video timed out",
            error_retryable="1" if retryable else "0", error_reason="timeout", finished_at="1.0")


def test_resume_continues_at_the_next_chunk(store: JobStore, send: Send, sent: list[Step]) -> None:
    failed_job(store, next_chunk=2)
    assert resume(store, "j1", send) == Step(TASK_CHUNK, "j1", 2)
    assert sent == [Step(TASK_CHUNK, "j1", 2)]
    job = store.get("j1")
    assert job is not None
    assert job.state == State.UPLOADING
    assert job.error is None and not job.error_retryable
    assert store.redis.hget(JOB_KEY.format(job_id="j1"), "error_reason") == ""


def test_resume_before_any_chunk_starts_over(store: JobStore, send: Send, sent: list[Step]) -> None:
    failed_job(store, next_chunk=0)
    assert resume(store, "j1", send) == Step(TASK_START, "j1")
    assert store.get("j1").state == State.QUEUED  # type: ignore[union-attr]


def test_resume_after_the_last_chunk_finalizes(store: JobStore, send: Send, sent: list[Step]) -> None:
    failed_job(store, next_chunk=5)
    assert resume(store, "j1", send) == Step(TASK_FINALIZE, "j1")
    assert store.get("j1").state == State.FINALIZING  # type: ignore[union-attr]


@pytest.mark.parametrize("state", [State.QUEUED, State.UPLOADING, State.FINALIZING, State.DONE, State.CANCELLED])
def test_resume_of_a_job_that_did_not_fail_is_refused(store: JobStore, send: Send, sent: list[Step],
                                                      state: State) -> None:
    put_job(store, "j1", state=state)
    with pytest.raises(OperationError, match=f"j1 is {state}"):
        resume(store, "j1", send)
    assert sent == []
    assert store.get("j1").state == state  # type: ignore[union-attr]


def test_resume_of_an_unknown_job(store: JobStore, send: Send) -> None:
    with pytest.raises(OperationError, match="no job 'ghost'"):
        resume(store, "ghost", send)


def test_next_step_without_a_plan_stays_a_chunk(store: JobStore) -> None:
    put_job(store, "j1", next_chunk=1)
    job = store.get("j1")
    assert job is not None
    assert next_step(job) == (Step(TASK_CHUNK, "j1", 1), State.UPLOADING)


@pytest.mark.parametrize("state", [State.QUEUED, State.UPLOADING])
def test_cancel_queued_or_uploading(store: JobStore, state: State) -> None:
    put_job(store, "j1", state=state)
    cancel(store, "j1")
    job = store.get("j1")
    assert job is not None and job.state == State.CANCELLED
    assert job.error == "cancelled by an operator"


@pytest.mark.parametrize("state", [State.DONE, State.FAILED, State.CANCELLED, State.FINALIZING])
def test_cancel_of_other_states_is_refused(store: JobStore, state: State) -> None:
    put_job(store, "j1", state=state)
    with pytest.raises(OperationError, match="only queued or uploading"):
        cancel(store, "j1")
    assert store.get("j1").state == state  # type: ignore[union-attr]


def test_cancel_of_an_unknown_job(store: JobStore) -> None:
    with pytest.raises(OperationError, match="no job"):
        cancel(store, "ghost")


def test_retry_failed_resumes_only_retryable_ones(store: JobStore, send: Send, sent: list[Step]) -> None:
    failed_job(store, "transient", retryable=True)
    failed_job(store, "permanent", retryable=False)
    put_job(store, "fine", state=State.DONE)
    assert retry_failed(store, send) == ["transient"]
    assert sent == [Step(TASK_CHUNK, "transient", 2)]
    assert store.get("permanent").state == State.FAILED  # type: ignore[union-attr]
    assert store.get("fine").state == State.DONE  # type: ignore[union-attr]


def test_retry_failed_with_include_permanent_resumes_all(store: JobStore, send: Send, sent: list[Step]) -> None:
    failed_job(store, "transient", retryable=True)
    failed_job(store, "permanent", retryable=False, next_chunk=0)
    assert sorted(retry_failed(store, send, include_permanent=True)) == ["permanent", "transient"]
    assert sorted(sent, key=lambda s: s.job_id) == [Step(TASK_START, "permanent"), Step(TASK_CHUNK, "transient", 2)]


def test_retry_failed_with_nothing_failed(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_job(store, "j1", state=State.UPLOADING)
    assert retry_failed(store, send) == []
    assert sent == []
