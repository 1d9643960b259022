"""`vuq health`: 0 while this host's workers reach Redis and consume; 1 with the reason when Redis is
out of reach, or a worker with a free slot takes nothing while messages wait (a deaf or hung worker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tasks.constants import MIB
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    tmp = Path(tmp_path_factory.mktemp("health"))
    with running_stack(tmp, redis_url, workers=1, concurrency=2, VUQ_HEALTH_DIR=str(tmp / "health")) as stack:
        yield stack


def health(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.console", "health", *args], env={**stack.env, **env},
                          capture_output=True, text=True, timeout=60)


def test_a_consuming_worker_is_healthy(watched: Stack) -> None:
    out = wait_for(lambda: (o := health(watched)).returncode == 0 and o, 20, "a healthy report")
    assert out.stdout.startswith("ok: ") and "running 0/2" in out.stdout


def test_redis_out_of_reach_is_unhealthy_in_one_line(watched: Stack) -> None:
    port = free_port()
    out = health(watched, VUQ_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert f"cannot reach Redis at 127.0.0.1:{port}" in out.stderr


def test_a_worker_that_takes_nothing_while_messages_wait_is_unhealthy(watched: Stack) -> None:
    node = watched.workers[0].name + "@" + socket.gethostname()
    control = Celery("health-test", broker=watched.settings.broker_url, set_as_current=False).control
    control.cancel_consumer(watched.settings.queue, destination=[node], reply=True, timeout=10)  # deaf, alive
    try:
        path, _ = watched.file("waits.mp4", MIB, seed=1)
        job_id = watched.enqueue(path)
        out = wait_for(lambda: (o := health(watched, "--idle-s", "5")).returncode == 1 and o, 30, "unhealthy")
        assert "has received nothing for" in out.stderr and "1 message(s) wait" in out.stderr, out.stderr
    finally:
        control.add_consumer(watched.settings.queue, destination=[node], reply=True, timeout=10)
    assert watched.wait_final(job_id, 60).state == "done"
    wait_for(lambda: health(watched, "--idle-s", "5").returncode == 0, 30, "healthy again")


def test_a_hung_worker_is_unhealthy(watched: Stack) -> None:
    worker = watched.workers[0]
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        out = wait_for(lambda: (o := health(watched)).returncode == 1 and o, 30, "unhealthy")
        assert "stopped reporting" in out.stderr and "(hung or dead)" in out.stderr
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_for(lambda: health(watched).returncode == 0, 30, "healthy again")
