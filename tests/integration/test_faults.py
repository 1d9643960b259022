"""A job survives a stretch of 5xx answers, cut connections and 429s from api.video."""

from __future__ import annotations

from tasks.constants import MIB
from tasks.record import State
from tests.support.checks import chunks_in_order
from tests.support.stack import Stack
from tests.support.waiting import wait_for


def test_job_finishes_identical_through_5xx_resets_and_429(stack: Stack) -> None:
    path, digest = stack.file("faulty.mp4", 23 * MIB, seed=31)
    stack.emulator.set_faults(seed=5, error_rate=0.35, reset_rate=0.1, rate_limit_per_minute=4)
    job_id = stack.enqueue(path, chunk_size="5MiB", video={"title": "through faults"})
    wait_for(lambda: (i := stack.emulator.faults()["injected"])["error"] and i["rate_limited"] and i,
                        90, "5xx answers and a 429")
    stack.emulator.set_faults(error_rate=0.0, reset_rate=0.0, rate_limit_per_minute=0)
    job = stack.wait_final(job_id, timeout_s=150)
    assert job.state == State.DONE, job.error
    video = stack.emulator.video(job.video_id)
    assert video["sha256"] == digest and len(video["chunks"]) == 5
    assert chunks_in_order(video["chunks"])
    assert job.retries >= 2  # at least the 5xx and the 429 were retried
