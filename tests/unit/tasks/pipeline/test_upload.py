"""tasks.pipeline.upload without Celery: Pipeline.start/chunk/finalize on the pipeline rig (tests/unit/tasks/rig.py:
a JobStore on fakeredis, a fake api.video, local sources); plus the retry/resume policy
(``PermanentError.resumable``, ``backoff_s``, ``expectation``)."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from pathlib import Path

import httpx
import pytest
import redis

from tasks import telemetry
from tasks.apivideo.client import UPLOAD
from tasks.apivideo.limiter import FleetLimiter, Turn
from tasks.constants import (
    JOB_METADATA_KEY,
    JOB_NONCE_METADATA_KEY,
    MAX_CHUNK_BYTES,
    MIB,
    TASK_CHUNK,
    TASK_FINALIZE,
    TASK_START,
    TASK_WEBHOOK,
)
from tasks.errors import (
    ApiRejected,
    ApiUnavailable,
    Busy,
    ConfigError,
    GaveUp,
    LeaseLost,
    PermanentError,
    RangeArriving,
    RetryableError,
    SourceError,
    SpecError,
    StepKeepsDying,
    Throttled,
)
from tasks.job.record import State
from tasks.job.spec import Video
from tasks.job.store import JobStore
from tasks.pipeline.backoff import backoff_s
from tasks.pipeline.cleanup import clean_up
from tasks.pipeline.leases import LOST
from tasks.pipeline.message import Step
from tasks.pipeline.upload import Pipeline, expectation
from tests.support.secrets import has_token
from tests.unit.tasks.fakes import (
    OVERLAP,
    TOKEN_INVALID,
    UPLOAD_TOKEN,
    CountingStore,
    FakeApiVideo,
    wait_until,
)
from tests.unit.tasks.rig import CHUNK, CONTENT, RANGES, SIZE, Build, fail, lapse, new_job, raw, record, run


# -- the happy path ------------------------------------------------------------------------
def test_a_job_goes_from_start_through_each_chunk_to_done(build: Build, store: JobStore, fake: FakeApiVideo,
                                                          clip: Path) -> None:
    pipeline = build()
    new_job(store, clip, video=Video(title="Holiday"))
    assert record(store).state is State.QUEUED

    step = pipeline.start("j1", "w0")
    cursors = []
    for index in range(3):
        job = record(store)
        assert step is not None and step.handoff_at is not None
        assert step.handoff_at == job.handoff_at  # the message carries the hand-off the record noted
        assert step.sent is not None and (step.sent.index, step.sent.total) == (index, 3)
        assert store.lease_holder("j1") is None  # released with the cursor move
        cursors.append((job.state, job.next_chunk, job.bytes_sent))
        if index < 2:
            assert (step.task, step.job_id, step.chunk) == (TASK_CHUNK, "j1", index + 1)
            assert step.label is not None and f"{index + 2}/3" in step.label
            assert "Holiday" in step.label and "clip.mp4" in step.label and "'j1'" in step.label
            step = pipeline.chunk("j1", index + 1, f"w{index + 1}")
        else:
            assert (step.task, step.chunk) == (TASK_FINALIZE, None)
            assert step.label is not None and "metadata" in step.label
    assert cursors == [(State.UPLOADING, 1, CHUNK), (State.UPLOADING, 2, 2 * CHUNK), (State.FINALIZING, 3, SIZE)]
    job = record(store)
    assert (job.size, job.chunk_size, job.chunks_total) == (SIZE, CHUNK, 3)

    assert pipeline.finalize("j1", "w3") is None  # no callback_url: nothing follows
    job = record(store)
    assert job.state is State.DONE and job.error is None
    assert not has_token(store, "j1")  # erased the moment the job is done

    video = fake.videos[str(job.video_id)]
    assert [u.content_range for u in fake.uploads] == RANGES
    assert [u.video_id for u in fake.uploads] == [job.video_id] * 3  # the container, from chunk 0 on
    assert all(u.token == UPLOAD_TOKEN and u.file_name == "clip.mp4" for u in fake.uploads)
    assert bytes(video.content) == CONTENT and video.complete
    assert job.nonce and video.patches == [{"title": "Holiday", "metadata": [
        {"key": JOB_METADATA_KEY, "value": "j1"}, {"key": JOB_NONCE_METADATA_KEY, "value": job.nonce}]}]


def test_without_an_api_key_chunk_0_creates_the_video_and_the_rest_name_it(build: Build, store: JobStore,
                                                                          fake: FakeApiVideo, clip: Path) -> None:
    pipeline = build(None)
    new_job(store, clip)
    assert [s.task for s in run(pipeline, Step(TASK_START, "j1"))] == [TASK_START, TASK_CHUNK, TASK_CHUNK,
                                                                       TASK_FINALIZE]
    job = record(store)
    assert job.state is State.DONE and job.video_id
    assert [u.video_id for u in fake.uploads] == [None, job.video_id, job.video_id]
    assert [u.content_range for u in fake.uploads] == RANGES
    assert fake.routes() == ["POST /upload"] * 3  # no container, no authentication, no patch


def test_a_source_smaller_than_a_chunk_goes_up_whole(build: Build, store: JobStore, fake: FakeApiVideo,
                                                     root: Path) -> None:
    small = root / "small.mp4"
    small.write_bytes(b"x" * 1000)
    new_job(store, small)
    step = build(None).start("j1", "w")
    assert step is not None and step.task == TASK_FINALIZE
    assert [(u.content_range, u.length) for u in fake.uploads] == [(None, 1000)]
    assert record(store).state is State.FINALIZING


def test_a_job_with_a_callback_owes_its_webhook_when_done(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = build(None)
    new_job(store, clip, callback_url="https://hooks.example/vuq")
    assert [s.task for s in run(pipeline, Step(TASK_START, "j1"))][-1] == TASK_FINALIZE
    assert record(store).state is State.DONE
    assert store.redis.zscore("vuq:outbox", "j1") is not None  # owed with the final state, in the same write


def test_finalize_returns_the_webhook_step(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = build(None)
    new_job(store, clip, callback_url="https://hooks.example/vuq")
    step = pipeline.start("j1", "w0")
    while step is not None and step.task == TASK_CHUNK:
        assert step.chunk is not None
        step = pipeline.chunk("j1", step.chunk, "w")
    assert step is not None and step.task == TASK_FINALIZE
    assert pipeline.finalize("j1", "w") == Step(TASK_WEBHOOK, "j1")


def test_a_job_without_a_token_gets_one_minted_with_the_api_key(build: Build, store: JobStore, fake: FakeApiVideo,
                                                                clip: Path) -> None:
    new_job(store, clip, token=None)
    assert build().start("j1", "w") is not None
    assert len(fake.calls("POST", "/upload-tokens")) == 1
    assert fake.uploads[0].token != UPLOAD_TOKEN and fake.uploads[0].token in fake.upload_tokens
    assert record(store).token_minted


def test_a_minted_token_about_to_expire_is_replaced_before_the_next_chunk_and_deleted(
        build: Build, store: JobStore, fake: FakeApiVideo, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = build()
    new_job(store, clip, token=None, chunk_size=5 * MIB)
    pipeline.start("j1", "w")
    first = fake.uploads[0].token
    job = record(store)
    assert job.token_minted and job.token_expires_at and job.heartbeat_at
    # the recording ran long: the token has less than RENEW_BEFORE_S left at the next chunk
    store.redis.hset("vuq:job:j1", "token_expires_at", f"{job.heartbeat_at + 60:.3f}")
    events: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(telemetry, "event", lambda name, **attributes: events.append((name, attributes)))
    pipeline.chunk("j1", 1, "w")
    second = fake.uploads[1].token
    assert second != first and second in fake.upload_tokens and first not in fake.upload_tokens  # the old one deleted
    assert len(fake.calls("POST", "/upload-tokens")) == 2 and fake.calls("DELETE", f"/upload-tokens/{first}")
    assert record(store).token_expires_at > job.heartbeat_at + 60
    assert ("vuq.token.renewed", {"reason": "expiring"}) in events


def test_a_job_without_a_token_and_no_api_key_is_a_config_error(build: Build, store: JobStore, fake: FakeApiVideo,
                                                                 clip: Path) -> None:
    new_job(store, clip, token=None)
    with pytest.raises(ConfigError, match="no upload token"):
        build(None).start("j1", "w")
    assert fake.requests == []


# -- duplicates, stale steps and other holders ---------------------------------------------
def test_a_duplicate_or_stale_step_returns_none_and_changes_nothing(build: Build, store: JobStore,
                                                                    fake: FakeApiVideo, clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    pipeline.start("j1", "w0")
    pipeline.chunk("j1", 1, "w1")
    before, requests = raw(store), len(fake.requests)
    assert pipeline.start("j1", "dup") is None
    assert pipeline.chunk("j1", 0, "dup") is None
    assert pipeline.chunk("j1", 1, "dup") is None
    assert pipeline.chunk("j1", 7, "dup") is None
    assert pipeline.finalize("j1", "dup") is None
    assert pipeline.start("no-such-job", "dup") is None
    assert raw(store) == before
    assert len(fake.requests) == requests
    assert store.lease_holder("j1") is None


def test_a_step_of_a_cancelled_job_does_nothing(build: Build, store: JobStore, fake: FakeApiVideo,
                                                clip: Path) -> None:
    new_job(store, clip)
    assert store.update("j1", None, {"state": State.CANCELLED})
    assert build().start("j1", "w") is None
    assert fake.requests == [] and record(store).state is State.CANCELLED


@pytest.mark.parametrize(("ttl_s", "wait_s"), [(30, 5.0), (0.4, 0.5)])
def test_a_step_finding_another_holder_raises_busy(build: Build, store: JobStore, fake: FakeApiVideo, clip: Path,
                                                   ttl_s: float, wait_s: float) -> None:
    pipeline = build()
    new_job(store, clip)
    assert store.claim("j1", "other", ttl_s, expectation(TASK_START)).record is not None
    with pytest.raises(Busy) as info:
        pipeline.start("j1", "me")
    assert info.value.wait_s == pytest.approx(wait_s, abs=0.1)
    assert "other" in str(info.value)
    assert store.lease_holder("j1") == "other"
    assert record(store).state is State.QUEUED and fake.requests == []


# -- refused upload tokens -----------------------------------------------------------------
def test_a_refused_token_of_the_jobs_account_is_replaced_with_its_key(build: Build, store: JobStore,
                                                                      fake: FakeApiVideo, clip: Path) -> None:
    new_job(store, clip)  # the default account's token, checked at the start...
    fake.fail("POST", "/upload", 401, TOKEN_INVALID)  # ...then refused (it expired meanwhile)
    step = build().start("j1", "w")
    assert step is not None and step.chunk == 1
    assert len(fake.calls("POST", "/upload-tokens")) == 1
    assert len(fake.calls("POST", "/upload")) == 2  # refused, then sent with the new token
    (upload,) = fake.uploads
    assert upload.token in fake.upload_tokens and upload.token != UPLOAD_TOKEN
    assert store.redis.hget("vuq:job:j1", "secret:token") == upload.token
    assert record(store).token_minted and record(store).next_chunk == 1


def test_a_token_no_account_of_ours_holds_is_never_replaced(build: Build, store: JobStore, fake: FakeApiVideo,
                                                            clip: Path) -> None:
    new_job(store, clip, token="toFOREIGNforeignFOREIGN0")
    with pytest.raises(ApiRejected) as info:
        build().start("j1", "w")  # token-only: api.video refuses it, and nobody mints another
    assert info.value.needs == "token" and info.value.resumable
    assert fake.calls("POST", "/upload-tokens") == [] and fake.calls("POST", "/videos") == []
    assert record(store).token_only and not record(store).token_minted


def test_a_second_refusal_after_minting_fails_the_step(build: Build, store: JobStore, fake: FakeApiVideo,
                                                       clip: Path) -> None:
    new_job(store, clip)
    fake.fail("POST", "/upload", 401, TOKEN_INVALID, times=2)
    with pytest.raises(ApiRejected) as info:
        build().start("j1", "w")
    assert info.value.slug == TOKEN_INVALID
    assert len(fake.calls("POST", "/upload-tokens")) == 1  # once: no minting loop
    assert record(store).next_chunk == 0


def test_a_refused_upload_token_without_an_api_key_is_rejected(build: Build, store: JobStore, fake: FakeApiVideo,
                                                               clip: Path) -> None:
    new_job(store, clip, token="toEXPIREDexpiredEXPIRED0")
    with pytest.raises(ApiRejected) as info:
        build(None).start("j1", "w")
    assert (info.value.status, info.value.slug) == (401, TOKEN_INVALID)
    assert "toEXPIRED" not in str(info.value)
    assert fake.calls("POST", "/upload-tokens") == []
    assert record(store).next_chunk == 0 and not record(store).token_minted
    assert info.value.resumable and info.value.needs == "token"  # a new token (vuq resume --token-file) can help


# -- "already received" on a re-sent chunk ---------------------------------------------------
def test_a_resent_chunk_that_api_video_holds_counts_as_received(build: Build, store: JobStore, fake: FakeApiVideo,
                                                                clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    pipeline.start("j1", "w0")
    fake.fail("POST", "/upload", 502, "server-error", after=True)  # chunk 2 arrives; its answer is lost
    with pytest.raises(ApiUnavailable):
        pipeline.chunk("j1", 1, "w1")
    assert record(store).next_chunk == 1
    assert store.schedule("j1", "w1", Step(TASK_CHUNK, "j1", 1).to_member(), 0, expectation(TASK_CHUNK, 1),
                          "server_error")

    step = pipeline.chunk("j1", 1, "w2")  # api.video answers "range overlap"
    assert step is not None and step.chunk == 2
    video_id = str(record(store).video_id)
    assert len(fake.calls("GET", f"/videos/{video_id}/status")) == 1
    job = record(store)
    assert (job.next_chunk, job.bytes_sent, job.verify_upload) == (2, 2 * CHUNK, False)


def test_a_resent_chunk_still_arriving_elsewhere_is_in_flight(build: Build, store: JobStore, fake: FakeApiVideo,
                                                              clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    pipeline.start("j1", "w0")
    video = fake.videos[str(record(store).video_id)]
    video.in_flight.append((CHUNK, 2 * CHUNK - 1))  # another request is delivering chunk 2
    before = record(store)
    with pytest.raises(RangeArriving) as info:
        pipeline.chunk("j1", 1, "w1")
    assert isinstance(info.value, RetryableError) and info.value.reason == "in_flight"
    after = record(store)
    assert (after.next_chunk, after.bytes_sent, after.verify_upload) == (before.next_chunk, before.bytes_sent, False)

    video.in_flight.clear()
    video.received.append((CHUNK, 2 * CHUNK - 1))  # it arrived
    lapse(store)
    assert pipeline.chunk("j1", 1, "w2") is not None
    assert record(store).next_chunk == 2


def test_without_an_api_key_already_received_is_trusted_and_said_so(build: Build, store: JobStore,
                                                                     fake: FakeApiVideo, clip: Path) -> None:
    keyless = build(None)
    new_job(store, clip)
    keyless.start("j1", "w0")
    assert record(store).token_only  # the token is no account's the workers hold a key for
    video = fake.videos[str(record(store).video_id)]
    video.in_flight.append((CHUNK, 2 * CHUNK - 1))  # "already received", but the request delivering it dies
    step = keyless.chunk("j1", 1, "w1")
    assert step is not None and step.chunk == 2
    assert record(store).verify_upload  # taken on trust, and the record says so
    run(keyless, step)
    assert record(store).state is State.DONE
    assert not [r for r in fake.requests if "authorization" in r.headers]  # a token-only job sends no key


def test_finalize_with_the_key_sends_again_a_chunk_taken_on_trust_that_api_video_lacks(
        build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    keyed = build()
    new_job(store, clip)
    step = keyed.start("j1", "w0")
    step = keyed.chunk("j1", 1, "w1")
    assert step is not None and keyed.chunk("j1", 2, "w2") is not None
    video = fake.videos[str(record(store).video_id)]
    video.received.remove((CHUNK, 2 * CHUNK - 1))  # a chunk taken on trust (a record from a keyless worker)
    assert store.update("j1", None, {"verify_upload": True})
    step = keyed.finalize("j1", "w3")  # a worker with the key checks before declaring it done
    assert step is not None and (step.task, step.chunk) == (TASK_CHUNK, 1)
    assert step.handoff_at is not None and step.label is not None and "2/3" in step.label
    job = record(store)
    assert (job.state, job.next_chunk, job.bytes_sent, job.verify_upload) == (State.UPLOADING, 1, CHUNK, False)
    assert store.lease_holder("j1") is None


def test_finalize_with_the_key_finds_nothing_missing_when_api_video_holds_it_all(
        build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    keyed = build()
    new_job(store, clip)
    run(keyed, Step(TASK_START, "j1"))
    assert store.update("j1", None, {"state": State.FINALIZING, "verify_upload": True})
    assert keyed.finalize("j1", "w") is None
    assert record(store).state is State.DONE
    assert len(fake.calls("GET", f"/videos/{record(store).video_id}/status")) == 1


# -- the container ---------------------------------------------------------------------------
def test_the_container_is_created_once_with_the_job_tag_and_no_read(build: Build, store: JobStore,
                                                                    fake: FakeApiVideo, clip: Path) -> None:
    pending_while_creating: list[bool] = []
    fake.hooks.append(lambda r: pending_while_creating.append(record(store).container_pending)
                      if (r.method, r.url.path) == ("POST", "/videos") else None)
    new_job(store, clip, video=Video(title="Holiday"))
    run(build(), Step(TASK_START, "j1"))
    (create,) = fake.calls("POST", "/videos")
    assert create.read() and b'"vuq-job-id"' in create.content and b'"j1"' in create.content
    assert pending_while_creating == [True]  # noted before asking, so a crash looks for it
    assert fake.calls("GET", "/videos") == []
    job = record(store)
    assert not job.container_pending and job.video_id in fake.videos and len(fake.videos) == 1


def test_a_retried_start_finds_the_container_its_lost_answer_created(build: Build, store: JobStore,
                                                                     fake: FakeApiVideo, clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    fake.fail("POST", "/videos", 502, "server-error", after=True)
    with pytest.raises(ApiUnavailable):
        pipeline.start("j1", "w0")
    assert record(store).container_pending and not record(store).video_id
    (created,) = fake.videos
    lapse(store)

    assert pipeline.start("j1", "w1") is not None
    (search,) = fake.calls("GET", "/videos")
    assert search.url.params[f"metadata[{JOB_METADATA_KEY}]"] == "j1"
    assert len(fake.calls("POST", "/videos")) == 1 and list(fake.videos) == [created]
    assert record(store).video_id == created and fake.uploads[0].video_id == created
    assert not record(store).container_pending


def test_a_pending_container_that_was_never_created_is_created(build: Build, store: JobStore, fake: FakeApiVideo,
                                                               clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    fake.fail("POST", "/videos", 503, "service-unavailable")  # refused before creating anything
    with pytest.raises(ApiUnavailable):
        pipeline.start("j1", "w0")
    lapse(store)
    assert pipeline.start("j1", "w1") is not None
    assert len(fake.calls("GET", "/videos")) == 1 and len(fake.calls("POST", "/videos")) == 2
    assert len(fake.videos) == 1


def test_a_job_id_used_again_neither_adopts_nor_deletes_the_video_of_the_job_that_used_it_before(
        build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    """Another job named j1 before (its record expired, or another deployment on the account) left a video
    tagged j1: a crashed start of this j1 looks for its own video by its nonce too, and a cancel of it
    deletes nothing of the other's."""
    theirs = fake.add_video("theirs", [{"key": JOB_METADATA_KEY, "value": "j1"},
                                       {"key": JOB_NONCE_METADATA_KEY, "value": "0123456789abcdef"}]).video_id
    pipeline = build()
    new_job(store, clip)
    fake.fail("POST", "/videos", 503, "service-unavailable")  # refused before creating anything
    with pytest.raises(ApiUnavailable):
        pipeline.start("j1", "w0")
    job = record(store)
    assert job.container_pending and job.nonce and job.nonce != "0123456789abcdef"
    lapse(store)
    assert pipeline.start("j1", "w1") is not None
    (search,) = fake.calls("GET", "/videos")
    assert search.url.params[f"metadata[{JOB_NONCE_METADATA_KEY}]"] == job.nonce
    ours = record(store).video_id
    assert ours and ours != theirs and {u.video_id for u in fake.uploads} == {ours}

    new_job(store, clip, job_id="j2")  # and a cancelled start whose container was never recorded
    store.redis.hset("vuq:job:j2", mapping={"container_pending": "1", "nonce": "fedcba9876543210"})
    store.redis.hset("vuq:job:j2", mapping={"state": "cancelled", "cleanup": "deleting"})  # as cancel leaves it
    fake.add_video("not j2's", [{"key": JOB_METADATA_KEY, "value": "j2"},
                                {"key": JOB_NONCE_METADATA_KEY, "value": "0000000000000000"}])
    assert clean_up(store, pipeline.keyring, "j2") is None  # type: ignore[arg-type]
    assert fake.calls("GET", "/videos")[-1].url.params[f"metadata[{JOB_NONCE_METADATA_KEY}]"] == "fedcba9876543210"
    assert record(store, "j2").cleanup == "no video was created"  # its own was never made
    assert not [r for r in fake.requests if r.method == "DELETE"] and theirs in fake.videos and len(fake.videos) == 3


def test_a_retried_start_with_a_recorded_video_neither_creates_nor_searches(build: Build, store: JobStore,
                                                                            fake: FakeApiVideo, clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    fake.fail("POST", "/upload", 503, "service-unavailable")
    with pytest.raises(ApiUnavailable):
        pipeline.start("j1", "w0")
    lapse(store)
    assert pipeline.start("j1", "w1") is not None
    assert len(fake.calls("POST", "/videos")) == 1 and fake.calls("GET", "/videos") == []


# -- fail() ----------------------------------------------------------------------------------
def _at_chunk_1(build: Build, store: JobStore, clip: Path, callback_url: str | None = None) -> Pipeline:
    pipeline = build()
    if callback_url:
        new_job(store, clip, callback_url=callback_url)
    else:
        new_job(store, clip)
    pipeline.start("j1", "w0")
    return pipeline


def test_a_stale_holder_cannot_fail_a_job_another_holder_moved(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = _at_chunk_1(build, store, clip)
    assert store.claim("j1", "stale", 5, expectation(TASK_CHUNK, 1)).record is not None
    lapse(store)  # "stale" pauses past its lease...
    assert pipeline.chunk("j1", 1, "fresh") is not None  # ...and another worker sends chunk 2
    assert fail(pipeline, "j1", "stale", GaveUp(9, ApiUnavailable("late", reason="timeout")),
                expectation(TASK_CHUNK, 1)) == (False, None)
    job = record(store)
    assert (job.state, job.next_chunk, job.error) == (State.UPLOADING, 2, None)


def test_a_holder_cannot_fail_a_job_another_holder_holds(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = _at_chunk_1(build, store, clip)
    assert store.claim("j1", "other", 5, expectation(TASK_CHUNK, 1)).record is not None
    assert fail(pipeline, "j1", "me", SourceError("gone"), expectation(TASK_CHUNK, 1)) == (False, None)
    assert record(store).state is State.UPLOADING and store.lease_holder("j1") == "other"


def test_a_lapsed_lease_nobody_took_is_reclaimed_to_record_the_failure(build: Build, store: JobStore,
                                                                       clip: Path) -> None:
    pipeline = _at_chunk_1(build, store, clip, callback_url="https://hooks.example/vuq")
    assert store.claim("j1", "me", 5, expectation(TASK_CHUNK, 1)).record is not None
    lapse(store)
    error = ApiRejected(401, "The upload token is invalid or expired.", slug=TOKEN_INVALID, token_refused=True)
    assert fail(pipeline, "j1", "me", error, expectation(TASK_CHUNK, 1)) == (True, Step(TASK_WEBHOOK, "j1"))
    job = record(store)
    assert (job.state, job.error_reason, job.error_retryable, job.error_needs) == (State.FAILED, "api_rejected",
                                                                                   True, "token")
    assert job.error is not None and "invalid or expired" in job.error
    assert job.next_chunk == 1 and has_token(store, "j1")  # the cursor and token stay: resumable
    assert store.lease_holder("j1") is None
    assert job.resume_hint() == "vuq resume j1 --token-file FILE (a new upload token)"


def test_the_holder_itself_fails_its_job(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = _at_chunk_1(build, store, clip)
    assert store.claim("j1", "me", 5, expectation(TASK_CHUNK, 1)).record is not None
    assert fail(pipeline, "j1", "me", SourceError("source: gone"), expectation(TASK_CHUNK, 1)) == (True, None)
    job = record(store)
    assert (job.state, job.error_reason, job.error_retryable) == (State.FAILED, "bad_source", False)
    assert job.resume_hint() is None and store.lease_holder("j1") is None


# -- steps that keep dying, leases lost --------------------------------------------------------
def _die(store: JobStore, times: int) -> None:
    """``times`` workers claim the start step and die without a trace but the count of starts."""
    for n in range(times):
        assert store.claim("j1", f"dead{n}", 5, expectation(TASK_START)).record is not None
        lapse(store)


def test_a_step_that_keeps_dying_is_refused(build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    pipeline = build(max_retries=2)
    new_job(store, clip)
    _die(store, 3)
    with pytest.raises(StepKeepsDying, match="started 3 times") as info:
        pipeline.start("j1", "w")
    assert fake.requests == []
    assert info.value.reason == "worker_lost" and info.value.resumable
    assert fail(pipeline, "j1", "w", info.value, expectation(TASK_START))[0]
    assert record(store).error_reason == "worker_lost"


def test_a_step_started_up_to_max_retries_plus_one_times_runs(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = build(max_retries=2)
    new_job(store, clip)
    _die(store, 2)
    assert pipeline.start("j1", "w") is not None
    assert record(store).step_starts == 0  # the cursor moved: the count starts again


def test_a_job_cancelled_during_the_upload_loses_the_lease(build: Build, store: JobStore, fake: FakeApiVideo,
                                                           clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    pipeline.start("j1", "w0")
    fake.hooks.append(lambda r: store.update("j1", None, {"state": State.CANCELLED})
                      if r.url.path == "/upload" else None)
    with pytest.raises(LeaseLost):
        pipeline.chunk("j1", 1, "w1")
    job = record(store)
    assert (job.state, job.next_chunk, job.bytes_sent) == (State.CANCELLED, 1, CHUNK)


def test_a_job_taken_over_during_the_upload_loses_the_lease(build: Build, store: JobStore, fake: FakeApiVideo,
                                                            clip: Path) -> None:
    pipeline = build()
    new_job(store, clip)
    pipeline.start("j1", "w0")

    def taken_over(request: httpx.Request) -> None:
        if request.url.path == "/upload":
            lapse(store)
            store.claim("j1", "rival", 5, expectation(TASK_CHUNK, 1))

    fake.hooks.append(taken_over)
    with pytest.raises(LeaseLost):
        pipeline.chunk("j1", 1, "w1")
    assert record(store).next_chunk == 1 and store.lease_holder("j1") == "rival"


def test_the_keeper_holds_the_lease_through_a_slow_upload(build: Build, store: JobStore, fake: FakeApiVideo,
                                                          clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    ttl_s = 1
    pipeline = build(None, lease_ttl_s=ttl_s)
    new_job(store, clip)
    seen: list[tuple[str | None, str | None, int]] = []

    def slow(request: httpx.Request) -> None:
        if request.url.path == "/upload":
            time.sleep(ttl_s * 1.6)  # the server answers well after the lease's TTL (not a synchronisation)
            rival = store.claim("j1", "rival", ttl_s, expectation(TASK_START))
            seen.append((store.lease_holder("j1"), rival.holder, record(store).chunk_bytes))

    fake.hooks.append(slow)
    with caplog.at_level(logging.WARNING, logger="tasks.pipeline.leases"):
        step = pipeline.start("j1", "w")
    assert seen == [("w", "w", CHUNK)]  # still ours when the answer came; the bytes sent were noted
    assert not [r for r in caplog.records if "taken back" in r.getMessage()]  # renewed in time, never lapsed
    assert step is not None and step.chunk == 1 and record(store).next_chunk == 1


def test_a_lease_lost_during_the_upload_stops_the_step_even_if_it_came_free_again(
        build: Build, redis_client: redis.Redis, fake: FakeApiVideo, clip: Path) -> None:
    counting = CountingStore(redis_client)
    pipeline = build(None, lease_ttl_s=1, job_store=counting)
    new_job(counting, clip)

    def taken_and_dropped(request: httpx.Request) -> None:
        if request.url.path == "/upload":
            lapse(counting)
            assert counting.claim("j1", "rival", 5, expectation(TASK_START)).record is not None
            wait_until(lambda: LOST in counting.renewals, what="the keeper to see the rival")
            assert counting.update("j1", "rival", {}, release=True)  # the rival stops; the lease is free again

    fake.hooks.append(taken_and_dropped)
    with pytest.raises(LeaseLost):
        pipeline.start("j1", "w")
    job = record(counting)
    assert (job.next_chunk, job.bytes_sent) == (0, 0)  # a write the fence alone would have let through


# -- chunk size and the upload budget ----------------------------------------------------------
def _budget(pipeline: Pipeline) -> FleetLimiter:
    """The upload budget of the ``default`` account the rig's jobs run in."""
    assert pipeline.keyring is not None and pipeline.keyring.default is not None
    return pipeline.keyring.default.limiter


def _chunk_size_at_start(pipeline: Pipeline, store: JobStore, clip: Path, pinned: int | None = None) -> int:
    """The chunk size j1's start records (its upload may then have to wait for a slot: not the point here)."""
    if pinned:
        new_job(store, clip, chunk_size=pinned)
    else:
        new_job(store, clip)
    with contextlib.suppress(Throttled):
        pipeline.start("j1", "w")
    return int(record(store).chunk_size or 0)


def test_an_idle_budget_keeps_the_default_chunk_size(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = build(rate_limits={"upload": 10})
    assert _budget(pipeline).acquire(UPLOAD) == 0  # one upload in the last minute and j1's three: under half of 10
    assert _chunk_size_at_start(pipeline, store, clip) == CHUNK


def test_requests_in_hand_reaching_half_the_budget_fit_the_largest_chunk(
        build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    pipeline = build(rate_limits={"upload": 10})
    budget = _budget(pipeline)
    assert budget.acquire(UPLOAD) == 0  # one upload in the last minute...
    assert budget.acquire(UPLOAD, Turn("other")) > 0  # ...another tenant waiting, and j1's three: 5 of 10
    assert _chunk_size_at_start(pipeline, store, clip) == MAX_CHUNK_BYTES
    assert record(store).chunks_total == 1  # the whole source in one request


@pytest.mark.parametrize(("limit", "fitted"), [(6, MAX_CHUNK_BYTES), (7, CHUNK)])
def test_a_job_that_is_half_the_budget_by_itself_fits_the_largest_chunk(
        build: Build, store: JobStore, clip: Path, limit: int, fitted: int) -> None:
    """Alone, j1's three requests at the default size are half of 6 (binds), not of 7: what is
    enqueued after it (before or after it starts) does not decide."""
    assert _chunk_size_at_start(build(rate_limits={"upload": limit}), store, clip) == fitted


def test_a_learned_limit_binds_like_a_configured_one(build: Build, store: JobStore, clip: Path) -> None:
    pipeline = build()
    _budget(pipeline).observe(UPLOAD, 201, {"x-ratelimit-limit": "4"})
    assert _chunk_size_at_start(pipeline, store, clip) == MAX_CHUNK_BYTES


def test_an_unknown_limit_keeps_the_default_chunk_size(build: Build, store: JobStore, clip: Path) -> None:
    assert _chunk_size_at_start(build(), store, clip) == CHUNK


def test_a_pinned_chunk_size_always_wins(build: Build, store: JobStore, clip: Path) -> None:
    pinned = 6 * MIB
    assert _chunk_size_at_start(build(rate_limits={"upload": 2}), store, clip, pinned) == pinned


def test_the_budget_of_another_account_does_not_fit_this_jobs_chunks(build: Build, store: JobStore,
                                                                     clip: Path) -> None:
    pipeline = build(rate_limits={"upload": 10})
    busy = FleetLimiter(store.redis, "some-other-account", {"upload": 10})
    assert busy.acquire(UPLOAD) == 0 and busy.acquire(UPLOAD, Turn("other")) > 0
    assert _chunk_size_at_start(pipeline, store, clip) == CHUNK


def test_a_retried_start_keeps_the_chunk_size_its_first_attempt_recorded(
        build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    pipeline = build(rate_limits={"upload": 10})
    new_job(store, clip)
    fake.fail("POST", "/upload", 502, "server-error", after=True)  # chunk 0 arrives; its answer is lost
    with pytest.raises(ApiUnavailable):
        pipeline.start("j1", "w0")
    assert record(store).chunk_size == CHUNK
    lapse(store)
    for tenant in ("a", "b", "c", "d"):  # meanwhile the fleet got busy: the budget now binds
        _budget(pipeline).acquire(UPLOAD, Turn(tenant))
    with contextlib.suppress(Throttled):
        pipeline.start("j1", "w1")
    assert record(store).chunk_size == CHUNK


# -- the policy the Celery adapters apply -----------------------------------------------------
@pytest.mark.parametrize(("error", "resumable"), [
    (ConfigError("VUQ_API_KEY missing"), True),
    (StepKeepsDying(9), True),
    (ApiRejected(401, "invalid upload token", slug=TOKEN_INVALID), True),
    (ApiRejected(401, "missing upload token", slug="authentication-missing-upload-token"), True),
    (ApiRejected(401, "Unauthorized"), True),
    (ApiRejected(403, "Forbidden"), True),
    (ApiRejected(400, "bad key", slug="authentication-invalid-user-credentials"), True),
    (ApiRejected(400, "An attribute is invalid.", slug="invalid-attribute"), False),
    (ApiRejected(404, "not found", slug="resource-not-found"), False),
    (ApiRejected(400, "overlap", slug=OVERLAP), False),
    (SourceError("source: gone"), False),
    (SpecError("video.title", "too long"), False),
    (PermanentError("no video id was recorded"), False),
])
def test_which_failures_a_resume_can_help(error: PermanentError, resumable: bool) -> None:
    assert error.resumable is resumable


@pytest.mark.parametrize("attempt", [0, 1, 3, 10, 60])
def test_backoff_is_full_jitter_under_its_cap(attempt: int) -> None:
    ceiling = min(120.0, 2.0 * 2 ** attempt)
    delays = [backoff_s(attempt, 2.0, 120.0, rng=random.Random(seed)) for seed in range(300)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling * 0.9 and min(delays) < ceiling * 0.1  # spread over the whole range


def test_a_retry_after_is_a_floor_above_the_cap() -> None:
    delays = [backoff_s(0, 2.0, 10.0, retry_after_s=42.0, rng=random.Random(seed)) for seed in range(100)]
    assert all(42.0 <= d <= 43.0 for d in delays)


def test_a_small_retry_after_does_not_cut_the_backoff() -> None:
    delays = [backoff_s(5, 2.0, 60.0, retry_after_s=0.0, rng=random.Random(seed)) for seed in range(100)]
    assert all(0.0 <= d <= 60.0 for d in delays) and max(delays) > 30.0


def test_each_task_expects_its_place_in_the_record() -> None:
    assert expectation(TASK_START) == {"state": [State.QUEUED, State.UPLOADING], "next_chunk": [0]}
    assert expectation(TASK_CHUNK, 4) == {"state": [State.UPLOADING], "next_chunk": [4]}
    assert expectation(TASK_FINALIZE) == {"state": [State.FINALIZING]}
