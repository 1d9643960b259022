"""http(s) sources read with Range requests."""

from __future__ import annotations

from tasks.constants import MIB
from tasks.job.record import State
from tests.support.range_server import serving
from tests.support.stack import Stack


def test_http_source_with_range_support(stack: Stack, tmp_path) -> None:
    path, digest = stack.file("remote.mp4", 12 * MIB + 17, seed=21)
    with serving(path.parent) as base:
        job = stack.wait_final(stack.enqueue(f"{base}/{path.name}?X-Amz-Signature=abc", chunk_size="5MiB"))
    assert job.state == State.DONE, job.error
    video = stack.emulator.video(job.video_id)
    assert video["sha256"] == digest and len(video["chunks"]) == 3


def test_http_source_without_range_support_fails_clearly(stack: Stack) -> None:
    path, _ = stack.file("norange.mp4", 6 * MIB, seed=22)
    with serving(path.parent, ranges=False) as base:
        job = stack.wait_final(stack.enqueue(f"{base}/{path.name}"))
    assert job.state == State.FAILED
    assert "does not support Range requests" in (job.error or "")
    assert job.retries == 0


def test_http_source_404_fails_clearly(stack: Stack) -> None:
    with serving(stack.root) as base:
        job = stack.wait_final(stack.enqueue(f"{base}/missing.mp4"))
    assert job.state == State.FAILED
    assert "404" in (job.error or "") and job.retries == 0
