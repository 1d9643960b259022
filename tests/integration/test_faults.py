"""A job survives a stretch of 5xx answers, cut connections and 429s from api.video."""

from __future__ import annotations

import httpx

from tasks.constants import MIB
from tasks.job.record import State
from tests.support.checks import chunks_in_order
from tests.support.stack import Stack
from tests.support.waiting import wait_for


def exhaust_upload_window(stack: Stack, token: str) -> int:
    """Another client of the same account uses up the minute's uploads; returns the 429s it got.

    Its ``token`` is one of the job's account (the emulator keeps a window per account: an unknown
    token would count against the anonymous window, not the job's)."""
    with httpx.Client(base_url=stack.emulator.url, timeout=10) as client:
        for _ in range(50):
            try:
                status = client.post("/upload", params={"token": token}).status_code
            except httpx.TransportError:  # the injected connection cuts hit this client too
                continue
            if status == 429:
                return 1
    raise AssertionError("50 uploads and no 429: is the emulator's rate limit set?")


def test_job_finishes_identical_through_5xx_resets_and_429(stack: Stack) -> None:
    path, digest = stack.file("faulty.mp4", 23 * MIB, seed=31)
    other_client = stack.emulator.create_upload_token()  # minted before the faults start
    stack.emulator.set_faults(seed=5, error_rate=0.35, reset_rate=0.1, rate_limit_per_minute=6)
    job_id = stack.enqueue(path, chunk_size="5MiB", video={"title": "through faults"})

    def injected() -> dict[str, int]:
        return stack.emulator.faults()["injected"]

    wait_for(lambda: (j := stack.store.get(job_id)) and j.next_chunk >= 1 and injected()["error"], 60,
             "a chunk through the 5xx answers")
    # the workers believe uploads are left: their next one earns a 429
    others = exhaust_upload_window(stack, other_client)
    wait_for(lambda: injected()["rate_limited"] > others, 60, "a 429 for the job")
    stack.emulator.set_faults(error_rate=0.0, reset_rate=0.0, rate_limit_per_minute=0)
    job = stack.wait_final(job_id, timeout_s=150)
    assert job.state == State.DONE, job.error
    video = stack.emulator.video(job.video_id)
    assert video["sha256"] == digest and len(video["chunks"]) == 5
    assert chunks_in_order(video["chunks"])
    assert job.retries >= 2  # at least a 5xx and the 429 were retried
