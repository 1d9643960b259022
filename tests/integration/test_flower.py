"""Flower: non-Python services enqueue through its HTTP API; tokens never show; its /metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tasks.constants import MIB, TASK_START
from tasks.job.record import State
from tests.support.ports import free_port
from tests.support.stack import API_KEY, Stack
from tests.support.waiting import wait_for

AUTH = ("ops", "flower-pass-91c")


@pytest.fixture(scope="module")
def flower(stack: Stack) -> Iterator[str]:
    port = free_port()
    env = {**stack.env, "VUQ_FLOWER_BASIC_AUTH": ":".join(AUTH)}
    log = open(stack.log_dir / "flower.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "workers.console", "flower", f"--port={port}",
                             "--address=127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url, proc), 30, "Flower")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        log.close()


def _healthy(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "Flower exited"
    try:
        return httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_flower_api_needs_basic_auth(flower: str) -> None:
    assert httpx.get(f"{flower}/api/workers", timeout=10).status_code == 401
    assert httpx.get(f"{flower}/api/workers", auth=("ops", "wrong"), timeout=10).status_code == 401


def test_upload_enqueued_through_flower_without_showing_the_token(stack: Stack, flower: str) -> None:
    path, digest = stack.file("flower.mp4", 11 * MIB, seed=81)
    token = stack.emulator.create_upload_token()
    spec = {"source": str(path), "token": token, "chunk_size": "5MiB", "job_id": "via-flower-1",
            "video": {"title": "From curl", "tags": ["flower"]}}
    answer = httpx.post(f"{flower}/api/task/async-apply/{TASK_START}", auth=AUTH, timeout=30,
                        json={"kwargs": spec, "queue": stack.settings.queue})
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task-id"]
    job = stack.wait_final("via-flower-1")
    assert job.state == State.DONE, job.error
    assert stack.emulator.video(job.video_id)["sha256"] == digest

    def seen_chunks() -> list[dict]:
        tasks = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=10).json()
        mine = [t for t in tasks.values() if "via-flower-1" in str(t.get("kwargs"))]
        return mine if len(mine) >= 4 else []  # start, two chunks, finalize

    mine = wait_for(seen_chunks, 20, "Flower to see the job's tasks")
    assert {t["name"] for t in mine} == {"vuq.upload.start", "vuq.upload.chunk", "vuq.upload.finalize"}
    chunks = [t["kwargs"] for t in mine if t["name"] == "vuq.upload.chunk"]
    assert any("'chunk': '2/3'" in k and "'title': 'From curl'" in k and "'file': 'flower.mp4'" in k
               for k in chunks), chunks
    views = [httpx.get(f"{flower}/api/task/info/{task_id}", auth=AUTH, timeout=10).text,
             httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=10).text,
             httpx.get(f"{flower}/task/{task_id}", auth=AUTH, timeout=10).text]
    for view in views:
        assert token not in view and API_KEY not in view
    assert "***" in views[0]


def test_flower_metrics_count_the_chunk_tasks(stack: Stack, flower: str) -> None:
    path, _ = stack.file("flower-metrics.mp4", 6 * MIB, seed=82)
    job_id = stack.enqueue(path, chunk_size="5MiB")
    assert stack.wait_final(job_id).state == State.DONE

    def chunk_events() -> str | None:
        text = httpx.get(f"{flower}/metrics", timeout=10).text  # exempt from auth, as in Flower
        return text if 'task="vuq.upload.chunk"' in text and "flower_events_total" in text else None

    text = wait_for(chunk_events, 20, "chunk task events in Flower's metrics")
    assert "flower_task_runtime_seconds_bucket" in text


def _flower_says(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """Start `vuq flower` and stop it once it listens (or let it refuse); what it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "workers.console", "flower", *options], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        port = next(o.split("=", 1)[1] if "=" in o else options[i + 1] for i, o in enumerate(options)
                    if o.startswith("--port"))
        wait_for(lambda: proc.poll() is not None or _healthy(f"http://127.0.0.1:{port}", proc), 30, "Flower")
    except AssertionError:
        pass  # it exited: the caller looks at why
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_flower_refuses_to_serve_beyond_loopback_without_authentication(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "VUQ_FLOWER_BASIC_AUTH"}
    refused = subprocess.run([sys.executable, "-m", "workers.console", "flower", f"--port={free_port()}",
                              "--address=0.0.0.0"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "without authentication" in refused.stderr and "--unauthenticated" in refused.stderr


def test_flower_on_loopback_without_authentication_warns(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "VUQ_FLOWER_BASIC_AUTH"}
    port = free_port()
    said = _flower_says(env, "--port", str(port))  # "--port N" works as well as "--port=N"
    assert "warning: no authentication" in said.stderr, said.stderr[-2000:]
    assert f"127.0.0.1:{port}" in said.stderr + said.stdout


def test_flower_beyond_loopback_when_explicitly_unauthenticated(stack: Stack) -> None:
    env = {k: v for k, v in stack.env.items() if k != "VUQ_FLOWER_BASIC_AUTH"}
    said = _flower_says(env, f"--port={free_port()}", "--address=0.0.0.0", "--unauthenticated")
    assert "warning: no authentication" in said.stderr and "Traceback" not in said.stderr
