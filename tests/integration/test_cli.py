"""The README's quick start: `vuq enqueue`, `--wait --json`, `vuq status --json`, `vuq watch`."""

from __future__ import annotations

import json
import sys

from tasks.constants import MIB
from tests.support.stack import Stack, running_stack, vuq
from workers.lab import supervise

STATUS_FIELDS = {"job_id", "state", "video_id", "size", "bytes_sent", "chunks_total", "next_chunk", "error"}


def test_enqueue_prints_the_job_id_alone_on_its_last_line_and_status_json(stack: Stack) -> None:
    path, digest = stack.file("cli.mp4", 12 * MIB, seed=51)
    token = stack.emulator.create_upload_token()
    out = vuq(stack, "enqueue", str(path), "--token", token, "--title", "Talk", "--tag", "conf", "--tag", "b",
              "--metadata", "speaker=Ada", "--metadata", "room=1", "--chunk-size", "5MiB", "--job-id", "cli-1",
              check=True)
    assert out.stdout.strip().splitlines()[-1] == "cli-1"
    job = stack.wait_final("cli-1")
    status = json.loads(vuq(stack, "status", "cli-1", "--json").stdout)
    assert set(status) >= STATUS_FIELDS
    assert status["state"] == "done" and status["video_id"] == job.video_id
    assert (status["size"], status["bytes_sent"], status["chunks_total"], status["next_chunk"]) == (
        12 * MIB, 12 * MIB, 3, 3)
    video = stack.emulator.video(job.video_id)
    assert video["sha256"] == digest and video["tags"] == ["conf", "b"]
    assert video["metadata"]["speaker"] == "Ada" and video["metadata"]["room"] == "1"
    assert token not in out.stdout + out.stderr


def test_enqueue_wait_json_prints_the_finished_job(stack: Stack) -> None:
    path, _ = stack.file("cli-wait.mp4", 7 * MIB, seed=52)
    out = vuq(stack, "enqueue", str(path), "--token", stack.emulator.create_upload_token(), "--title", "W",
              "--chunk-size", "5MiB", "--wait", "--json", check=True)
    record = json.loads(out.stdout)
    assert set(record) >= STATUS_FIELDS and record["state"] == "done"
    assert "[" in out.stderr and "100.0%" in out.stderr  # the progress bar was drawn


def test_enqueue_wait_exits_non_zero_when_the_job_fails(stack: Stack) -> None:
    path = stack.root / "cli-empty.mp4"
    path.write_bytes(b"")
    out = vuq(stack, "enqueue", str(path), "--wait", "--json")
    assert out.returncode == 1
    record = json.loads(out.stdout)
    assert record["state"] == "failed" and "the source is empty" in record["error"]
    assert record["resume"] is None and record["error_retryable"] is False


def test_bad_chunk_size_is_refused_naming_the_field(stack: Stack) -> None:
    path, _ = stack.file("cli-bad.mp4", 1 * MIB, seed=54)
    out = vuq(stack, "enqueue", str(path), "--token", "t", "--chunk-size", "1MiB")
    assert out.returncode == 2
    assert "chunk_size" in out.stderr and "5 MiB..128 MiB" in out.stderr


def test_vuq_worker_passes_celery_options_through(tmp_path, redis_url: str) -> None:

    with running_stack(tmp_path, redis_url, workers=0) as stack:
        worker = supervise.start("cli-worker", [sys.executable, "-m", "workers.console", "worker", "--concurrency", "1",
                                                "-n", "cli-worker@%h", "--loglevel", "INFO"], stack.env, stack.log_dir)
        stack.workers.append(worker)
        worker.wait_for(lambda log: " ready." in log, 30)
        banner = worker.log()
        assert "cli-worker@" in banner and "concurrency: 1 (prefork)" in banner
        assert f".> {stack.settings.queue} " in banner  # -Q from VUQ_QUEUE
        path, digest = stack.file("by-vuq-worker.mp4", 6 * MIB, seed=55)
        job = stack.wait_final(stack.enqueue(path, chunk_size="5MiB"))
        assert job.state == "done" and stack.emulator.video(job.video_id)["sha256"] == digest
