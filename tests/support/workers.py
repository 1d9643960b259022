"""Real ``celery worker`` processes for integration tests, started and stopped by fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def worker_env(broker_url: str, api_base_url: str, api_key: str | None, roots: list[Path],
               queue: str, **extra: str) -> dict[str, str]:
    """The environment of a worker under test: fast retries, short leases."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VUQ_")}
    env.update({
        "VUQ_BROKER_URL": broker_url, "VUQ_API_BASE_URL": api_base_url,
        "VUQ_ALLOWED_ROOTS": os.pathsep.join(map(str, roots)), "VUQ_QUEUE": queue,
        "VUQ_RETRY_BACKOFF_S": "0.2", "VUQ_RETRY_BACKOFF_MAX_S": "2", "VUQ_MAX_RETRIES": "12",
        "PYTHONUNBUFFERED": "1",
    })
    if api_key:
        env["VUQ_API_KEY"] = api_key
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group (main process and pool children)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)


def start_worker(env: Mapping[str, str], log_dir: Path, concurrency: int = 2,
                 name: str | None = None, pool: str = "prefork", prefix: Sequence[str] = ()) -> WorkerProcess:
    """``prefix`` goes before the command (e.g. ``setpriv …`` to run the worker with fewer privileges);
    it must exec the command, so the process group is still the worker's."""
    name = name or f"w{uuid.uuid4().hex[:6]}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    cmd = [*prefix, sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", env["VUQ_QUEUE"],
           "-c", str(concurrency), "--pool", pool, "-n", f"{name}@%h", "--without-gossip",
           "--without-mingle", "--loglevel", "INFO"]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=dict(env), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    worker = WorkerProcess(name, proc, log_path, dict(env))
    try:
        wait_for(lambda: _ready(worker), READY_TIMEOUT_S, f"worker {name} to be ready")
    except AssertionError:
        worker.kill()
        raise AssertionError(f"worker {name} did not start:\n{worker.log()[-3000:]}") from None
    return worker


def _ready(worker: WorkerProcess) -> bool:
    if worker.proc.poll() is not None:
        raise AssertionError(f"worker {worker.name} exited:\n{worker.log()[-3000:]}")
    return " ready." in worker.log()


@contextmanager
def running_workers(env: Mapping[str, str], log_dir: Path, count: int = 1,
                    concurrency: int = 2) -> Iterator[list[WorkerProcess]]:
    workers = [start_worker(env, log_dir, concurrency) for _ in range(count)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def start_beat(env: Mapping[str, str], log_dir: Path) -> WorkerProcess:
    """``celery beat`` with this app (it schedules the janitor)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    name = f"beat-{uuid.uuid4().hex[:6]}"
    log_path = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel", "INFO",
           "-s", str(log_dir / f"{name}-schedule")]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=dict(env), cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    beat = WorkerProcess(name, proc, log_path, dict(env))
    wait_for(lambda: beat.proc.poll() is None and "beat: Starting" in beat.log(), READY_TIMEOUT_S, "beat")
    return beat
