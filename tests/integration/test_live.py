"""Live jobs on real Redis, real workers and the emulator: a recorder appends to a file while its job runs;
the job is finished by `vuq finish`, by `finish_upload`, by `vuq.upload.finish` sent by name and by its own
`finish_when_idle_s`. Every finished video is byte-identical to the file, its parts went in order as
`part n/*` and one `part N/N`, and each job made one video."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery
import pytest

from tasks import OperationError, finish_upload
from tasks.constants import JOB_KEY, MIB, TASK_FINISH
from tasks.job import JobRecord, State
from tests.support.stack import Stack, running_stack, vuq
from tests.support.waiting import wait_for
from workers.lab.recorder import Recorder
from workers.lab.services import RedisServer

pytestmark = pytest.mark.integration
CHUNK = 5 * MIB
IDLE_TIMEOUT_S = 6  # VUQ_LIVE_IDLE_TIMEOUT_S of this module's workers
FINAL_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("live")), redis_url, workers=1, concurrency=3,
                       VUQ_LIVE_IDLE_TIMEOUT_S=str(IDLE_TIMEOUT_S), VUQ_LEASE_TTL_S="5", VUQ_STALE_AFTER_S="10",
                       VUQ_JANITOR_INTERVAL_S="2") as system:
        yield system


@pytest.fixture(scope="module")
def by_name(stack: Stack) -> Iterator[celery.Celery]:
    """A producer in another language, as far as vuq can tell: it knows task names and nothing else."""
    app = celery.Celery("by-name", broker=stack.settings.broker_url, set_as_current=False)
    app.conf.update(task_serializer="json")
    yield app
    app.close()


def recording(stack: Stack, size: int, bytes_per_s: float = 8 * MIB, **options: Any) -> Recorder:
    name = f"live-{uuid.uuid4().hex[:8]}.mp4"
    return Recorder(stack.root / name, size, bytes_per_s, seed=size % 997, **options)


VIDEOS_BEFORE: dict[str, int] = {}  # job id -> videos the emulator held before it was enqueued


def enqueue_live(stack: Stack, recorder: Recorder, **spec: Any) -> str:
    before = len(stack.emulator.videos())
    job_id = stack.enqueue(recorder.path, live=True, chunk_size=CHUNK, **spec)
    VIDEOS_BEFORE[job_id] = before
    return job_id


def assert_whole(stack: Stack, job: JobRecord, recorder: Recorder) -> None:
    assert job.state == State.DONE, job
    video = stack.emulator.video(job.video_id or "")
    assert video["sha256"] == recorder.sha256
    count = -(-recorder.size // CHUNK)
    parts = sorted(video["chunks"], key=lambda c: c["arrived"])
    assert [c["part"] for c in parts] == list(range(1, count + 1)), parts  # in order, none twice, no gap
    assert [c["to"] - c["from"] + 1 for c in parts] == [CHUNK] * (count - 1) + [recorder.size - (count - 1) * CHUNK]
    # one video for the job (this module's tests run one after another against their own emulator)
    assert len(stack.emulator.videos()) == VIDEOS_BEFORE[job.job_id] + 1


def sent(stack: Stack, job_id: str) -> int:
    job = stack.store.get(job_id)
    return job.bytes_sent if job else 0


def waiting_for_bytes(stack: Stack, job_id: str) -> bool:
    """The job looked at its whole file and waits for more (or a finish)."""
    job = stack.store.get(job_id)
    return job is not None and job.state == State.UPLOADING and job.live_seen is not None and \
        job.live_seen == os.path.getsize(stack.root / os.path.basename(job.spec.source))



def test_a_growing_file_finished_by_vuq_finish(stack: Stack) -> None:
    recorder = recording(stack, 17 * MIB).start()
    job_id = enqueue_live(stack, recorder, video={"title": "Live talk"})
    wait_for(lambda: sent(stack, job_id) >= CHUNK, FINAL_TIMEOUT_S, "a part sent while the file grows")
    recorder.join(FINAL_TIMEOUT_S)
    wait_for(lambda: waiting_for_bytes(stack, job_id), FINAL_TIMEOUT_S, "the job waiting for more")
    assert stack.store.get(job_id).state == State.UPLOADING  # type: ignore[union-attr]  # never ended by itself
    out = vuq(stack, "finish", job_id)
    assert out.returncode == 0, out.stderr
    assert job_id in out.stdout and "finished" in out.stdout
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    assert_whole(stack, job, recorder)
    assert job.finished_at and job.public()["live"] is True and job.size == recorder.size
    assert stack.emulator.video(job.video_id or "")["title"] == "Live talk"


def test_finish_upload_in_python_at_an_exact_multiple_of_the_chunk_size(stack: Stack) -> None:
    recorder = recording(stack, 3 * CHUNK).start()
    job_id = enqueue_live(stack, recorder)
    recorder.join(FINAL_TIMEOUT_S)
    wait_for(lambda: waiting_for_bytes(stack, job_id) and sent(stack, job_id) == 2 * CHUNK, FINAL_TIMEOUT_S,
             "two parts sent, the third held back")
    line = finish_upload(job_id, size=recorder.size, settings=stack.settings)
    assert line == f"job {job_id}: finished at {recorder.size} bytes; its last part goes now"
    assert_whole(stack, stack.wait_final(job_id, FINAL_TIMEOUT_S), recorder)


def test_finish_sent_by_name_one_byte_over(stack: Stack, by_name: celery.Celery) -> None:
    recorder = recording(stack, 3 * CHUNK + 1).start()
    job_id = enqueue_live(stack, recorder)
    recorder.join(FINAL_TIMEOUT_S)
    wait_for(lambda: waiting_for_bytes(stack, job_id), FINAL_TIMEOUT_S, "the job waiting for more")
    by_name.send_task(TASK_FINISH, kwargs={"job_id": job_id}, queue=stack.settings.queue)
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    assert_whole(stack, job, recorder)
    assert job.size == recorder.size  # the size the worker saw: the file's


def test_a_job_that_finishes_when_its_file_is_idle(stack: Stack) -> None:
    recorder = recording(stack, CHUNK + 12345).start()
    job_id = enqueue_live(stack, recorder, finish_when_idle_s=2)
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    assert_whole(stack, job, recorder)
    assert job.finished_at is not None and recorder.ended_at is not None
    assert job.finished_at >= recorder.ended_at + 2 - 0.5  # not before its file was idle that long


def test_a_file_that_does_not_exist_yet_is_waited_for(stack: Stack) -> None:
    recorder = recording(stack, CHUNK + 99, create=False)
    job_id = enqueue_live(stack, recorder)
    wait_for(lambda: getattr(stack.store.get(job_id), "live_grew_at", None) is not None, FINAL_TIMEOUT_S,
             "the job waiting for its file")
    assert stack.store.get(job_id).state == State.QUEUED  # type: ignore[union-attr]
    recorder.path.write_bytes(b"")
    recorder.start().join(FINAL_TIMEOUT_S)
    wait_for(lambda: waiting_for_bytes(stack, job_id), FINAL_TIMEOUT_S, "the job waiting for more")
    finish_upload(job_id, settings=stack.settings)
    assert_whole(stack, stack.wait_final(job_id, FINAL_TIMEOUT_S), recorder)


def test_a_worker_killed_mid_part_leaves_no_gap_and_no_collision(stack: Stack) -> None:
    recorder = recording(stack, 3 * CHUNK + 500).start()
    recorder.join(FINAL_TIMEOUT_S)
    stack.emulator.set_faults(latency_ms=[1500, 1500])
    beat = stack.add_beat()
    try:
        job_id = enqueue_live(stack, recorder)
        wait_for(lambda: any(e["path"] == "/upload" and e["status"] is None and e["content_range"] == "part 2/*"
                             for e in stack.emulator.requests_log()), FINAL_TIMEOUT_S, "part 2 on its way")
        victim = stack.workers[0]
        victim.kill()
        # finished now: the file stopped growing before the job began, and the lease a dead worker held takes
        # longer to reclaim than this module's idle timeout (VUQ_LIVE_IDLE_TIMEOUT_S=6)
        finish_upload(job_id, size=recorder.size, settings=stack.settings)
        stack.emulator.set_faults(latency_ms=[0, 0])
        stack.workers.remove(victim)
        stack.add_worker(concurrency=3)
        job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    finally:
        stack.emulator.set_faults(latency_ms=[0, 0])
        beat.stop()
        stack.workers.remove(beat)
    assert_whole(stack, job, recorder)


def test_a_file_that_shrinks_fails_resumable_keeping_what_was_sent(stack: Stack) -> None:
    recorder = recording(stack, CHUNK + 1000).start()
    job_id = enqueue_live(stack, recorder)
    recorder.join(FINAL_TIMEOUT_S)
    wait_for(lambda: sent(stack, job_id) == CHUNK, FINAL_TIMEOUT_S, "part 1 sent")
    os.truncate(recorder.path, 100)
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and job.error_retryable and job.error_reason == "live_size", job
    assert "shrank to 100 bytes" in (job.error or "") and (job.next_chunk, job.bytes_sent) == (1, CHUNK)
    out = vuq(stack, "status", job_id)
    assert "shrank" in out.stdout and "live" in out.stdout


def test_a_wrong_size_is_refused_or_fails_resumable_and_the_right_one_completes_the_job(stack: Stack) -> None:
    recorder = recording(stack, CHUNK + 4321).start()
    job_id = enqueue_live(stack, recorder)
    recorder.join(FINAL_TIMEOUT_S)
    wait_for(lambda: sent(stack, job_id) == CHUNK, FINAL_TIMEOUT_S, "part 1 sent")
    small = vuq(stack, "finish", job_id, "--size", str(CHUNK))
    assert small.returncode == 1 and small.stderr.count("\n") == 1
    assert f"job {job_id}: {CHUNK} bytes is not more than the {CHUNK} already sent" in small.stderr
    assert vuq(stack, "finish", job_id, "--size", str(recorder.size + 10)).returncode == 0
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)  # the file never reaches that size: the grace runs out
    assert job.state == State.FAILED and job.error_reason == "live_size" and job.error_retryable, job
    assert f"--size {recorder.size}" in (job.error or "")
    right = vuq(stack, "finish", job_id, "--size", str(recorder.size))
    assert right.returncode == 0 and "resumed" in right.stdout, right.stderr
    assert_whole(stack, stack.wait_final(job_id, FINAL_TIMEOUT_S), recorder)


def test_a_live_job_left_idle_past_its_timeout_fails_then_a_finish_completes_it(stack: Stack) -> None:
    recorder = recording(stack, CHUNK + 77).start()
    job_id = enqueue_live(stack, recorder)
    recorder.join(FINAL_TIMEOUT_S)
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and job.error_reason == "live_idle" and job.error_retryable, job
    assert f"{IDLE_TIMEOUT_S} s (VUQ_LIVE_IDLE_TIMEOUT_S)" in (job.error or "")
    assert job.bytes_sent == CHUNK and job.resume_hint() == f"vuq resume {job_id}"
    assert finish_upload(job_id, settings=stack.settings) == f"job {job_id}: finished at its file's size; resumed"
    assert_whole(stack, stack.wait_final(job_id, FINAL_TIMEOUT_S), recorder)


def test_a_live_job_failed_idle_is_resumed_by_vuq_resume_once_its_file_grows_again(stack: Stack) -> None:
    recorder = recording(stack, 2 * CHUNK + 500, hold_at=CHUNK + 77).start()  # pauses longer than the timeout
    job_id = enqueue_live(stack, recorder)
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and job.error_reason == "live_idle" and job.bytes_sent == CHUNK, job
    recorder.release()
    recorder.join(FINAL_TIMEOUT_S)
    resumed = vuq(stack, "resume", job_id)
    assert resumed.returncode == 0 and f"job {job_id}: resumed" in resumed.stdout, resumed.stderr
    wait_for(lambda: sent(stack, job_id) == 2 * CHUNK, FINAL_TIMEOUT_S, "the part the file grew by")
    finish_upload(job_id, size=recorder.size, settings=stack.settings)
    assert_whole(stack, stack.wait_final(job_id, FINAL_TIMEOUT_S), recorder)


def test_vuq_enqueue_live_with_finish_when_idle_waits_for_a_file_that_does_not_exist_yet(stack: Stack) -> None:
    recorder = recording(stack, CHUNK + 4096, create=False)
    before = len(stack.emulator.videos())
    out = vuq(stack, "enqueue", str(recorder.path), "--live", "--finish-when-idle", "2", "--chunk-size", "5MiB")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    VIDEOS_BEFORE[job_id] = before
    wait_for(lambda: getattr(stack.store.get(job_id), "live_grew_at", None) is not None, FINAL_TIMEOUT_S,
             "the job waiting for its file")
    recorder.path.write_bytes(b"")
    recorder.start().join(FINAL_TIMEOUT_S)
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)  # nobody finishes it: its file stays idle for 2 s
    assert_whole(stack, job, recorder)
    assert job.spec.finish_when_idle_s == 2 and job.finished_at is not None


def test_people_see_a_live_job_as_live_without_a_percentage(stack: Stack) -> None:
    recorder = recording(stack, CHUNK + 1).start()
    job_id = enqueue_live(stack, recorder)
    recorder.join(FINAL_TIMEOUT_S)
    wait_for(lambda: waiting_for_bytes(stack, job_id) and sent(stack, job_id) == CHUNK, FINAL_TIMEOUT_S,
             "part 1 sent")
    status = vuq(stack, "status", job_id).stdout
    assert "recording" in status and "size not known yet" in status and "%" not in status
    listing = vuq(stack, "jobs", "--limit", "3").stdout
    assert "live 1" in listing
    shown = json.loads(vuq(stack, "status", job_id, "--json").stdout)
    assert shown["live"] is True and shown["size"] is None and shown["finished_at"] is None
    waiting = str(stack.store.redis.hget(JOB_KEY.format(job_id=job_id), "wake_member"))  # its step, waiting
    assert "'live': 'recording'" in json.loads(waiting)["label"] and "'chunk': '2/?'" in json.loads(waiting)["label"]
    finish_upload(job_id, settings=stack.settings)
    done = json.loads(vuq(stack, "status", job_id, "--json").stdout)
    assert done["finished_at"] is not None
    assert stack.wait_final(job_id, FINAL_TIMEOUT_S).state == State.DONE


def test_finishes_that_do_not_apply_are_refused_in_one_line(stack: Stack, by_name: celery.Celery) -> None:
    path, _ = stack.file("at-rest.mp4", 1 * MIB, seed=81)
    at_rest = stack.enqueue(path)
    assert stack.wait_final(at_rest, FINAL_TIMEOUT_S).state == State.DONE
    out = vuq(stack, "finish", at_rest)
    assert out.returncode == 1 and out.stderr.strip() == f"vuq finish: job {at_rest} is not live; only a live job " \
        "(--live) is finished"
    with pytest.raises(OperationError, match="no job 'nobody'"):
        finish_upload("nobody", settings=stack.settings)
    task_id = f"bad-finish-{uuid.uuid4().hex[:6]}"
    by_name.send_task(TASK_FINISH, kwargs={"job_id": at_rest, "size": -3}, queue=stack.settings.queue,
                      task_id=task_id)
    wait_for(lambda: f"{task_id}] received" in stack.logs() and "size: must be a whole number" in stack.logs(),
             FINAL_TIMEOUT_S, "the message refused")


def test_a_live_job_rides_out_a_redis_restart_while_it_waits(tmp_path: Path) -> None:
    """Its own Redis (AOF), restarted while the job waits for its file in the delayed set: the worker's
    pump and the job go on, the rest of the recording goes up, the finish completes it."""
    server = RedisServer(tmp_path / "redis", aof=True).start()
    try:
        with running_stack(tmp_path, server.url, workers=1, concurrency=2, VUQ_LIVE_IDLE_TIMEOUT_S="60") as own:
            recorder = Recorder(own.root / "restart.mp4", 3 * CHUNK + 999, 8 * MIB, seed=5, hold_at=CHUNK + 10).start()
            job_id = enqueue_live(own, recorder)
            wait_for(lambda: waiting_for_bytes(own, job_id) and sent(own, job_id) == CHUNK, FINAL_TIMEOUT_S,
                     "part 1 sent, the job waiting for more")
            server.restart()  # SIGTERM: Redis writes its AOF; the workers lose every connection
            recorder.release()
            recorder.join(FINAL_TIMEOUT_S)
            wait_for(lambda: sent(own, job_id) == 3 * CHUNK, FINAL_TIMEOUT_S, "the parts written after the restart")
            finish_upload(job_id, settings=own.settings)
            assert_whole(own, own.wait_final(job_id, FINAL_TIMEOUT_S), recorder)
    finally:
        server.stop()
