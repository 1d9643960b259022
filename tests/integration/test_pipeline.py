"""The upload pipeline end to end: real Redis, real worker processes, the emulator over HTTP."""

from __future__ import annotations

from tasks import resume_upload
from tasks.constants import JOB_METADATA_KEY, MIB, TASK_CHUNK
from tasks.job.record import State
from tasks.pipeline.upload import Step
from tests.support.checks import chunks_in_order, videos_of
from tests.support.events import capturing_events
from tests.support.stack import Stack
from tests.support.waiting import wait_for


def assert_in_order(chunks: list[dict]) -> None:
    """Chunks sorted by offset arrived in that same order, with no gap."""
    assert chunks_in_order(chunks), chunks


def test_23_mib_in_5_mib_chunks_arrives_identical_in_order_with_metadata(stack: Stack) -> None:
    path, digest = stack.file("talk.mp4", 23 * MIB, seed=1)
    job_id = stack.enqueue(path, video={"title": "Talk", "tags": ["conf"], "description": "d",
                                        "metadata": {"speaker": "Ada"}, "public": False},
                           chunk_size="5MiB")
    job = stack.wait_final(job_id)
    assert job.state == State.DONE, job.error
    assert (job.size, job.bytes_sent, job.chunks_total, job.next_chunk) == (23 * MIB, 23 * MIB, 5, 5)
    video = stack.emulator.video(job.video_id)
    assert video["complete"] and video["sha256"] == digest
    assert len(video["chunks"]) == 5
    assert_in_order(video["chunks"])
    assert video["title"] == "Talk" and video["tags"] == ["conf"]
    assert video["metadata"]["speaker"] == "Ada"
    assert video["metadata"][JOB_METADATA_KEY] == job_id


def test_3_mib_file_goes_up_in_one_request(stack: Stack) -> None:
    path, digest = stack.file("short.mp4", 3 * MIB, seed=2)
    job = stack.wait_final(stack.enqueue(path, video={"title": "Short"}))
    assert job.state == State.DONE, job.error
    assert job.chunks_total == 1
    video = stack.emulator.video(job.video_id)
    assert video["sha256"] == digest
    assert [(c["from"], c["to"]) for c in video["chunks"]] == [(0, 3 * MIB - 1)]
    uploads = [r for r in stack.emulator.requests_log()
               if r["path"] == "/upload" and r.get("video_id") == job.video_id]
    assert len(uploads) == 1 and not uploads[0]["content_range"]


def test_eight_jobs_across_two_workers_all_finish_in_order(stack: Stack) -> None:
    files = [stack.file(f"many-{i}.bin", 11 * MIB + i * 4096, seed=10 + i) for i in range(8)]
    job_ids = [stack.enqueue(path, chunk_size="5MiB", video={"title": f"many {i}"})
               for i, (path, _) in enumerate(files)]
    for job_id, (_, digest) in zip(job_ids, files, strict=True):
        job = stack.wait_final(job_id, timeout_s=120)
        assert job.state == State.DONE, job.error
        video = stack.emulator.video(job.video_id)
        assert video["sha256"] == digest
        assert_in_order(video["chunks"])
    served_by = {line.split("]")[0] for w in stack.workers for line in w.log().splitlines() if "chunk " in line}
    assert len(stack.workers) == 2 and all("chunk" in w.log() for w in stack.workers), served_by


def test_a_token_nobody_holds_fails_the_job_until_a_new_token_resumes_it(stack: Stack) -> None:
    path, digest = stack.file("bad-token.bin", 6 * MIB, seed=3)
    job = stack.wait_final(stack.enqueue(path, token="to00000000000000000000000"))
    assert job.state == State.FAILED and job.retries == 0 and job.error_needs == "token", job
    resume_upload(job.job_id, token=stack.emulator.create_upload_token(), settings=stack.settings)
    job = stack.wait_final(job.job_id)
    assert job.state == State.DONE, job.error
    assert stack.emulator.video(job.video_id or "")["sha256"] == digest


def test_duplicated_chunk_message_changes_nothing(stack: Stack) -> None:
    path, digest = stack.file("dup.bin", 40 * MIB, seed=4)
    job_id = stack.enqueue(path, chunk_size="5MiB", video={"title": "dup"})
    job = wait_for(lambda: (j := stack.store.get(job_id)) and j.next_chunk >= 3 and j, 60, "chunk 3")
    # the same chunk message again, by hand: an already-sent chunk and the current one, twice
    for index in (1, 2, job.next_chunk, job.next_chunk):
        stack.send(Step(TASK_CHUNK, job_id, index))
    job = stack.wait_final(job_id)
    assert job.state == State.DONE, job.error
    mine = videos_of(stack.emulator.videos(), job_id)
    assert len(mine) == 1 and mine[0]["videoId"] == job.video_id
    video = stack.emulator.video(job.video_id)
    assert video["sha256"] == digest and len(video["chunks"]) == 8
    assert_in_order(video["chunks"])


def test_same_job_id_twice_makes_one_job(stack: Stack) -> None:
    path, digest = stack.file("twice.bin", 6 * MIB, seed=5)
    token = stack.emulator.create_upload_token()
    first = stack.enqueue(path, token=token, job_id="twice-1", chunk_size="5MiB")
    second = stack.enqueue(path, token=token, job_id="twice-1", chunk_size="5MiB")
    assert first == second == "twice-1"
    job = stack.wait_final("twice-1")
    assert job.state == State.DONE
    assert [j.job_id for j in stack.store.page(limit=1000)].count("twice-1") == 1
    mine = videos_of(stack.emulator.videos(), "twice-1")
    assert len(mine) == 1 and mine[0]["sha256"] == digest


def test_chunk_tasks_report_progress_events_with_job_and_chunk(stack: Stack, redis_url: str) -> None:
    path, _ = stack.file("events.bin", 16 * MIB, seed=6)
    with capturing_events(redis_url) as events:
        job_id = stack.enqueue(path, chunk_size="5MiB")
        assert stack.wait_final(job_id).state == State.DONE

        def progress() -> list[dict]:
            found = [e for e in events if e["type"] == "task-progress" and e.get("job_id") == job_id]
            return found if len(found) >= 4 else []

        reported = wait_for(progress, 10, "four progress events")
    assert sorted(e["chunk"] for e in reported) == [0, 1, 2, 3]
    assert {e["progress"] for e in reported} == {"1/4", "2/4", "3/4", "4/4"}
    received = [e for e in events if e["type"] == "task-received" and job_id in str(e.get("kwargs"))]
    assert {e["name"] for e in received} == {"vuq.upload.start", "vuq.upload.chunk", "vuq.upload.finalize"}
    assert any("'chunk': '4/4'" in e["kwargs"] for e in received)  # the label: chunk k/n, 1-based


def test_progress_is_reported_while_a_chunk_streams(stack: Stack, redis_url: str) -> None:
    path, _ = stack.file("slow.bin", 64 * MIB, seed=7)
    # api.video reads nothing for 2.5 s: a chunk larger than the socket buffers waits half-way out
    stack.emulator.set_faults(latency_ms=[2500, 2500])
    try:
        with capturing_events(redis_url) as events:
            job_id = stack.enqueue(path, chunk_size="32MiB")
            assert stack.wait_final(job_id, 90).state == State.DONE

            def midway() -> list[dict]:
                return [e for e in events if e["type"] == "task-progress" and e.get("job_id") == job_id
                        and 0 < e.get("streamed", 0) < e.get("length", 0)]

            early = wait_for(midway, 10, "a progress event in the middle of a chunk")
    finally:
        stack.emulator.set_faults(latency_ms=[0, 0])
    succeeded = {e["uuid"]: e["timestamp"] for e in events if e["type"] == "task-succeeded"}
    assert any(e["uuid"] in succeeded and e["timestamp"] < succeeded[e["uuid"]] for e in early)
    assert {e["progress"] for e in early} <= {"1/2", "2/2"}
