"""A job survives a stretch of 5xx answers, cut connections and 429s from api.video.

Its deadlines follow the pace of a clean job timed in the same run (``tests/support/pace.py``), and
the wait for the 429's hold is the emulator's rate-limit window itself."""

from __future__ import annotations

import httpx

from emulator.constants import RATE_LIMIT_WINDOW_S
from tasks.constants import MIB
from tasks.job.record import State
from tests.support.checks import chunks_in_order
from tests.support.pace import measure, wait
from tests.support.stack import Stack

FILE_SIZE = 48 * MIB
CHUNKS = 10  # of 5 MiB: chunks are left to send when the 429 is set up, however late the test looks
# More uploads a minute than the job can spend before the other client uses up the window, so the
# fleet's own pacing never holds the job back: its next upload meets the full window and earns the 429.
# (With a budget the job could spend first, the fleet waited for the window by itself and its next
# upload could open a fresh one: no 429, on a slow enough machine.)
UPLOADS_PER_MINUTE = 20


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
    # a clean job first: how fast this machine moves a job now (the deadlines below follow it), and
    # the workers' access token is cached before the faults start
    warm, _ = stack.file("warm.mp4", MIB, seed=30)
    _, pace = measure(lambda: stack.wait_final(stack.enqueue(warm), 60), "one 1 MiB job")
    path, digest = stack.file("faulty.mp4", FILE_SIZE, seed=31)
    token, other_client = stack.emulator.create_upload_token(), stack.emulator.create_upload_token()
    stack.emulator.set_faults(seed=5, error_rate=0.35, reset_rate=0.1, rate_limit_per_minute=UPLOADS_PER_MINUTE)
    job_id = stack.enqueue(path, chunk_size="5MiB", token=token, video={"title": "through faults"})

    def injected() -> dict[str, int]:
        return stack.emulator.faults()["injected"]

    wait(lambda: (j := stack.store.get(job_id)) and j.next_chunk >= 1 and injected()["error"],
         pace.allow(30, floor_s=60), "a chunk through the 5xx answers")
    job = stack.store.get(job_id)
    assert job is not None and job.next_chunk < CHUNKS, "the job must still have chunks to send"
    # the workers believe uploads are left: their next one earns a 429
    others = exhaust_upload_window(stack, other_client)
    wait(lambda: injected()["rate_limited"] > others, pace.allow(30, floor_s=60), "a 429 for the job")
    stack.emulator.set_faults(error_rate=0.0, reset_rate=0.0, rate_limit_per_minute=0)
    # the 429 holds every worker until the account's window ends (up to a minute), then the rest goes
    job = stack.wait_final(job_id, pace.allow(4 * CHUNKS, floor_s=150, plus_s=RATE_LIMIT_WINDOW_S))
    assert job.state == State.DONE, job.error
    video = stack.emulator.video(job.video_id)
    assert video["sha256"] == digest and len(video["chunks"]) == CHUNKS
    assert chunks_in_order(video["chunks"])
    assert job.retries >= 2  # at least a 5xx and the 429 were retried
