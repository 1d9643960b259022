"""A fleet that wants more upload requests than the account allows stays under the limit."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.apivideo.limiter import SPACING_MARGIN_S, WINDOW_S
from tasks.constants import MIB
from tasks.job.record import State
from tests.support.stack import Stack, running_stack

LIMIT_PER_MINUTE = 12


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    args = ("--rate-limit-per-minute", str(LIMIT_PER_MINUTE))
    with running_stack(Path(tmp_path_factory.mktemp("limited")), redis_url, workers=2, concurrency=2,
                       emulator_args=args) as stack:
        yield stack


def test_paced_fleet_earns_no_429(limited: Stack) -> None:
    files = [limited.file(f"paced-{i}.bin", 11 * MIB, seed=90 + i) for i in range(2)]
    # learn the limit from one answer first, as a fleet would in its first second
    warm, _ = limited.file("warm.bin", 1 * MIB, seed=99)
    assert limited.wait_final(limited.enqueue(warm)).state == State.DONE
    jobs = [limited.enqueue(path, chunk_size="5MiB") for path, _ in files]  # 6 upload requests wanted
    for job_id, (_, digest) in zip(jobs, files, strict=True):
        job = limited.wait_final(job_id, timeout_s=150)
        assert job.state == State.DONE, job.error
        assert limited.emulator.video(job.video_id)["sha256"] == digest
        assert job.retries == 0
    assert limited.emulator.faults()["injected"]["rate_limited"] == 0
    uploads = sorted(r["started"] for r in limited.emulator.requests_log() if r["path"] == "/upload")
    assert len(uploads) == 7
    # paced one slot every (60 s + margin) / limit: never a burst, so no minute holds more than the limit
    spacing = (WINDOW_S + SPACING_MARGIN_S) / LIMIT_PER_MINUTE
    assert min(b - a for a, b in itertools.pairwise(uploads)) >= spacing * 0.9
    assert max(sum(1 for t in uploads if start <= t < start + WINDOW_S) for start in uploads) <= LIMIT_PER_MINUTE
