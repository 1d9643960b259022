"""Live jobs on the pipeline rig (a job store on fakeredis, a fake api.video that takes numbered parts, local
files that grow): the hold-back rule, waiting in the delayed set, the end given by a finish (with a size,
without one, by idleness), a part whose answer was lost checked against ``receivedParts`` before it goes
again, a file that shrinks, a producer gone silent; and ``tasks.pipeline.live.look`` alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.constants import DELAYED_KEY, LIVE_WAITING_KEY, TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.errors import LiveIdle, LiveSizeError
from tasks.job.record import JobRecord, State
from tasks.job.spec import UploadSpec
from tasks.job.store import JobStore
from tasks.pipeline.live import look
from tasks.pipeline.message import Step
from tasks.pipeline.operations import OperationError, finish
from tasks.pipeline.outcomes import Attempt, Continue, Fail, Retry, Stop
from tasks.pipeline.upload import Pipeline
from tests.unit.tasks.fakes import PART_SENT, FakeApiVideo
from tests.unit.tasks.rig import CHUNK, Build, new_job, record

IDLE_S = 3600
JOB = "live-1"


def grow(path: Path, size: int) -> bytes:
    """The file's first ``size`` bytes (deterministic); the file is made that long."""
    data = bytes((i * 7 + i // 4099) % 251 for i in range(size))
    path.write_bytes(data)
    return data


@pytest.fixture
def growing(root: Path) -> Path:
    path = root / "recording.mp4"
    path.write_bytes(b"")
    return path


def live_job(store: JobStore, path: Path, **spec: object) -> str:
    return new_job(store, path, JOB, live=True, chunk_size=CHUNK, **spec)


def drive(pipeline: Pipeline, step: Step | None, retries: int = 0) -> Step | None:
    """Run ``step`` and the steps it continues with until one waits, fails or ends; the step left waiting
    (None once the job ended)."""
    while step is not None:
        outcome = pipeline.run(step, Attempt("task", retries))
        if not isinstance(outcome, Continue) or outcome.step.task not in (TASK_START, TASK_CHUNK, TASK_FINALIZE):
            job = pipeline.store.get(step.job_id)
            return step if isinstance(outcome, Stop | Retry) and job and job.state.active else None
        step = outcome.step
    return None


def parts(fake: FakeApiVideo) -> list[str]:
    return [u.content_range or "" for u in fake.uploads]


def test_parts_go_as_the_file_grows_and_one_byte_is_always_held_back(build: Build, store: JobStore,
                                                                       fake: FakeApiVideo, growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    grow(growing, 2 * CHUNK)  # exactly two chunks: the second may be the last, so it waits
    waiting = drive(pipeline, Step(TASK_START, JOB))
    assert parts(fake) == ["part 1/*"]
    assert waiting == Step(TASK_CHUNK, JOB, 1) or (waiting and (waiting.task, waiting.chunk) == (TASK_CHUNK, 1))
    job = record(store, JOB)
    assert (job.state, job.next_chunk, job.bytes_sent, job.size, job.live_seen) == (
        State.UPLOADING, 1, CHUNK, None, 2 * CHUNK)
    assert store.redis.zcard(DELAYED_KEY) == 1 and store.redis.zscore(LIVE_WAITING_KEY, JOB) is not None
    assert store.live_waiting_count() == 1
    data = grow(growing, 2 * CHUNK + 1)
    drive(pipeline, Step(TASK_CHUNK, JOB, 1))
    assert parts(fake) == ["part 1/*", "part 2/*"]  # one byte more: part 2 is not the last
    assert finish(store, JOB, lambda s: None) == f"job {JOB}: finished at its file's size; its last part goes now"
    assert drive(pipeline, Step(TASK_CHUNK, JOB, 2)) is None
    assert parts(fake) == ["part 1/*", "part 2/*", "part 3/3"] and fake.uploads[-1].length == 1
    job = record(store, JOB)
    assert job.state == State.DONE and job.size == 2 * CHUNK + 1 and job.finished_at
    assert fake.videos[job.video_id or ""].bytes == data and store.live_waiting_count() == 0


def test_a_size_that_is_an_exact_multiple_ends_with_a_whole_last_part(build: Build, store: JobStore,
                                                                       fake: FakeApiVideo, growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    data = grow(growing, 3 * CHUNK)
    drive(pipeline, Step(TASK_START, JOB))
    assert parts(fake) == ["part 1/*", "part 2/*"]
    finish(store, JOB, lambda s: None, size=3 * CHUNK)
    assert record(store, JOB).chunks_total == 3
    drive(pipeline, Step(TASK_CHUNK, JOB, 2))
    assert parts(fake) == ["part 1/*", "part 2/*", "part 3/3"] and fake.uploads[-1].length == CHUNK
    assert fake.videos[record(store, JOB).video_id or ""].bytes == data


def test_a_file_that_does_not_exist_yet_is_waited_for(build: Build, store: JobStore, fake: FakeApiVideo,
                                                      root: Path) -> None:
    pipeline = build()
    path = root / "later.mp4"
    live_job(store, path)
    waiting = drive(pipeline, Step(TASK_START, JOB))
    assert waiting is not None and waiting.task == TASK_START and not fake.uploads
    job = record(store, JOB)
    assert job.state == State.QUEUED and job.live_grew_at is not None and store.redis.zcard(DELAYED_KEY) == 1
    data = grow(path, CHUNK + 10)
    drive(pipeline, Step(TASK_START, JOB))
    finish(store, JOB, lambda s: None)
    drive(pipeline, Step(TASK_CHUNK, JOB, 1))
    assert parts(fake) == ["part 1/*", "part 2/2"]
    assert fake.videos[record(store, JOB).video_id or ""].bytes == data


def test_a_part_whose_answer_was_lost_is_not_sent_again(build: Build, store: JobStore, fake: FakeApiVideo,
                                                        growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    data = grow(growing, 2 * CHUNK + 5)
    fake.fail("POST", "/upload", 502, after=True)  # part 1 arrives; its answer does not
    assert isinstance(pipeline.run(Step(TASK_START, JOB), Attempt("task")), Retry)
    assert parts(fake) == ["part 1/*"] and record(store, JOB).next_chunk == 0
    drive(pipeline, Step(TASK_START, JOB), retries=1)  # the retry asks api.video first: part 1 is there
    assert parts(fake) == ["part 1/*", "part 2/*"]
    assert "GET /videos/" + (record(store, JOB).video_id or "") + "/status" in fake.routes()
    finish(store, JOB, lambda s: None)
    drive(pipeline, Step(TASK_CHUNK, JOB, 2))
    assert fake.videos[record(store, JOB).video_id or ""].bytes == data and record(store, JOB).state == State.DONE


def test_a_part_answered_as_sent_already_is_taken_once_api_video_lists_it(
        build: Build, store: JobStore, fake: FakeApiVideo, growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    grow(growing, CHUNK + 1)
    fake.fail("POST", "/upload", 400, PART_SENT)  # not there yet: another request may still be delivering it
    outcome = pipeline.run(Step(TASK_START, JOB), Attempt("task"))
    assert isinstance(outcome, Retry) and outcome.error.reason == "in_flight" and record(store, JOB).next_chunk == 0
    fake.fail("POST", "/upload", 502, after=True)  # it arrives; its answer is lost
    assert isinstance(pipeline.run(Step(TASK_START, JOB), Attempt("task")), Retry)
    drive(pipeline, Step(TASK_START, JOB))  # not taken for a retry: sent again, refused, then checked
    assert parts(fake) == ["part 1/*", "part 1/*"]  # the one refused up front is not counted by the fake
    assert fake.routes().count("POST /upload") == 3
    job = record(store, JOB)
    assert (job.next_chunk, job.bytes_sent, job.verify_upload) == (1, CHUNK, False)


def test_a_file_that_shrinks_fails_resumable_and_keeps_what_was_sent(build: Build, store: JobStore,
                                                                     growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    grow(growing, CHUNK + 100)
    drive(pipeline, Step(TASK_START, JOB))
    grow(growing, 100)
    outcome = pipeline.run(Step(TASK_CHUNK, JOB, 1), Attempt("task"))
    assert isinstance(outcome, Fail)
    job = record(store, JOB)
    assert job.state == State.FAILED and job.error_retryable and job.error_reason == "live_size"
    assert "shrank to 100 bytes" in (job.error or "") and (job.next_chunk, job.bytes_sent) == (1, CHUNK)


def test_a_job_whose_file_stops_growing_past_its_timeout_fails_and_a_finish_resumes_it(
        build: Build, store: JobStore, fake: FakeApiVideo, growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    data = grow(growing, CHUNK + 7)
    drive(pipeline, Step(TASK_START, JOB))
    store.redis.hset(f"vuq:job:{JOB}", "live_grew_at", f"{store.now() - pipeline.settings.live_idle_timeout_s:.6f}")
    assert isinstance(pipeline.run(Step(TASK_CHUNK, JOB, 1), Attempt("task")), Fail)
    job = record(store, JOB)
    assert job.state == State.FAILED and job.error_reason == "live_idle" and job.error_retryable
    assert "VUQ_LIVE_IDLE_TIMEOUT_S" in (job.error or "")
    sent: list[Step] = []
    assert finish(store, JOB, sent.append) == f"job {JOB}: finished at its file's size; resumed"
    assert [(s.task, s.chunk) for s in sent] == [(TASK_CHUNK, 1)]
    drive(pipeline, sent[0])
    assert record(store, JOB).state == State.DONE and fake.videos[record(store, JOB).video_id or ""].bytes == data


def test_a_job_with_finish_when_idle_ends_by_itself(build: Build, store: JobStore, fake: FakeApiVideo,
                                                    growing: Path) -> None:
    pipeline = build()
    live_job(store, growing, finish_when_idle_s=30)
    data = grow(growing, CHUNK + 3)
    drive(pipeline, Step(TASK_START, JOB))
    assert parts(fake) == ["part 1/*"]
    store.redis.hset(f"vuq:job:{JOB}", "live_grew_at", f"{store.now() - 31:.6f}")
    drive(pipeline, Step(TASK_CHUNK, JOB, 1))
    job = record(store, JOB)
    assert parts(fake) == ["part 1/*", "part 2/2"] and job.state == State.DONE and job.finished_at
    assert fake.videos[job.video_id or ""].bytes == data


def test_finishes_that_do_not_apply_are_refused_naming_the_job(build: Build, store: JobStore, growing: Path,
                                                               clip: Path) -> None:
    pipeline = build()
    new_job(store, clip, "at-rest")
    with pytest.raises(OperationError, match="job at-rest is not live"):
        finish(store, "at-rest", lambda s: None)
    live_job(store, growing)
    grow(growing, CHUNK + 1)
    drive(pipeline, Step(TASK_START, JOB))
    with pytest.raises(OperationError, match=f"job {JOB}: {CHUNK} bytes is not more than the {CHUNK} already sent"):
        finish(store, JOB, lambda s: None, size=CHUNK)
    assert finish(store, JOB, lambda s: None, size=CHUNK + 1).startswith(f"job {JOB}: finished at {CHUNK + 1}")
    assert finish(store, JOB, lambda s: None, size=CHUNK + 1) == f"job {JOB}: already finished at {CHUNK + 1} bytes"
    with pytest.raises(OperationError, match="finished already at"):
        finish(store, JOB, lambda s: None, size=CHUNK + 2)
    with pytest.raises(OperationError, match="no job 'nope'"):
        finish(store, "nope", lambda s: None)


def test_a_finish_larger_than_the_file_fails_resumable_once_the_file_stays_short(
        build: Build, store: JobStore, fake: FakeApiVideo, growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    data = grow(growing, CHUNK + 10)
    drive(pipeline, Step(TASK_START, JOB))
    finish(store, JOB, lambda s: None, size=CHUNK + 20)
    assert drive(pipeline, Step(TASK_CHUNK, JOB, 1)) is not None  # short of its size: waits, writes may land
    store.redis.hset(f"vuq:job:{JOB}", "finished_at", f"{store.now() - 31:.6f}")
    store.redis.hset(f"vuq:job:{JOB}", "live_grew_at", f"{store.now() - 31:.6f}")
    assert isinstance(pipeline.run(Step(TASK_CHUNK, JOB, 1), Attempt("task")), Fail)
    job = record(store, JOB)
    assert job.error_reason == "live_size" and f"--size {CHUNK + 10}" in (job.error or "")
    sent: list[Step] = []
    assert "resumed" in finish(store, JOB, sent.append, size=CHUNK + 10)
    drive(pipeline, sent[0])
    assert record(store, JOB).state == State.DONE and fake.videos[record(store, JOB).video_id or ""].bytes == data


# -- look, alone -----------------------------------------------------------------------------
def _job(**fields: object) -> JobRecord:
    spec = UploadSpec("/v.mp4", live=True, finish_when_idle_s=fields.pop("idle", None))  # type: ignore[arg-type]
    return JobRecord(JOB, State.UPLOADING, spec, chunk_size=CHUNK, **fields)  # type: ignore[arg-type]


def test_look_holds_back_one_byte_and_counts_silence_from_the_last_growth() -> None:
    assert not look(_job(), 0, CHUNK, 100.0, IDLE_S).ready
    assert look(_job(), 0, CHUNK + 1, 100.0, IDLE_S).ready
    seen = look(_job(live_seen=10, live_grew_at=50.0), 0, 10, 100.0, IDLE_S)
    assert not seen.ready and seen.changes == {}  # no growth: nothing new to note
    assert look(_job(live_seen=10, live_grew_at=50.0), 0, 20, 100.0, IDLE_S).changes == {
        "live_seen": 20, "live_grew_at": 100.0}
    with pytest.raises(LiveIdle, match="neither grew nor was finished for 3600 s"):
        look(_job(live_seen=10, live_grew_at=0.0), 0, 10, 3600.0, IDLE_S)
    with pytest.raises(LiveSizeError, match="shrank to 5 bytes"):
        look(_job(live_seen=10, live_grew_at=0.0), 0, 5, 1.0, IDLE_S)


def test_look_plans_the_end_from_the_finish() -> None:
    finished = look(_job(finished_at=90.0, next_chunk=1, bytes_sent=CHUNK), 1, 2 * CHUNK, 100.0, IDLE_S)
    assert finished.ready and finished.plan.count == 2 and finished.plan.content_range(1) == "part 2/2"
    assert finished.changes["size"] == 2 * CHUNK
    with pytest.raises(LiveSizeError, match="more than the"):
        look(_job(finished_at=90.0, size=CHUNK + 1, bytes_sent=CHUNK), 1, CHUNK + 2, 100.0, IDLE_S)
    idle = look(_job(idle=5, live_seen=7, live_grew_at=90.0), 0, 7, 100.0, IDLE_S)
    assert idle.ready and idle.changes["finished_at"] == 100.0 and idle.plan.content_range(0) == "part 1/1"


def test_a_job_that_finishes_when_idle_never_times_out_first() -> None:
    long_idle = _job(idle=7200, live_seen=7, live_grew_at=0.0)
    assert not look(long_idle, 0, 7, 3600.0, IDLE_S).ready  # past the idle timeout, short of its own: waits
    assert look(long_idle, 0, 7, 7200.0, IDLE_S).changes["finished_at"] == 7200.0
    with pytest.raises(LiveIdle):  # an empty file has nothing to finish at: the timeout still holds
        look(_job(idle=7200, live_seen=0, live_grew_at=0.0), 0, 0, 3600.0, IDLE_S)


def test_a_finish_over_ten_thousand_parts_is_refused(build: Build, store: JobStore, growing: Path) -> None:
    pipeline = build()
    live_job(store, growing)
    grow(growing, CHUNK + 1)
    drive(pipeline, Step(TASK_START, JOB))
    with pytest.raises(OperationError, match="more than 10000 parts"):
        finish(store, JOB, lambda s: None, size=10_001 * CHUNK)
