"""A whole vuq system for integration tests: the emulator, real workers, a producer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.jobstore import JobStore
from tasks.producer import enqueue_upload, send_step
from tasks.record import JobRecord
from tasks.runtime import redis_client
from tasks.settings import Settings
from tests.support.emulator import Emulator, running_emulator
from tests.support.files import make_file
from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, start_worker, worker_env

API_KEY = "vuq-test-api-key-3f9a1c"


@dataclass
class Stack:
    emulator: Emulator
    workers: list[WorkerProcess]
    settings: Settings
    store: JobStore
    root: Path
    env: dict[str, str]
    log_dir: Path
    worker_prefix: tuple[str, ...] = ()  # put before each worker's command (see start_worker)
    pool: str = "prefork"

    def file(self, name: str, size: int, seed: int = 0) -> tuple[Path, str]:
        path = self.root / name
        return path, make_file(path, size, seed)

    def enqueue(self, source: Path | str, **spec: Any) -> str:
        if "token" not in spec:
            spec["token"] = self.emulator.create_upload_token()
        return enqueue_upload(str(source), settings=self.settings, **spec)

    def send(self, step: Any) -> None:
        send_step(step, self.settings)

    def wait_final(self, job_id: str, timeout_s: float = 60.0) -> JobRecord:
        def final() -> JobRecord | None:
            job = self.store.get(job_id)
            return job if job and job.state.final else None

        return wait_for(final, timeout_s, f"job {job_id} to end")

    def add_worker(self, concurrency: int = 2, **extra_env: str) -> WorkerProcess:
        worker = start_worker({**self.env, **extra_env}, self.log_dir, concurrency, prefix=self.worker_prefix,
                              pool=self.pool)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)


@contextmanager
def running_stack(tmp: Path, redis_url: str, workers: int = 2, concurrency: int = 2,
                  api_key: str | None = API_KEY, emulator_args: tuple[str, ...] = (),
                  worker_prefix: tuple[str, ...] = (), pool: str = "prefork",
                  **extra_env: str) -> Iterator[Stack]:
    """Start the emulator and ``workers`` worker processes on a queue of their own
    (``worker_prefix``: a command each worker runs under, e.g. ``setpriv …``)."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    root = tmp / "sources"
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        emu = stack.enter_context(running_emulator(tmp / "emulator", api_key=API_KEY, args=emulator_args))
        env = worker_env(redis_url, emu.url, api_key, [root], queue, **extra_env)
        settings = Settings(broker_url=redis_url, redis_url=redis_url, api_base_url=emu.url, queue=queue)
        system = Stack(emu, [], settings, JobStore(redis_client(redis_url)), root, env, tmp / "logs",
                       worker_prefix, pool)
        stack.callback(lambda: [w.stop() for w in system.workers])
        for _ in range(workers):
            system.add_worker(concurrency)
        yield system
