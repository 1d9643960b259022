"""`vuq health`: 0 while this host's workers reach Redis and consume; 1 with the reason when Redis is
out of reach, or a worker with a free slot takes nothing while messages wait (a deaf or hung worker).

The deadlines and the idle window follow this machine's pace in the same run (how long one `vuq health`
call takes now, see ``tests/support/pace.py``): on a busy machine a health check is a slow process start
and a healthy worker takes longer to receive, and neither is what these tests are about."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tasks.constants import MIB
from tests.support.pace import Pace, measure, wait
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from workers.process.health import STALE_AFTER_WRITES, WRITE_EVERY_S

IDLE_S = 5.0  # the shortest idle window the deaf-worker test uses (VUQ_HEALTH_IDLE_S is 120 by default)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    tmp = Path(tmp_path_factory.mktemp("health"))
    with running_stack(tmp, redis_url, workers=1, concurrency=2, VUQ_HEALTH_DIR=str(tmp / "health")) as stack:
        yield stack


@pytest.fixture(scope="module")
def pace(watched: Stack) -> Pace:
    """How long one `vuq health` call (a Python process start, a Redis round trip) takes right now."""
    return measure(lambda: health(watched), "one vuq health call", tries=2)[1]


def health(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.console", "health", *args], env={**stack.env, **env},
                          capture_output=True, text=True, timeout=120)


def unhealthy_saying(stack: Stack, words: str, *args: str) -> subprocess.CompletedProcess[str] | None:
    out = health(stack, *args)
    return out if out.returncode == 1 and words in out.stderr else None


def test_a_consuming_worker_is_healthy(watched: Stack, pace: Pace) -> None:
    out = wait(lambda: (o := health(watched)).returncode == 0 and o, pace.allow(10, floor_s=20), "a healthy report")
    assert out.stdout.startswith("ok: ") and "running 0/2" in out.stdout


def test_redis_out_of_reach_is_unhealthy_in_one_line(watched: Stack) -> None:
    port = free_port()
    out = health(watched, VUQ_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert f"cannot reach Redis at 127.0.0.1:{port}" in out.stderr


def _confirmed(control: Any, action: str, queue: str, node: str, timeout_s: float) -> None:
    """Ask ``node`` to cancel or add its consumer of ``queue`` until it answers that it did."""
    def answered() -> bool:
        replies = getattr(control, action)(queue, destination=[node], reply=True, timeout=5)
        return any(node in reply for reply in replies or [])

    wait(answered, timeout_s, f"{node} to confirm {action}")


def test_a_worker_that_takes_nothing_while_messages_wait_is_unhealthy(watched: Stack, pace: Pace) -> None:
    # The idle window must exceed how long a healthy worker here takes to receive a waiting message,
    # which grows on a busy machine: a few health calls' worth, never under IDLE_S.
    idle = ("--idle-s", str(math.ceil(pace.allow(4, floor_s=IDLE_S))))
    node = watched.workers[0].name + "@" + socket.gethostname()
    control = Celery("health-test", broker=watched.settings.broker_url, set_as_current=False).control
    _confirmed(control, "cancel_consumer", watched.settings.queue, node, pace.allow(10, floor_s=30))  # deaf, alive
    try:
        path, _ = watched.file("waits.mp4", MIB, seed=1)
        job_id = watched.enqueue(path)
        # unhealthy for being deaf, however long the checks take (a worker starved long enough to also
        # miss a report says "stopped reporting" first, and is looked at again)
        out = wait(lambda: unhealthy_saying(watched, "has received nothing for", *idle),
                   pace.allow(12, floor_s=30, plus_s=float(idle[1])), "unhealthy: received nothing")
        assert "1 message(s) wait" in out.stderr, out.stderr
        assert watched.store.get(job_id).state == "queued", "a deaf worker took the job"  # type: ignore[union-attr]
    finally:
        _confirmed(control, "add_consumer", watched.settings.queue, node, pace.allow(10, floor_s=30))
    assert watched.wait_final(job_id, pace.allow(60, floor_s=60)).state == "done"
    wait(lambda: health(watched, *idle).returncode == 0, pace.allow(12, floor_s=30), "healthy again")


def test_a_hung_worker_is_unhealthy(watched: Stack, pace: Pace) -> None:
    worker = watched.workers[0]
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        out = wait(lambda: unhealthy_saying(watched, "stopped reporting"),
                   pace.allow(8, floor_s=30, plus_s=STALE_AFTER_WRITES * WRITE_EVERY_S), "unhealthy: stopped reporting")
        assert "(hung or dead)" in out.stderr
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait(lambda: health(watched).returncode == 0, pace.allow(12, floor_s=30), "healthy again")
