"""Distributed faults on one machine: Redis and the emulator in the root namespace, on the lab's
bridges; workers on "hosts" (network namespaces) whose links the scenarios cut, heal or lose.

Shared by the short scenarios in ``make test`` and the long ones in ``make chaos``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.job.connections import redis_client
from tasks.job.record import JobRecord, State
from tasks.job.store import JobStore
from tasks.producer import enqueue_upload
from tasks.settings import Settings
from tests.support.checks import chunks_in_order, videos_of
from tests.support.netns import Host, Lab
from tests.support.workers import worker_env
from workers.lab.localstack import source_file, wait_final
from workers.lab.services import EmulatorProcess, RedisServer, start_beat, start_emulator, start_worker
from workers.lab.supervise import Child, stop_all, wait_until

API_KEY = "partition-api-key-77"


@dataclass
class Cluster:
    """What ``distributed`` started, and the checks every scenario makes."""

    lab: Lab
    redis: RedisServer
    emulator: EmulatorProcess
    env: dict[str, str]
    settings: Settings
    store: JobStore
    root: Path
    log_dir: Path
    workers: dict[str, list[Child]] = field(default_factory=dict)

    def host(self, name: str, concurrency: int = 1, **env: str) -> Host:
        """A worker host with one worker process inside it."""
        host = self.lab.hosts.get(name) or self.lab.host(name)
        worker = start_worker({**self.env, **env}, self.log_dir, concurrency, name=f"{name}-{uuid.uuid4().hex[:4]}",
                              prefix=host.prefix)
        self.workers.setdefault(name, []).append(worker)
        return host

    def beat(self) -> Child:
        beat = start_beat(self.env, self.log_dir)
        self.workers.setdefault("beat", []).append(beat)
        return beat

    def logs(self, name: str | None = None) -> str:
        return "\n".join(w.log() for n, ws in self.workers.items() if name in (None, n) for w in ws)

    def file(self, name: str, size: int, seed: int) -> tuple[Path, str]:
        return source_file(self.root, name, size, seed)

    def enqueue(self, path: Path, **spec: Any) -> str:
        return enqueue_upload(str(path), settings=self.settings, **{"chunk_size": "16MiB", **spec})

    def wait_final(self, job_id: str, timeout_s: float) -> JobRecord:
        return wait_final(self.store, job_id, timeout_s)

    def uploads(self, video_id: str) -> list[dict[str, Any]]:
        return [e for e in self.emulator.requests_log() if e["path"] == "/upload" and e.get("video_id") == video_id]

    def in_flight_chunk(self, job_id: str, at_least: int = 1) -> JobRecord:
        """Wait until chunk ``at_least`` (0-based) or later of the job (the only one running) is on
        its way to api.video."""
        def sending() -> JobRecord | None:
            job = self.store.get(job_id)
            if job is None or not job.video_id or job.next_chunk < at_least or job.state != State.UPLOADING:
                return None
            # the emulator notes an upload's video once it reads the body: one job here, so any will do
            waiting = [e for e in self.emulator.requests_log() if e["path"] == "/upload" and e["finished"] is None]
            return job if waiting else None

        return wait_until(sending, 120, f"a chunk of {job_id} in flight")

    def check_identical(self, job_id: str, digest: str) -> JobRecord:
        """Done, byte-exact, one video for the job, chunks in order with no gap."""
        job = self.store.get(job_id)
        assert job is not None and job.state == State.DONE, (job.state, job.error) if job else job_id
        mine = videos_of(self.emulator.videos(), job_id)
        assert len(mine) == 1 and mine[0]["videoId"] == job.video_id, mine
        stored = self.emulator.video(job.video_id or "")
        assert stored["sha256"] == digest and chunks_in_order(stored["chunks"]), stored["chunks"]
        return job

    def first_upload_after(self, video_id: str, moment: float, first_byte: int = 0) -> float | None:
        """When the first upload into ``video_id`` starting at or after ``first_byte`` began after
        ``moment`` (both time.monotonic(): the emulator runs on this machine)."""
        starts = [e["started"] for e in self.uploads(video_id) if e["started"] > moment
                  and _first_byte(e.get("content_range")) >= first_byte]
        return min(starts) if starts else None


def _first_byte(content_range: str | None) -> int:
    if not content_range or not content_range.startswith("bytes "):
        return 0
    return int(content_range.split()[1].split("-")[0])


@contextmanager
def distributed(tmp: Path, emulator_args: tuple[str, ...] = (), **env: str) -> Iterator[Cluster]:
    """The lab, a Redis on its redis bridge, the emulator on its api bridge; hosts come with ``host()``."""
    with ExitStack() as stack:
        lab = stack.enter_context(Lab())
        log_dir = tmp / "logs"
        redis = RedisServer(tmp / "redis", host=lab.redis.address, aof=True).start()
        stack.callback(redis.stop)
        emu = start_emulator(tmp / "emulator", API_KEY, log_dir, emulator_args, host=lab.api.address)
        stack.callback(emu.stop)
        root = tmp / "sources"
        root.mkdir(parents=True, exist_ok=True)
        queue = f"dist-{uuid.uuid4().hex[:6]}"
        worker_settings = {"VUQ_LEASE_TTL_S": "5", "VUQ_STALE_AFTER_S": "20", "VUQ_JANITOR_INTERVAL_S": "2",
                           "VUQ_MAX_RETRIES": "30", "VUQ_RETRY_BACKOFF_MAX_S": "3", **env}
        full_env = worker_env(redis.url, emu.url, API_KEY, [root], queue, **worker_settings)
        settings = Settings.from_env({k: v for k, v in full_env.items() if k != "VUQ_API_KEY"})
        cluster = Cluster(lab, redis, emu, full_env, settings, JobStore(redis_client(redis.url)), root, log_dir)

        def stop_workers() -> None:  # before the lab goes: it would SIGKILL what runs in its hosts
            stop_all([child for children in cluster.workers.values() for child in children], 10.0)

        stack.callback(stop_workers)
        yield cluster


def elapsed_since(moment: float) -> float:
    return time.monotonic() - moment


# -- the scenarios (a short cut in `make test`, 90 s in `make chaos`) -------------------------------
MIB = 1024 * 1024


def cut_mid_chunk(tmp: Path, cut_s: float, network: str) -> dict[str, float]:
    """A worker host cut from ``network`` ("all": Redis and api.video; "api": api.video alone) for
    ``cut_s`` in the middle of a chunk, with no beat: the job finishes by itself, and the worker
    consumes again after the heal. Returns the measured times."""
    with distributed(tmp, emulator_args=("--latency-ms", "1500,1500")) as cluster:
        host = cluster.host("w1")
        path, digest = cluster.file("cut.mp4", 80 * MIB, seed=41)
        job_id = cluster.enqueue(path)
        cutting = cluster.in_flight_chunk(job_id, at_least=1)
        cut_index = cutting.next_chunk
        host.cut(network)  # type: ignore[arg-type]
        cut_at = time.monotonic()
        wait_until(lambda: elapsed_since(cut_at) >= cut_s, cut_s + 5, "the cut to last")
        host.heal(network)  # type: ignore[arg-type]
        healed = time.monotonic()
        job = cluster.wait_final(job_id, 180 + cut_s)
        job = cluster.check_identical(job_id, digest)
        next_start = cluster.first_upload_after(job.video_id or "", healed, (cut_index + 1) * 16 * MIB)
        assert next_start is not None, "no chunk after the cut one went out after the heal"
        after, after_digest = cluster.file("after.mp4", 6 * MIB, seed=42)
        fresh = cluster.enqueue(after)
        cluster.wait_final(fresh, 60)
        consumed_s = elapsed_since(healed)
        cluster.check_identical(fresh, after_digest)
        assert "janitor: job" not in cluster.logs(), "no janitor runs here: the step must move by itself"
        return {"heal_to_next_chunk_s": next_start - healed, "heal_to_consuming_again_s": consumed_s,
                "cut_chunk": cut_index + 1}


def host_vanishes(tmp: Path) -> dict[str, float]:
    """Two worker hosts and beat; the host sending a chunk vanishes (workers SIGKILLed, link down
    for good). The janitor hands the job to the surviving host; it finishes byte-exact."""
    with distributed(tmp, emulator_args=("--latency-ms", "1000,1000"), VUQ_STALE_AFTER_S="10") as cluster:
        hosts = {name: cluster.host(name) for name in ("w1", "w2")}
        cluster.beat()
        path, digest = cluster.file("vanish.mp4", 80 * MIB, seed=43)
        job_id = cluster.enqueue(path)
        sending = cluster.in_flight_chunk(job_id, at_least=1)
        holder = wait_until(lambda: cluster.store.lease_holder(job_id), 30, "the lease holder")
        pid = int(holder.split(":")[1])
        victim = next(name for name, host in hosts.items() if pid in host.pids())
        gone = time.monotonic()
        for worker in cluster.workers[victim]:
            worker.kill()
        hosts[victim].vanish()
        job = cluster.wait_final(job_id, 240)
        job = cluster.check_identical(job_id, digest)
        survivor = next(name for name in hosts if name != victim)
        assert "janitor: job " + job_id in cluster.logs(survivor)  # the sweep runs on the surviving worker
        resumed = cluster.first_upload_after(job.video_id or "", gone, sending.next_chunk * 16 * MIB)
        assert resumed is not None
        return {"vanished_to_resumed_s": resumed - gone}
