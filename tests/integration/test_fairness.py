"""Fairness: a big upload does not starve small jobs enqueued after it. Each step goes to the back of
the queue when the one before it is done, so jobs take turns; the small jobs' p95 completion time
with the big one running stays within 2x of without it."""

from __future__ import annotations

from pathlib import Path

from tasks.constants import MIB
from tasks.job.record import JobRecord, State
from tests.support.stack import Stack, running_stack

SMALL_JOBS = 12


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered) + 0.5) - 1)]


def _small_jobs(stack: Stack, tag: str) -> list[JobRecord]:
    files = [stack.file(f"{tag}-{i}.mp4", 6 * MIB, seed=i) for i in range(SMALL_JOBS)]
    ids = [stack.enqueue(path, chunk_size="5MiB") for path, _ in files]
    return [stack.wait_final(job_id, 180) for job_id in ids]


def _durations(jobs: list[JobRecord]) -> list[float]:
    assert [j.state for j in jobs] == [State.DONE] * len(jobs), [(j.job_id, j.error) for j in jobs]
    return [(j.ended_at or 0) - j.created_at for j in jobs]


def test_a_big_upload_does_not_starve_small_jobs_enqueued_after_it(tmp_path: Path, redis_url: str) -> None:
    # one worker, two slots, 150 ms per api.video request: the slots, not the network, are what jobs share
    latency = ("--latency-ms", "150,150")
    with running_stack(tmp_path, redis_url, workers=1, concurrency=2, emulator_args=latency) as stack:
        alone = p95(_durations(_small_jobs(stack, "alone")))
        big_path, big_digest = stack.file("big.mp4", 300 * MIB, seed=99)
        big_id = stack.enqueue(big_path, chunk_size="5MiB")  # 60 chunks: it runs all through the second round
        shared = p95(_durations(_small_jobs(stack, "shared")))
        big = stack.store.get(big_id)
        assert big is not None and big.state.active, "the big upload must still run while the small ones finish"
        big = stack.wait_final(big_id, 240)
        assert big.state == State.DONE and stack.emulator.video(big.video_id or "")["sha256"] == big_digest
    print(f"small jobs' p95: {shared:.1f} s with the big upload running, {alone:.1f} s without")
    assert shared <= 2 * alone, f"small jobs' p95: {shared:.1f} s with the big upload, {alone:.1f} s without"
