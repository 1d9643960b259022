"""tasks.pipeline.operations: next_step (pure), and resume, cancel and retry_failed over the store, on fakeredis
and on a real Redis: each a write fenced by the state it expects, and the steps it sends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tasks.constants import EXPIRY_KEY, JOB_KEY, TASK_CHUNK, TASK_CLEANUP, TASK_FINALIZE, TASK_START, TASK_WEBHOOK
from tasks.job.record import NEEDS_TOKEN, JobRecord, State
from tasks.job.spec import UploadSpec, Video
from tasks.job.store import JobStore
from tasks.pipeline.message import Step
from tasks.pipeline.operations import (
    SKIP_CHANGED,
    SKIP_PERMANENT,
    SKIP_TOKEN,
    OperationError,
    RetryOutcome,
    cancel,
    next_step,
    resume,
    retry_failed,
)
from tests.support.secrets import has_token
from tests.unit.tasks.helpers import assert_indexes_agree, both_backends, put_job, raw, record

Send = Callable[[Step], None]
TOKEN = "to1234567890abcdefghijKL"
NEW_TOKEN = "toNEWNEWNEWNEWNEWNEWNEWN"
HOOKED = UploadSpec("/videos/h.mp4", callback_url="https://example.com/hook")


def shown(steps: list[Step]) -> list[tuple[str, str, int | None]]:
    return [(s.task, s.job_id, s.chunk) for s in steps]


# -- next_step (pure) ----------------------------------------------------------------------
@pytest.mark.parametrize(("next_chunk", "chunks_total", "task", "chunk", "state"), [
    (0, None, TASK_START, None, State.QUEUED),
    (0, 5, TASK_START, None, State.QUEUED),
    (1, 5, TASK_CHUNK, 1, State.UPLOADING),
    (4, 5, TASK_CHUNK, 4, State.UPLOADING),
    (5, 5, TASK_FINALIZE, None, State.FINALIZING),
    (6, 5, TASK_FINALIZE, None, State.FINALIZING),
    (3, None, TASK_CHUNK, 3, State.UPLOADING),  # no plan recorded: the cursor says a chunk
])
def test_next_step_follows_the_cursor(next_chunk: int, chunks_total: int | None, task: str, chunk: int | None,
                                      state: State) -> None:
    job = JobRecord("j1", State.FAILED, UploadSpec("/videos/talk.mp4", video=Video(title="Talk")),
                    next_chunk=next_chunk, chunks_total=chunks_total)
    step, meanwhile = next_step(job)
    assert (step.task, step.job_id, step.chunk, meanwhile) == (task, "j1", chunk, state)
    assert step.label is not None and "Talk" in step.label and "talk.mp4" in step.label
    assert step.handoff_at is None


# -- over the store (each test on both backends) ---------------------------------------------
def failed_job(store: JobStore, job_id: str = "j1", next_chunk: int = 2, retryable: bool = True,
               needs: str = "", token: str | None = TOKEN) -> None:
    """A job that failed at ``next_chunk`` of 5 while a retry was scheduled."""
    put_job(store, job_id, token, state=State.UPLOADING, chunks_total=5, next_chunk=next_chunk,
            wake_at=store.now() + 60)
    written = store.update(job_id, None, {"state": State.FAILED, "error": "api.video timed out",
                                          "error_retryable": retryable, "error_reason": "timeout",
                                          "error_needs": needs})
    assert written, written.why


# -- resume --------------------------------------------------------------------------------
@both_backends
def test_resume_continues_at_the_next_chunk_with_a_new_hand_off(store: JobStore, send: Send,
                                                               sent: list[Step]) -> None:
    failed_job(store, next_chunk=2)
    before = record(store, "j1")
    step = resume(store, "j1", send)
    assert (step.task, step.job_id, step.chunk) == (TASK_CHUNK, "j1", 2)
    job = record(store, "j1")
    assert job.state == State.UPLOADING
    assert job.handoff_at is not None and job.handoff_at > (before.handoff_at or 0)
    assert shown(sent) == [(TASK_CHUNK, "j1", 2)]
    assert sent[0].handoff_at == job.handoff_at
    assert assert_indexes_agree(store)["uploading"] == {"j1"}


@both_backends
def test_resume_clears_the_error_and_the_schedule(store: JobStore, send: Send) -> None:
    failed_job(store, needs="")
    resume(store, "j1", send)
    job = record(store, "j1")
    assert (job.error, job.error_retryable, job.error_reason, job.error_needs, job.wake_at) == (
        None, False, None, None, None)
    assert {k: raw(store, "j1")[k] for k in ("error", "error_retryable", "error_reason", "error_needs", "wake_at")} \
        == dict.fromkeys(("error", "error_retryable", "error_reason", "error_needs", "wake_at"), "")


@both_backends
def test_resume_lifts_the_retention_of_the_failed_job(store: JobStore, send: Send) -> None:
    failed_job(store)
    assert store.redis.pttl(JOB_KEY.format(job_id="j1")) > 0
    resume(store, "j1", send)
    assert store.redis.pttl(JOB_KEY.format(job_id="j1")) == -1
    assert store.redis.zscore(EXPIRY_KEY, "j1") is None
    assert record(store, "j1").ended_at is None


@both_backends
@pytest.mark.parametrize(("next_chunk", "task", "state"), [(0, TASK_START, State.QUEUED),
                                                           (5, TASK_FINALIZE, State.FINALIZING)])
def test_resume_starts_over_or_finalizes_as_the_cursor_says(store: JobStore, send: Send, sent: list[Step],
                                                            next_chunk: int, task: str, state: State) -> None:
    failed_job(store, next_chunk=next_chunk)
    assert resume(store, "j1", send).task == task
    assert record(store, "j1").state == state
    assert shown(sent) == [(task, "j1", None)]


@both_backends
def test_resume_with_a_token_replaces_the_token(store: JobStore, send: Send) -> None:
    failed_job(store, token=TOKEN)
    resume(store, "j1", send, token=NEW_TOKEN)
    assert store.claim("j1", "w1", 30).token == NEW_TOKEN


@both_backends
def test_resume_without_a_token_keeps_the_token(store: JobStore, send: Send) -> None:
    failed_job(store, token=TOKEN)
    resume(store, "j1", send)
    assert store.claim("j1", "w1", 30).token == TOKEN


@both_backends
def test_a_job_that_needs_a_token_is_not_resumed_without_one(store: JobStore, send: Send, sent: list[Step]) -> None:
    failed_job(store, needs=NEEDS_TOKEN)
    before = raw(store, "j1")
    with pytest.raises(OperationError, match="--token-file") as refused:
        resume(store, "j1", send)
    assert "needs a new upload token" in str(refused.value)
    assert sent == []
    assert raw(store, "j1") == before


@both_backends
def test_a_job_that_needs_a_token_resumes_with_one(store: JobStore, send: Send, sent: list[Step]) -> None:
    failed_job(store, needs=NEEDS_TOKEN)
    resume(store, "j1", send, token=NEW_TOKEN)
    job = record(store, "j1")
    assert job.state == State.UPLOADING and job.error_needs is None
    assert store.claim("j1", "w1", 30).token == NEW_TOKEN
    assert len(sent) == 1


@both_backends
@pytest.mark.parametrize("state", [State.QUEUED, State.UPLOADING, State.FINALIZING, State.DONE, State.CANCELLED])
def test_only_failed_jobs_are_resumed(store: JobStore, send: Send, sent: list[Step], state: State) -> None:
    put_job(store, "j1", state=state)
    before = raw(store, "j1")
    with pytest.raises(OperationError, match=f"j1 is {state}; only failed jobs"):
        resume(store, "j1", send)
    assert sent == []
    assert raw(store, "j1") == before


@both_backends
def test_resume_of_an_unknown_job(store: JobStore, send: Send, sent: list[Step]) -> None:
    with pytest.raises(OperationError, match="no job 'ghost'"):
        resume(store, "ghost", send)
    assert sent == []
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


@both_backends
def test_a_job_that_changed_while_resuming_is_not_sent(store: JobStore, send: Send, sent: list[Step],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    failed_job(store)
    stale = record(store, "j1")
    assert store.update("j1", None, {"state": State.UPLOADING})  # another operator, a moment earlier
    monkeypatch.setattr(store, "get", lambda job_id: stale)
    with pytest.raises(OperationError, match="changed while resuming"):
        resume(store, "j1", send)
    assert sent == []


# -- cancel --------------------------------------------------------------------------------
@both_backends
@pytest.mark.parametrize("state", [State.QUEUED, State.UPLOADING])
def test_cancel_stops_a_queued_or_uploading_job_and_erases_its_token(store: JobStore, state: State) -> None:
    put_job(store, "j1", TOKEN, state=state)
    assert cancel(store, "j1") == "no video was created"
    job = record(store, "j1")
    assert (job.state, job.error, job.cleanup) == (State.CANCELLED, "cancelled by an operator", "no video was created")
    assert job.ended_at is not None
    assert not has_token(store, "j1")
    assert assert_indexes_agree(store)["cancelled"] == {"j1"}


@both_backends
@pytest.mark.parametrize(("fields", "keep_video", "cleanup", "tasks"), [
    ({"video_id": "vi1"}, False, "deleting", [TASK_CLEANUP]),
    ({"container_pending": True}, False, "deleting", [TASK_CLEANUP]),
    ({"video_id": "vi1"}, True, "kept (--keep-video)", []),
    ({}, False, "no video was created", []),
    ({}, True, "no video was created", []),
])
def test_cancel_says_what_happens_to_the_video(store: JobStore, send: Send, sent: list[Step], fields: dict[str, Any],
                                               keep_video: bool, cleanup: str, tasks: list[str]) -> None:
    put_job(store, "j1", state=State.UPLOADING, **fields)
    assert cancel(store, "j1", send, keep_video=keep_video) == cleanup
    assert record(store, "j1").cleanup == cleanup
    assert sent == [Step(task, "j1") for task in tasks]


@both_backends
def test_cancel_of_a_job_with_a_callback_sends_its_webhook(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_job(store, "j1", spec=HOOKED, state=State.UPLOADING, video_id="vi1")
    assert cancel(store, "j1", send) == "deleting"
    assert sent == [Step(TASK_CLEANUP, "j1"), Step(TASK_WEBHOOK, "j1")]


@both_backends
def test_cancel_without_send_only_writes(store: JobStore) -> None:
    put_job(store, "j1", spec=HOOKED, state=State.UPLOADING, video_id="vi1")
    assert cancel(store, "j1") == "deleting"
    assert record(store, "j1").state == State.CANCELLED


@both_backends
@pytest.mark.parametrize("state", [State.FINALIZING, State.DONE, State.FAILED, State.CANCELLED])
def test_cancel_of_other_states_is_refused(store: JobStore, send: Send, sent: list[Step], state: State) -> None:
    put_job(store, "j1", TOKEN, state=state)
    before = raw(store, "j1")
    with pytest.raises(OperationError, match=f"j1 is {state}; only queued or uploading"):
        cancel(store, "j1", send)
    assert raw(store, "j1") == before
    assert sent == []


@both_backends
def test_cancel_of_an_unknown_job(store: JobStore) -> None:
    with pytest.raises(OperationError, match="no job 'ghost'"):
        cancel(store, "ghost")
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


@both_backends
def test_cancel_does_not_wait_for_the_worker_that_holds_the_job(store: JobStore) -> None:
    put_job(store, "j1", state=State.UPLOADING, next_chunk=1)
    store.claim("j1", "w1", 30)
    cancel(store, "j1")
    assert record(store, "j1").state == State.CANCELLED
    assert not store.update("j1", "w1", {"next_chunk": 2}, expect={"state": [State.UPLOADING], "next_chunk": [1]})


@both_backends
def test_a_job_that_changed_while_cancelling_is_left_alone(store: JobStore, send: Send, sent: list[Step],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    put_job(store, "j1", state=State.UPLOADING, video_id="vi1")
    stale = record(store, "j1")
    assert store.update("j1", None, {"state": State.FINALIZING})
    monkeypatch.setattr(store, "get", lambda job_id: stale)
    with pytest.raises(OperationError, match="changed while cancelling"):
        cancel(store, "j1", send)
    assert sent == []
    assert raw(store, "j1")["state"] == State.FINALIZING
    assert store.ids_in(State.FINALIZING) == ["j1"]


# -- retry_failed --------------------------------------------------------------------------
@both_backends
def test_retry_failed_resumes_the_retryable_ones_and_counts_the_rest(store: JobStore, send: Send,
                                                                     sent: list[Step]) -> None:
    failed_job(store, "transient", retryable=True)
    failed_job(store, "permanent", retryable=False)
    failed_job(store, "tokenless", retryable=True, needs=NEEDS_TOKEN)
    put_job(store, "fine", state=State.DONE)
    outcome = retry_failed(store, send)
    assert outcome == RetryOutcome(resumed=["transient"], skipped={SKIP_PERMANENT: 1, SKIP_TOKEN: 1})
    assert shown(sent) == [(TASK_CHUNK, "transient", 2)]
    assert record(store, "transient").state == State.UPLOADING
    assert [record(store, j).state for j in ("permanent", "tokenless", "fine")] == [
        State.FAILED, State.FAILED, State.DONE]


@both_backends
def test_retry_failed_with_include_permanent_still_skips_the_ones_needing_a_token(store: JobStore, send: Send,
                                                                                  sent: list[Step]) -> None:
    failed_job(store, "transient", retryable=True)
    failed_job(store, "permanent", retryable=False, next_chunk=0)
    failed_job(store, "tokenless", retryable=True, needs=NEEDS_TOKEN)
    failed_job(store, "tokenless2", retryable=False, needs=NEEDS_TOKEN)
    outcome = retry_failed(store, send, include_permanent=True)
    assert sorted(outcome.resumed) == ["permanent", "transient"]
    assert outcome.skipped == {SKIP_TOKEN: 2}
    assert sorted(shown(sent), key=str) == [(TASK_CHUNK, "transient", 2), (TASK_START, "permanent", None)]
    assert store.ids_in(State.FAILED) == ["tokenless", "tokenless2"]


@both_backends
def test_retry_failed_counts_a_job_that_changed_meanwhile(store: JobStore, send: Send, sent: list[Step],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    failed_job(store, "j1")
    listed = store.records(["j1"])
    assert store.update("j1", None, {"state": State.UPLOADING})  # resumed by someone else meanwhile
    monkeypatch.setattr(store, "ids_in", lambda state: ["j1"])  # read before the change...
    monkeypatch.setattr(store, "records", lambda ids: listed)  # ...and so was the record
    assert retry_failed(store, send) == RetryOutcome(resumed=[], skipped={SKIP_CHANGED: 1})
    assert sent == []


@both_backends
def test_retry_failed_with_nothing_failed(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_job(store, "j1", state=State.UPLOADING)
    put_job(store, "j2", state=State.DONE)
    assert retry_failed(store, send) == RetryOutcome()
    assert sent == []
