"""`vuq health` and a step that moves no byte: api.video (the emulator) takes a chunk's request and does not
answer, the worker's lease keeps renewing, and `vuq health` says which job has moved nothing for longer than
``VUQ_SOURCE_WINDOW_S``, in one line, exit status 1; once bytes move again it is healthy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.constants import MIB
from tasks.job import State
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
WINDOW_S = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    tmp = Path(tmp_path_factory.mktemp("stalls"))
    with running_stack(tmp, redis_url, workers=1, concurrency=2, VUQ_HEALTH_DIR=str(tmp / "health"),
                       VUQ_SOURCE_WINDOW_S=str(WINDOW_S)) as system:
        yield system


def health(stack: Stack) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.console", "health"], env=stack.env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_step_that_moves_no_byte_is_reported_by_job(stack: Stack) -> None:
    path, digest = stack.file("stalled.mp4", 6 * MIB, seed=91)
    wait_for(lambda: health(stack).returncode == 0, 60, "a healthy worker to begin with")
    stack.emulator.set_faults(latency_ms=[8_000, 8_000])  # the request is taken; no answer comes for 8 s
    try:
        job_id = stack.enqueue(path, chunk_size="5MiB")
        out = wait_for(lambda: (o := health(stack)).returncode == 1 and "moved no byte" in o.stderr and o, 60,
                       "vuq health to notice the stalled step")
    finally:
        stack.emulator.set_faults(latency_ms=[0, 0])
    line = out.stderr.strip()
    assert line.count("\n") == 0 and f"job {job_id} (" in line and f"VUQ_SOURCE_WINDOW_S is {WINDOW_S}" in line
    job = stack.wait_final(job_id, 120)
    assert job.state == State.DONE and stack.emulator.video(job.video_id or "")["sha256"] == digest
    assert health(stack).returncode == 0
