"""Operator actions: cancel, resume, retry-failed, the janitor after a SIGKILL, completion webhooks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.constants import MIB
from tasks.job.record import State
from tasks.webhooks import SIGNATURE_HEADER, verify
from tests.support.checks import videos_of
from tests.support.receiver import receiving
from tests.support.secrets import has_token
from tests.support.stack import Stack, running_stack, vuq
from tests.support.waiting import wait_for
from tests.support.workers import start_beat

WEBHOOK_SECRET = "whsec-test-7d1e"


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """Few retries, short leases and a fast janitor, so failures and rescues happen in seconds."""
    with running_stack(Path(tmp_path_factory.mktemp("ops")), redis_url, workers=2, concurrency=1,
                       VUQ_MAX_RETRIES="2", VUQ_LEASE_TTL_S="5", VUQ_STALE_AFTER_S="10",
                       VUQ_JANITOR_INTERVAL_S="1", VUQ_WEBHOOK_SECRET=WEBHOOK_SECRET) as stack:
        yield stack




def printed(stack: Stack, *args: str) -> str:
    return vuq(stack, *args, check=True, timeout=60).stdout


def cursor_at_least(stack: Stack, job_id: str, chunk: int):
    return lambda: (j := stack.store.get(job_id)) and j.next_chunk >= chunk and j


def _cancel_mid_upload(ops: Stack, name: str, *options: str) -> tuple[str, str]:
    path, _ = ops.file(name, 60 * MIB, seed=71)
    ops.emulator.set_faults(latency_ms=[500, 500])  # 12 chunks: 6 s at least, longer than `vuq cancel` takes
    try:
        job_id = ops.enqueue(path, chunk_size="5MiB")
        wait_for(cursor_at_least(ops, job_id, 1), 60, "the first chunk")
        answer = printed(ops, "cancel", job_id, *options)
        job = ops.wait_final(job_id)
    finally:
        ops.emulator.set_faults(latency_ms=[0, 0])
    assert job.state == State.CANCELLED and job.next_chunk < 12 and job.video_id
    assert not has_token(ops.store, job_id)  # erased the moment it was cancelled
    return job_id, answer


def test_cancel_stops_the_chain_and_deletes_the_partial_video(ops: Stack) -> None:
    job_id, said = _cancel_mid_upload(ops, "cancel.bin")
    assert "video: deleting" in said
    job = wait_for(lambda: (j := ops.store.get(job_id)) and (j.cleanup or "").endswith("deleted") and j, 30,
                   "the cleanup")
    assert job.cleanup == f"video {job.video_id} deleted"
    assert job.video_id not in {v["videoId"] for v in ops.emulator.videos()}
    assert f"cleanup   video {job.video_id} deleted" in printed(ops, "status", job_id)
    assert "cancelled" in json.loads(printed(ops, "status", job_id, "--json"))["state"]
    listed = json.loads(printed(ops, "jobs", "--state", "cancelled", "--json"))
    assert job_id in {j["job_id"] for j in listed} and {j["state"] for j in listed} == {"cancelled"}
    assert job_id not in printed(ops, "jobs", "--state", "done")


def test_cancel_with_keep_video_keeps_the_partial_video(ops: Stack) -> None:
    job_id, said = _cancel_mid_upload(ops, "cancel-keep.bin", "--keep-video")
    assert "video: kept (--keep-video)" in said
    job = ops.store.get(job_id)
    assert job is not None and job.cleanup == "kept (--keep-video)"
    kept = ops.emulator.video(job.video_id or "")
    assert not kept["complete"] and len(kept["chunks"]) <= job.next_chunk + 1


def test_listings_are_for_people(ops: Stack) -> None:
    path, _ = ops.file("listed-talk.mp4", 6 * MIB, seed=76)
    job_id = ops.enqueue(path, chunk_size="5MiB", video={"title": "A talk with a title that goes on and on " * 3})
    ops.wait_final(job_id)
    table = subprocess.run([sys.executable, "-m", "workers.console", "jobs", "--limit", "3"], env={**ops.env,
                           "COLUMNS": "140"}, capture_output=True, text=True, timeout=60, check=True).stdout
    head, *rows = table.splitlines()
    assert head.split() == ["JOB", "STATE", "PROGRESS", "SIZE", "AGE", "TITLE", "FILE", "ERROR"]
    mine = next(row for row in rows if row.startswith(job_id))
    assert "done" in mine and "100% 2/2" in mine and "6.0 MiB" in mine and "A talk with" in mine
    assert "listed-talk.mp4"[:10] in mine and max(len(line) for line in table.splitlines()) <= 140
    shown = printed(ops, "status", job_id)
    assert "title     A talk with" in shown and "age       " in shown and "2/2 chunks sent" in shown
    fresh = subprocess.run([sys.executable, "-m", "workers.console", "enqueue", str(path), "--json"], env=ops.env,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(fresh)["state"] == "queued"  # --json without --wait: the new job as JSON


def test_a_job_that_ran_out_of_retries_resumes_from_its_cursor(ops: Stack) -> None:
    path, digest = ops.file("resume.bin", 30 * MIB, seed=72)
    ops.emulator.set_faults(latency_ms=[200, 200])  # slow enough that the faults meet the job mid-way
    try:
        job_id = ops.enqueue(path, chunk_size="5MiB", video={"title": "resumed"})
        wait_for(cursor_at_least(ops, job_id, 2), 60, "two chunks")
        ops.emulator.set_faults(error_rate=1.0, seed=1)
        job = ops.wait_final(job_id)
    finally:
        ops.emulator.set_faults(error_rate=0.0, latency_ms=[0, 0])
    assert job.state == State.FAILED and job.error_retryable and "gave up after 3 attempts" in (job.error or "")
    failed_at = job.next_chunk
    assert 2 <= failed_at < 6
    assert f"resumed at chunk {failed_at + 1}" in printed(ops, "resume", job_id)
    job = ops.wait_final(job_id)
    assert job.state == State.DONE, job.error
    video = ops.emulator.video(job.video_id)
    assert video["sha256"] == digest and len(video["chunks"]) == 6
    assert len(videos_of(ops.emulator.videos(), job_id)) == 1


def test_retry_failed_resumes_transient_failures_only(ops: Stack) -> None:
    transient, digest = ops.file("transient.bin", 6 * MIB, seed=73)
    token = ops.emulator.create_upload_token()
    ops.emulator.set_faults(error_rate=1.0, seed=2)
    try:
        flaky = ops.enqueue(transient, token=token, chunk_size="5MiB")
        failed = ops.wait_final(flaky)
        assert failed.state == State.FAILED and failed.error_retryable, (failed.error, failed.error_reason)
    finally:
        ops.emulator.set_faults(error_rate=0.0)
    empty = ops.root / "empty.bin"
    empty.write_bytes(b"")
    hopeless = ops.enqueue(empty)
    assert ops.wait_final(hopeless).state == State.FAILED
    out = subprocess.run([sys.executable, "-m", "workers.console", "retry-failed"], env=ops.env, capture_output=True,
                         text=True, timeout=60, check=True)
    resumed = out.stdout.split()
    assert flaky in resumed and hopeless not in resumed, out.stderr
    assert " skipped: " in out.stderr and " not resumable: " in out.stderr, out.stderr
    assert ops.wait_final(flaky).state == State.DONE
    assert ops.emulator.video(ops.store.get(flaky).video_id)["sha256"] == digest
    assert ops.store.get(hopeless).state == State.FAILED


def test_janitor_moves_a_job_whose_worker_was_killed(ops: Stack) -> None:
    path, digest = ops.file("killed.bin", 40 * MIB, seed=74)
    beat = start_beat(ops.env, ops.log_dir)
    ops.emulator.set_faults(latency_ms=[300, 300])
    try:
        job_id = ops.enqueue(path, chunk_size="5MiB")
        job = wait_for(cursor_at_least(ops, job_id, 2), 60, "two chunks")
        holder = wait_for(lambda: ops.store.lease_holder(job_id), 30, "a lease holder")
        victim = next(w for w in ops.workers if w.proc.poll() is None and f":{_child_pid(w, holder)}:" in holder)
        victim.kill()  # SIGKILL of the main process and its pool: its message waits for the visibility timeout
        ops.emulator.set_faults(latency_ms=[0, 0])
        job = ops.wait_final(job_id, timeout_s=90)
    finally:
        beat.stop()
        ops.emulator.set_faults(latency_ms=[0, 0])
        ops.workers = [w for w in ops.workers if w.proc.poll() is None]
        ops.add_worker(concurrency=1)
    assert job.state == State.DONE, job.error
    assert ops.emulator.video(job.video_id)["sha256"] == digest
    assert "janitor: job " + job_id in beat.log() + ops.logs()


def _child_pid(worker, holder: str) -> str:
    """The pid in a lease holder (host:pid:nonce) if it is one of ``worker``'s processes."""
    pid = holder.split(":")[1]
    children = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
    pids = {str(worker.proc.pid), *children.read_text().split()} if children.exists() else set()
    return pid if pid in pids else "none"


def test_completion_webhook_is_signed_and_retried(ops: Stack) -> None:
    path, _ = ops.file("hook.bin", 6 * MIB, seed=75)
    with receiving(fail_first=1) as receiver:
        job_id = ops.enqueue(path, chunk_size="5MiB", callback_url=receiver.url)
        wait_for(lambda: receiver.requests, 30, "the callback")
    headers, body = receiver.requests[0]
    assert verify(body, WEBHOOK_SECRET, headers[SIGNATURE_HEADER.lower()])
    record = json.loads(body)
    assert record["event"] == "job.done" and record["job_id"] == job_id and record["state"] == "done"
    assert "token" not in body.decode() or "secret:token" not in body.decode()
    assert wait_for(lambda: (j := ops.store.get(job_id)) and j.callback, 10, "callback status").startswith(
        "delivered")
