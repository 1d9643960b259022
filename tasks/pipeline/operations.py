"""Operator actions on jobs: resume, cancel, retry the failed ones. Plain functions over the store,
each a write fenced by the state it expects."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tasks.constants import MAX_PARTS, TASK_CHUNK, TASK_CLEANUP, TASK_FINALIZE, TASK_START, TASK_WEBHOOK
from tasks.job.record import NEEDS_TOKEN, TOKEN_FIELD, JobRecord, State, resume_command
from tasks.job.store import NOW, JobStore
from tasks.pipeline.message import Send, Step, step_for
from tasks.telemetry import job_ended, resumed

CANCELLABLE = (State.QUEUED, State.UPLOADING)


class OperationError(Exception):
    """An operator action that does not apply to the job as it is (the message says why)."""


def next_step(job: JobRecord) -> tuple[Step, State]:
    """Where a job continues from its record's cursor, and the state it is in meanwhile."""
    if job.next_chunk == 0:
        return step_for(job, TASK_START), State.QUEUED
    if job.chunks_total is not None and job.next_chunk >= job.chunks_total:
        return step_for(job, TASK_FINALIZE), State.FINALIZING
    return step_for(job, TASK_CHUNK, job.next_chunk), State.UPLOADING


def resume(store: JobStore, job_id: str, send: Send, token: str | None = None) -> Step:
    """Continue a failed job from the last acknowledged chunk; ``token`` replaces its upload token."""
    job = _get(store, job_id)
    if job.state != State.FAILED:
        raise OperationError(f"job {job_id} is {job.state}; only failed jobs can be resumed")
    if job.error_needs == NEEDS_TOKEN and not token:
        raise OperationError(f"job {job_id} needs a new upload token: {resume_command(job_id, NEEDS_TOKEN)}")
    step, state = next_step(job)
    changes = {"state": state, "error": "", "error_retryable": "", "error_reason": "", "error_needs": "",
               "handoff_at": NOW, "wake_at": "", **resumed(job)}  # the new run: a root of its own
    if job.live:  # its file's silence is counted afresh
        changes["live_grew_at"] = ""
    if token:
        changes[TOKEN_FIELD] = token
        if job.next_chunk == 0:  # nothing uploaded yet: the new token's account is chosen anew at the start
            changes.update({"account": "", "token_only": ""})
    written = store.update(job_id, None, changes, expect={"state": [State.FAILED]})
    if not written:
        raise OperationError(f"job {job_id} changed while resuming it; look again")
    send(replace(step, handoff_at=written.at))
    return step


FINISHABLE = (State.QUEUED, State.UPLOADING, State.FAILED)
FINISH_ATTEMPTS = 5


def finish(store: JobStore, job_id: str, send: Send, size: int | None = None) -> str:
    """End a live job at ``size`` bytes (None: its file's size as the worker that sends the last part
    sees it, the same view its reads have) and wake it at once; a failed one is resumed. What happens,
    in one line; ``OperationError`` when the finish does not apply."""
    for _ in range(FINISH_ATTEMPTS):  # a worker moving the cursor meanwhile: read again, decide again
        job = _get(store, job_id)
        changes = _finish_changes(job, size)
        if isinstance(changes, str):
            return changes
        if store.update(job_id, None, changes, expect={"state": [job.state], "next_chunk": [job.next_chunk]}):
            break
    else:
        raise OperationError(f"job {job_id} kept changing while finishing it; try again")
    at = f"at {size} bytes" if size else "at its file's size"
    if job.state == State.FAILED:
        resume(store, job_id, send)
        return f"job {job_id}: finished {at}; resumed"
    member = store.wake(job_id)
    if member:  # its label anew: the job is finished now
        waiting, _, _ = Step.from_member(member)
        finished = store.get(job_id)
        step = step_for(finished, waiting.task, waiting.chunk) if finished else waiting
        send(replace(step, handoff_at=store.now()))
    return f"job {job_id}: finished {at}; its last part goes now"


def _finish_changes(job: JobRecord, size: int | None) -> dict[str, object] | str:
    """What a finish writes to ``job``, or the line to answer when it is finished already."""
    job_id = job.job_id
    if not job.live:
        raise OperationError(f"job {job_id} is not live; only a live job (--live) is finished")
    if job.state not in FINISHABLE:
        raise OperationError(f"job {job_id} is {job.state}; there is nothing to finish")
    if size is not None and size <= job.bytes_sent:
        raise OperationError(f"job {job_id}: {size} bytes is not more than the {job.bytes_sent} already sent "
                             "(its last part cannot be empty)")
    if job.finished_at and job.state != State.FAILED:
        if size is None or size == job.size:
            return f"job {job_id}: already finished" + (f" at {job.size} bytes" if job.size else "")
        raise OperationError(f"job {job_id} was finished already" + (f" at {job.size} bytes" if job.size else "")
                             + "; a finish cannot change it while it runs")
    changes: dict[str, object] = {"finished_at": NOW, "size": size or ""}
    if size and job.chunk_size:
        changes["chunks_total"] = parts = -(-size // job.chunk_size)
        if parts > MAX_PARTS:
            raise OperationError(f"job {job_id}: {size} bytes would be more than {MAX_PARTS} parts of "
                                 f"{job.chunk_size} bytes")
    return changes


def cancel(store: JobStore, job_id: str, send: Send | None = None, keep_video: bool = False) -> str:
    """Stop a queued or uploading job at its next chunk; it stays cancelled. The partial video vuq
    created is deleted by a worker holding an API key, unless ``keep_video``. Returns what happens
    to the video."""
    job = _get(store, job_id)
    if job.state not in CANCELLABLE:
        raise OperationError(f"job {job_id} is {job.state}; only queued or uploading jobs can be cancelled")
    has_video = bool(job.video_id or job.container_pending)
    cleanup = ("kept (--keep-video)" if keep_video else "deleting") if has_video else "no video was created"
    written = store.update(job_id, None, {"state": State.CANCELLED, "error": "cancelled by an operator",
                                          "cleanup": cleanup}, expect={"state": list(CANCELLABLE)})
    if not written:
        raise OperationError(f"job {job_id} changed while cancelling it; look again")
    job_ended(job, State.CANCELLED, written.at)
    if send is not None:
        if cleanup == "deleting" or job.token_minted:  # its video, and the token vuq minted for it
            send(Step(TASK_CLEANUP, job_id))
        if job.spec.callback_url:
            send(Step(TASK_WEBHOOK, job_id))
    return cleanup


def redeliver(store: JobStore, job_id: str, send: Send) -> None:
    """Deliver an ended job's completion webhook again (an operator's decision: a message alone never
    makes a delivered webhook go out twice), with a fresh signature and attempts counted anew."""
    job = _get(store, job_id)
    if not job.spec.callback_url:
        raise OperationError(f"job {job_id} has no callback_url: no webhook to deliver")
    if not job.state.final:
        raise OperationError(f"job {job_id} is {job.state}; only an ended job's webhook can be delivered again")
    written = store.update(job_id, None, {"callback_again": True, "callback_attempts": 0},
                           expect={"state": [State.DONE, State.FAILED, State.CANCELLED]})
    if not written:
        raise OperationError(f"job {job_id} changed meanwhile; look again")
    store.outbox_owed(job_id)
    send(Step(TASK_WEBHOOK, job_id))


@dataclass
class RetryOutcome:
    """What ``retry_failed`` did: the jobs it resumed, and how many it skipped, by reason."""

    resumed: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


SKIP_PERMANENT = "not resumable: the source, spec or request must change (--all to try anyway)"
SKIP_TOKEN = f"need a new upload token: {resume_command('JOB', NEEDS_TOKEN)}"
SKIP_CHANGED = "changed while resuming"


def retry_failed(store: JobStore, send: Send, include_permanent: bool = False) -> RetryOutcome:
    """Resume every failed job whose error may go away on retry (or every one, if asked);
    reads only the failed jobs."""
    outcome = RetryOutcome()
    for job in store.records(store.ids_in(State.FAILED)):
        if job.error_needs == NEEDS_TOKEN:
            outcome.skip(SKIP_TOKEN)
        elif not (include_permanent or job.error_retryable):
            outcome.skip(SKIP_PERMANENT)
        else:
            try:
                resume(store, job.job_id, send)
            except OperationError:
                outcome.skip(SKIP_CHANGED)
                continue
            outcome.resumed.append(job.job_id)
    return outcome


def _get(store: JobStore, job_id: str) -> JobRecord:
    job = store.get(job_id)
    if job is None:
        raise OperationError(f"no job {job_id!r}")
    return job
