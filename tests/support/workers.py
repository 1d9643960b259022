"""Worker and beat processes for tests: ``workers.lab.services`` with test-friendly settings."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from workers.lab import services
from workers.lab.services import start_beat, start_worker
from workers.lab.supervise import Child, stop_all

WorkerProcess = Child
# Fast retries and a generous bound: tests wait for jobs, not for backoff. Sources and callbacks
# served by the tests live on 127.0.0.1, which the SSRF guard refuses unless allowed.
TEST_RETRIES = {"VUQ_RETRY_BACKOFF_S": "0.2", "VUQ_RETRY_BACKOFF_MAX_S": "2", "VUQ_MAX_RETRIES": "12",
                "VUQ_ALLOWED_PRIVATE_NETS": "127.0.0.0/8"}
__all__ = ["TEST_RETRIES", "WorkerProcess", "running_workers", "start_beat", "start_worker", "worker_env"]


def worker_env(broker_url: str, api_base_url: str, api_key: str | None, roots: list[Path],
               queue: str, **extra: str) -> dict[str, str]:
    """The environment of a worker under test: fast retries unless ``extra`` says otherwise."""
    return services.worker_env(broker_url, api_base_url, api_key, roots, queue, **{**TEST_RETRIES, **extra})


def ready(worker: Child) -> bool:
    if not worker.alive:
        raise AssertionError(f"worker {worker.name} exited:\n{worker.log()[-3000:]}")
    return " ready." in worker.log()


@contextmanager
def running_workers(env: Mapping[str, str], log_dir: Path, count: int = 1,
                    concurrency: int = 2) -> Iterator[list[Child]]:
    workers = [start_worker(env, log_dir, concurrency) for _ in range(count)]
    try:
        yield workers
    finally:
        stop_all(workers)
