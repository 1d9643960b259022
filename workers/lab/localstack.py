"""A whole vuq system on this machine: the emulator, worker processes on a queue of their own,
the job store and a producer, over a Redis you name. ``vuq demo``, the benchmarks and the
integration tests all run on it.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks import enqueue_upload, send_step
from tasks.job import JobRecord, JobStore, job_store
from tasks.pipeline import Step
from tasks.settings import Settings
from workers.lab.services import EmulatorProcess, start_beat, start_emulator, start_worker, worker_env
from workers.lab.supervise import Child, stop_all, wait_until

DEFAULT_API_KEY = "vuq-local-api-key-3f9a1c"
_BLOCK = 1 << 20


def sample_file(path: Path, size: int, seed: int | None = 0) -> str:
    """Write ``size`` pseudo-random bytes (the same for the same seed; None: os-random); return their sha256."""
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        left = size
        while left:
            block = rng.randbytes(min(_BLOCK, left))
            digest.update(block)
            handle.write(block)
            left -= len(block)
    return digest.hexdigest()


def source_file(root: Path, name: str, size: int, seed: int = 0) -> tuple[Path, str]:
    """``sample_file`` at ``root/name``: its path and sha256."""
    path = root / name
    return path, sample_file(path, size, seed)


def accounts_file(directory: Path, accounts: Mapping[str, str]) -> Path:
    """A ``VUQ_ACCOUNTS_FILE`` naming ``accounts`` (name -> key), each key in a file of its own (0600)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = []
    for name, key in accounts.items():
        key_file = directory / f"{name}.key"
        key_file.touch(mode=0o600)
        key_file.write_text(key)
        lines += [f"[accounts.{name}]", f'api_key_file = "{key_file.name}"', ""]
    path = directory / "accounts.toml"
    path.write_text("\n".join(lines))
    return path


def wait_final(store: JobStore, job_id: str, timeout_s: float) -> JobRecord:
    """The job's record once it ended (done, failed or cancelled); TimeoutError after ``timeout_s``."""
    def final() -> JobRecord | None:
        job = store.get(job_id)
        return job if job and job.state.final else None

    return wait_until(final, timeout_s, f"job {job_id} to end")


@dataclass
class LocalStack:
    """What ``running_stack`` started, and a producer's view of it."""

    emulator: EmulatorProcess
    settings: Settings
    store: JobStore
    root: Path
    env: dict[str, str]
    log_dir: Path
    workers: list[Child] = field(default_factory=list)
    worker_prefix: tuple[str, ...] = ()
    pool: str = "prefork"

    def file(self, name: str, size: int, seed: int = 0) -> tuple[Path, str]:
        """A source under the workers' allowed root, and its sha256."""
        return source_file(self.root, name, size, seed)

    def enqueue(self, source: Path | str, **spec: Any) -> str:
        """Enqueue with a fresh upload token unless the spec names one (``token=None``: none)."""
        if "token" not in spec:
            spec["token"] = self.emulator.create_upload_token()
        return enqueue_upload(str(source), settings=self.settings, **spec)

    def send(self, step: Step) -> None:
        send_step(step, self.settings)

    def wait_final(self, job_id: str, timeout_s: float = 60.0) -> JobRecord:
        return wait_final(self.store, job_id, timeout_s)

    def add_worker(self, concurrency: int = 2, pool: str | None = None, **extra_env: str) -> Child:
        worker = start_worker({**self.env, **extra_env}, self.log_dir, concurrency, pool=pool or self.pool,
                              prefix=self.worker_prefix)
        self.workers.append(worker)
        return worker

    def add_beat(self, **extra_env: str) -> Child:
        beat = start_beat({**self.env, **extra_env}, self.log_dir)
        self.workers.append(beat)
        return beat

    def stop_workers(self) -> None:
        stop_all(self.workers)

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)


@contextmanager
def running_stack(tmp: Path, redis_url: str, workers: int = 2, concurrency: int = 2,
                  api_key: str | None = DEFAULT_API_KEY, emulator_args: Sequence[str] = (),
                  worker_prefix: Sequence[str] = (), pool: str = "prefork", accounts: Mapping[str, str] | None = None,
                  strangers: Sequence[str] = (), **extra_env: str) -> Iterator[LocalStack]:
    """Start the emulator and ``workers`` worker processes on a queue of their own, over ``redis_url``;
    ``api_key`` None gives the workers no API key (the emulator always has one). ``accounts`` (name -> key)
    are more accounts, in the emulator and in the workers' keyring (``VUQ_ACCOUNTS_FILE``); ``strangers``
    are keys of accounts the emulator holds and the workers do not."""
    queue = f"vuq-{uuid.uuid4().hex[:8]}"
    root = tmp / "sources"
    root.mkdir(parents=True, exist_ok=True)
    log_dir = tmp / "logs"
    with ExitStack() as stack:
        emu = start_emulator(tmp / "emulator", api_key or DEFAULT_API_KEY, log_dir, emulator_args,
                             api_keys=[*(accounts or {}).values(), *strangers])
        stack.callback(emu.stop)
        if accounts:
            extra_env = {"VUQ_ACCOUNTS_FILE": str(accounts_file(tmp / "keyring", accounts)), **extra_env}
        env = worker_env(redis_url, emu.url, api_key, [root], queue, **extra_env)
        settings = Settings.from_env({k: v for k, v in env.items() if k != "VUQ_API_KEY"})  # the producer's view
        system = LocalStack(emu, settings, job_store(settings), root, env, log_dir,
                            worker_prefix=tuple(worker_prefix), pool=pool)
        stack.callback(system.stop_workers)
        for _ in range(workers):
            system.add_worker(concurrency)
        yield system
