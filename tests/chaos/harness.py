"""The chaos run: jobs through a faulty emulator, killed workers, a restarted Redis, duplicated
and redelivered messages; then every invariant of the README's "Reliability" section is checked and a
table printed."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tasks.constants import JOB_METADATA_KEY, MIB, TASK_CHUNK
from tasks.job.connections import redis_client
from tasks.job.store import JobStore
from tasks.pipeline.upload import Step
from tasks.producer import enqueue_upload, send_step
from tasks.settings import Settings
from tests.support.checks import chunks_in_order
from tests.support.emulator import Emulator, running_emulator
from tests.support.files import make_file
from tests.support.secrets import places_showing, redis_outside_job_records
from tests.support.workers import WorkerProcess, start_beat, start_worker, worker_env
from workers.lab.services import RedisServer

API_KEY = "chaos-api-key-5b2e"
QUEUE = "uploads"


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int
    min_bytes: int
    max_bytes: int
    chunk_size: str | None
    workers: int
    concurrency: int
    kill_every_s: tuple[float, float]
    kill_for_s: float
    redis_restart_at_s: float
    burst_at_s: float | None  # None: no 429 burst (its Retry-After costs up to a minute)
    timeout_s: float
    worker_settings: dict[str, str] = field(default_factory=dict)
    latency_ms: tuple[int, int] = (0, 200)
    seed: int = 2026


SHORT = ChaosConfig(jobs=10, min_bytes=1 * MIB, max_bytes=16 * MIB, chunk_size="5MiB", workers=3, concurrency=2,
                    kill_every_s=(1.0, 2.0), kill_for_s=6.0, redis_restart_at_s=2.5, burst_at_s=None,
                    latency_ms=(300, 600),  # slower requests, so the misbehaviour meets running jobs
                    timeout_s=180.0, worker_settings={"VUQ_LEASE_TTL_S": "5", "VUQ_STALE_AFTER_S": "10",
                                                      "VUQ_JANITOR_INTERVAL_S": "1"})
FULL = ChaosConfig(jobs=50, min_bytes=1 * MIB, max_bytes=300 * MIB, chunk_size=None, workers=3, concurrency=4,
                   kill_every_s=(6.0, 12.0), kill_for_s=90.0, redis_restart_at_s=40.0, burst_at_s=20.0,
                   timeout_s=900.0)


@dataclass
class Report:
    jobs: int = 0
    bytes: int = 0
    kills: int = 0
    redis_restarts: int = 0
    bursts: int = 0
    duplicates_sent: int = 0
    redelivered: int = 0
    retries: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    slowest_recovery_s: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [("jobs", self.jobs), ("bytes", f"{self.bytes / MIB:.0f} MiB"),
                *((f"faults: {k}", v) for k, v in sorted(self.faults.items())),
                ("429 bursts (limit 3/min for 8 s)", self.bursts),
                ("worker kills (SIGKILL)", self.kills), ("redis restarts", self.redis_restarts),
                ("messages duplicated by hand", self.duplicates_sent),
                ("unacked messages redelivered", self.redelivered), ("retries", self.retries),
                ("slowest recovery after a kill", f"{self.slowest_recovery_s:.1f} s"),
                ("duration", f"{self.duration_s:.1f} s"),
                *((f"check: {k}", "ok" if v else "FAILED") for k, v in self.checks.items())]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"| {k:<{width}} | {v!s:>12} |" for k, v in rows)


class ChaosRun:
    def __init__(self, config: ChaosConfig, tmp: Path) -> None:
        self.config, self.tmp = config, tmp
        self.rng = random.Random(config.seed)
        self.report = Report(jobs=config.jobs)
        self.workers: list[WorkerProcess] = []
        self.kill_times: list[tuple[float, list[str]]] = []

    def run(self) -> Report:
        redis_server = RedisServer(self.tmp / "redis", aof=True).start()
        try:
            with running_emulator(self.tmp / "emulator", api_key=API_KEY) as emu:
                return self._run(redis_server, emu)
        finally:
            for worker in self.workers:
                worker.kill()
            redis_server.stop()

    def _run(self, server: RedisServer, emu: Emulator) -> Report:
        cfg = self.config
        roots = self.tmp / "sources"
        self.env = worker_env(server.url, emu.url, API_KEY, [roots], QUEUE, **cfg.worker_settings)
        self.env["VUQ_RETRY_BACKOFF_S"], self.env["VUQ_RETRY_BACKOFF_MAX_S"] = "1", "30"
        self.env["VUQ_MAX_RETRIES"] = "10"
        self.settings = Settings(broker_url=server.url, redis_url=server.url, api_base_url=emu.url, queue=QUEUE)
        self.store = JobStore(redis_client(server.url))
        self.redis_url = server.url
        files = self._files(roots)
        tokens = [emu.create_upload_token() for _ in files]
        self.secrets = [*tokens, API_KEY]
        self.workers = [start_worker(self.env, self.tmp / "logs", cfg.concurrency) for _ in range(cfg.workers)]
        beat = start_beat(self.env, self.tmp / "logs")
        self.workers.append(beat)
        emu.set_faults(seed=cfg.seed, error_rate=0.05, reset_rate=0.02, latency_ms=list(cfg.latency_ms))
        began = time.monotonic()
        self.jobs = {enqueue_upload(str(p), token=t, chunk_size=cfg.chunk_size, job_id=f"chaos-{i}",
                                    video={"title": f"chaos {i}", "tags": ["chaos"]}, settings=self.settings): d
                     for i, ((p, d), t) in enumerate(zip(files, tokens, strict=True))}
        self._misbehave(server, emu, began)
        self.report.duration_s = time.monotonic() - began
        injected = emu.faults()["injected"]
        self.report.faults = {**{k: v for k, v in injected.items() if isinstance(v, int)},
                              **{f"429 ({k})": v for k, v in injected.get("rate_limited_by_class", {}).items()}}
        emu.set_faults(error_rate=0.0, reset_rate=0.0, latency_ms=[0, 0], rate_limit_per_minute=0)
        self._check(emu)
        return self.report

    def _files(self, roots: Path) -> list[tuple[Path, str]]:
        cfg, files = self.config, []
        for i in range(cfg.jobs):
            size = self.rng.randint(cfg.min_bytes, cfg.max_bytes)
            path = roots / f"video-{i}.mp4"
            files.append((path, make_file(path, size, seed=cfg.seed + i)))
            self.report.bytes += size
        return files

    def _misbehave(self, server: RedisServer, emu: Emulator, began: float) -> None:
        cfg = self.config
        next_kill = began + self.rng.uniform(*cfg.kill_every_s)
        burst_end: float | None = None
        duplicated = restarted = redelivered = False
        while time.monotonic() - began < cfg.timeout_s:
            now = time.monotonic() - began
            states = self._states()
            if states and all(s in ("done", "failed", "cancelled") for s in states.values()):
                break
            if burst_end is None and cfg.burst_at_s is not None and now >= cfg.burst_at_s:
                emu.set_faults(rate_limit_per_minute=3)  # a burst of 429s with rate-limit headers
                burst_end = now + 8
                self.report.bursts += 1
            elif burst_end is not None and burst_end > 0 and now >= burst_end:
                emu.set_faults(rate_limit_per_minute=0)
                burst_end = -1.0
            if now < cfg.kill_for_s and time.monotonic() >= next_kill:
                self._kill_one()
                next_kill = time.monotonic() + self.rng.uniform(*cfg.kill_every_s)
            if not restarted and now >= cfg.redis_restart_at_s:
                server.restart()
                self.report.redis_restarts, restarted = 1, True
            if not duplicated:
                duplicated = self._duplicate(states)
            if not redelivered and self.report.kills and now >= cfg.kill_for_s / 2:
                redelivered = self._redeliver(server.url)
            self._note_recoveries()
            time.sleep(0.2)  # the chaos driver's own pace, not a synchronisation
        self._note_recoveries()

    def _states(self) -> dict[str, str]:
        try:
            return {j.job_id: str(j.state) for j in self.store.records(list(self.jobs))}
        except redis.RedisError:
            return {}

    def _kill_one(self) -> None:
        alive = [w for w in self.workers if w.proc.poll() is None and not w.name.startswith("beat")]
        if not alive:
            return
        victim = self.rng.choice(alive)
        pids = _pids(victim)
        held = []
        try:
            for job_id in self.jobs:
                holder = self.store.lease_holder(job_id) or ""
                if holder and holder.split(":")[1] in pids:
                    held.append(job_id)
        except redis.RedisError:
            pass
        victim.kill()  # SIGKILL of the main process and its pool children
        self.report.kills += 1
        self.kill_times.append((time.monotonic(), held))
        self.workers.append(start_worker(self.env, self.tmp / "logs", self.config.concurrency))

    def _duplicate(self, states: dict[str, str]) -> bool:
        for job_id, state in states.items():
            job = self.store.get(job_id) if state == "uploading" else None
            if job and job.next_chunk >= 1 and job.chunks_total and job.next_chunk < job.chunks_total:
                for index in (job.next_chunk - 1, job.next_chunk, job.next_chunk):
                    send_step(Step(TASK_CHUNK, job_id, index), self.settings)
                    self.report.duplicates_sent += 1
                return True
        return False

    def _redeliver(self, url: str) -> bool:
        """Do what Redis does after the visibility timeout: put unacked messages back on the queue."""
        client = redis.Redis.from_url(url)
        try:
            for tag, raw in client.hgetall("unacked").items():
                payload, _exchange, routing_key = json.loads(raw)
                if client.hdel("unacked", tag):
                    client.zrem("unacked_index", tag)
                    client.rpush(routing_key or QUEUE, json.dumps(payload))
                    self.report.redelivered += 1
        except redis.RedisError:
            return False
        return self.report.redelivered > 0

    def _note_recoveries(self) -> None:
        """For each kill, how long until every job its victim held moved again."""
        remaining = []
        for killed_at, held in self.kill_times:
            stuck = [j for j in held if not self._moved_since(j, killed_at)]
            waited = time.monotonic() - killed_at
            self.report.slowest_recovery_s = max(self.report.slowest_recovery_s, waited if not stuck else 0)
            if stuck:
                remaining.append((killed_at, stuck))
                if waited > 120:
                    self.report.problems.append(f"jobs {stuck} did not move within 120 s of a kill")
                    remaining.pop()
        self.kill_times = remaining

    def _moved_since(self, job_id: str, killed_at: float) -> bool:
        try:
            job = self.store.get(job_id)
        except redis.RedisError:
            return False
        wall_killed = time.time() - (time.monotonic() - killed_at)
        return bool(job and (job.state.final or (job.heartbeat_at or 0) > wall_killed + 0.5))

    def _check(self, emu: Emulator) -> None:
        records = {j: self.store.get(j) for j in self.jobs}
        videos = emu.videos()
        by_job: dict[str, list[dict[str, Any]]] = {}
        for video in videos:
            by_job.setdefault(video["metadata"].get(JOB_METADATA_KEY, ""), []).append(video)
        self.report.retries = sum(r.retries for r in records.values() if r)
        checks = self.report.checks
        checks["every job done"] = all(r and r.state == "done" for r in records.values())
        checks["one video per job"] = all(len(by_job.get(j, [])) == 1 for j in self.jobs)
        checks["no orphan or broken video"] = set(by_job) <= set(self.jobs) and all(v["complete"] for v in videos)
        identical = in_order = patched = True
        for job_id, digest in self.jobs.items():
            for video in by_job.get(job_id, [])[:1]:
                detail = emu.video(video["videoId"])
                identical &= detail["sha256"] == digest
                chunks = detail["chunks"]
                in_order &= chunks_in_order(chunks)
                patched &= detail["title"] == f"chaos {job_id.split('-')[1]}" and detail["tags"] == ["chaos"]
        checks["bytes identical (sha256)"] = identical
        checks["chunks in order, no gap"] = in_order
        checks["metadata patched"] = patched
        checks["moved within 2 min of every kill"] = not self.report.problems
        logs = "\n".join(p.read_text(errors="replace") for p in (self.tmp / "logs").glob("*.log"))
        leaks = places_showing(self.secrets, {"worker and beat logs": logs,
                                              "redis outside job records": redis_outside_job_records(self.redis_url)})
        checks["no token or API key in logs or Redis"] = not leaks
        self.report.problems += [f"a secret shows in {where}" for where in leaks]
        if not checks["every job done"]:
            self.report.problems += [f"{j}: {r.state if r else 'missing'} {r.error if r else ''}"
                                     for j, r in records.items() if not r or r.state != "done"]


def _pids(worker: WorkerProcess) -> set[str]:
    path = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children")
    children = path.read_text().split() if path.exists() else []
    return {str(worker.proc.pid), *children}


def run_chaos(config: ChaosConfig, tmp: Path) -> Report:
    return ChaosRun(config, tmp).run()


def summary(config: ChaosConfig, report: Report) -> str:
    lines = [f"\nchaos run: {config.jobs} jobs of {config.min_bytes // MIB}-{config.max_bytes // MIB} MiB",
             report.table(), *(f"problem: {p}" for p in report.problems[:20])]
    return "\n".join(lines)
