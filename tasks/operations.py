"""Operator actions on jobs: resume, cancel, retry the failed ones. Plain functions over the store."""

from __future__ import annotations

from collections.abc import Callable

from tasks.constants import TASK_CHUNK, TASK_FINALIZE, TASK_START, TASK_WEBHOOK
from tasks.jobstore import JobStore
from tasks.pipeline import Step
from tasks.record import JobRecord, State

Send = Callable[[Step], None]


class OperationError(Exception):
    """An operator action that does not apply to the job as it is (the message says why)."""


def next_step(job: JobRecord) -> tuple[Step, State]:
    """Where a job continues from its record's cursor, and the state it is in meanwhile."""
    if job.next_chunk == 0:
        return Step(TASK_START, job.job_id), State.QUEUED
    if job.chunks_total is not None and job.next_chunk >= job.chunks_total:
        return Step(TASK_FINALIZE, job.job_id), State.FINALIZING
    return Step(TASK_CHUNK, job.job_id, job.next_chunk), State.UPLOADING


def resume(store: JobStore, job_id: str, send: Send) -> Step:
    """Continue a failed job from the last acknowledged chunk."""
    job = _get(store, job_id)
    if job.state != State.FAILED:
        raise OperationError(f"job {job_id} is {job.state}; only failed jobs can be resumed")
    step, state = next_step(job)
    changes = {"state": state, "error": "", "error_retryable": "", "error_reason": "", "finished_at": ""}
    if not store.update(job_id, None, changes, expect={"state": [State.FAILED]}):
        raise OperationError(f"job {job_id} changed while resuming it; look again")
    send(step)
    return step


def cancel(store: JobStore, job_id: str, send: Send | None = None) -> None:
    """Stop a queued or uploading job at its next chunk; it stays cancelled."""
    job = _get(store, job_id)
    allowed = [State.QUEUED, State.UPLOADING]
    if job.state not in allowed:
        raise OperationError(f"job {job_id} is {job.state}; only queued or uploading jobs can be cancelled")
    if not store.update(job_id, None, {"state": State.CANCELLED, "error": "cancelled by an operator"},
                        expect={"state": allowed}):
        raise OperationError(f"job {job_id} changed while cancelling it; look again")
    if send is not None and job.spec.get("callback_url"):
        send(Step(TASK_WEBHOOK, job_id))


def retry_failed(store: JobStore, send: Send, include_permanent: bool = False) -> list[str]:
    """Resume every failed job whose error may go away on retry (or every one, if asked)."""
    resumed = []
    for job in store.list(states=[State.FAILED], limit=None):
        if include_permanent or job.error_retryable:
            try:
                resume(store, job.job_id, send)
            except OperationError:
                continue
            resumed.append(job.job_id)
    return resumed


def _get(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    if job is None:
        raise OperationError(f"no job {job_id!r}")
    return job
