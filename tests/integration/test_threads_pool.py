"""Leases per task execution, renewed on a timer: one worker with the threads pool and eight slots
(every task in one process), under seeded faults and answers slower than the lease itself, with
duplicated chunk messages: one request at a time per video, chunks in order, every job identical."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

from tasks.constants import MIB, TASK_CHUNK
from tasks.job.record import JobRecord, State
from tasks.pipeline.message import Step
from tests.support.checks import chunks_in_order, videos_of
from tests.support.stack import running_stack
from tests.support.waiting import wait_for
from workers.lab.localstack import LocalStack

CONTENDED = 4  # jobs whose running step gets two duplicate messages
LEASE_TTL_S = 5  # api.video answers take up to 8 s here: only a lease renewed while waiting holds


def under_way(stack: LocalStack, ids: list[str], taken: set[str]) -> JobRecord | None:
    """Any job past its first chunk and not yet final, among those not contended yet (whichever the
    eight threads happen to be moving: a fixed choice may already be done by the time it is looked at)."""
    for job_id in ids:
        record = stack.store.get(job_id)
        if job_id not in taken and record and record.chunks_total and record.next_chunk >= 1 \
                and not record.state.final:
            return record
    return None


def test_eight_threads_in_one_process_never_upload_one_job_twice_at_once(tmp_path: Path, redis_url: str) -> None:
    faults = ("--seed", "11", "--error-rate", "0.05", "--reset-rate", "0.03", "--latency-ms", "0,8000")
    with running_stack(tmp_path, redis_url, workers=1, concurrency=8, pool="threads", emulator_args=faults,
                       VUQ_LEASE_TTL_S=str(LEASE_TTL_S), VUQ_STALE_AFTER_S="30") as stack:
        files = [stack.file(f"threads-{i}.mp4", (6 + 4 * i) * MIB, seed=30 + i) for i in range(8)]
        ids = [stack.enqueue(path, chunk_size="5MiB", token=None) for path, _ in files]
        contended: set[str] = set()
        while len(contended) < CONTENDED:  # duplicates of a running step, for a second thread to contend with
            job = wait_for(lambda: under_way(stack, ids, contended), 120, "a job under way")
            contended.add(job.job_id)
            for _ in range(2):
                stack.send(Step(TASK_CHUNK, job.job_id, job.next_chunk))
        records = [stack.wait_final(job_id, 240) for job_id in ids]
        log = stack.emulator.requests_log()
        videos = stack.emulator.videos()
    assert [r.state for r in records] == [State.DONE] * len(ids), [(r.job_id, r.error) for r in records]
    for record, (_, digest) in zip(records, files, strict=True):
        mine = videos_of(videos, record.job_id)
        assert len(mine) == 1 and mine[0]["sha256"] == digest
        assert chunks_in_order(mine[0]["chunks"]), mine[0]["chunks"]
    uploads: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for entry in log:
        if entry["path"] == "/upload" and entry.get("video_id") and entry["finished"] is not None:
            uploads[entry["video_id"]].append((entry["started"], entry["finished"]))
    for video_id, spans in uploads.items():
        spans.sort()
        overlapping = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
        assert not overlapping, f"two uploads into {video_id} at once: {overlapping}"
    slow = [e for e in log if e["path"] == "/upload" and (e["finished"] or 0) - e["started"] > LEASE_TTL_S]
    assert slow, "no answer took longer than the lease: the test would prove nothing"
