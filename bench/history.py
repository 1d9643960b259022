"""Benchmark 8: what the job store costs as finished jobs pile up, on a private redis-server.

The store keeps every job in the index of its state, so what runs periodically or per
request should read the active jobs, never the history. This measures, against a
``redis-server`` of its own (millions of keys never land in the shared Redis; stopped at
the end):

1. **Enqueue rate**: jobs/s from one producer process calling ``tasks.producer.enqueue_upload``
   (the record written by the store's CREATE script, then a real Celery message published
   to a queue nobody consumes). The source is a path under a temp dir (the producer never
   reads it), the token a fixed string; an untimed warm-up opens the connections first.
2. **Redis bytes per job**: N jobs built through ``JobStore.create`` then ``JobStore.update``
   (holder None): active jobs moved queued → uploading with the fields a start writes
   (size, chunk_size, chunks_total, next_chunk, bytes_sent, video_id, source_identity,
   heartbeat_at, handoff_at), finished ones on to done (no token, a TTL: the default
   retention, so they are all still there). ``INFO memory`` used_memory after - before, / N:
   records, lease-free, plus their index entries; ``MEMORY USAGE`` of a record shown apart.
3. **Cost vs history**: 1,000 uploading jobs, then 0, 100k and 1M finished ones next to
   them. At each level, the median of several runs of one janitor sweep
   (``tasks.pipeline.janitor.sweep``, no-op send, ``stale_after`` large, head from ``queue_head``),
   one metrics scrape (``RedisStateCollector.collect()`` consumed fully) and
   ``store.page(states=["uploading"], limit=50)`` (what ``vuq jobs --state uploading``
   reads), and each one's ratio to its 0-history figure (target: within 2x). The history is
   built by ``JobStore.create`` and ``JobStore.update`` themselves (the store's code builds
   every argument), their script calls queued on redis-py pipelines in batches of 500 jobs,
   by one process per core; a finished job there is a create and one update carrying what
   the uploading and done updates write (the same record, index entries and TTL). Building
   stops after 3 minutes in all; the caption then says how far it got.

Run alone: ``python -m bench.history [--max-history 20000] [--levels 100000,1000000]
[--budget-s 180] [--enqueue-jobs 3000] [--bytes-jobs 10000] [--active 1000] [--runs 15]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script

from bench.common import GIB, MIB, machine, median, table, verdict
from tasks import enqueue_upload
from tasks.constants import DEFAULT_JOB_RETENTION_S
from tasks.job import NOW, TOKEN_FIELD, JobStore, State, UploadSpec, new_job_id, parse_spec, redis_client
from tasks.pipeline import queue_head, sweep
from tasks.settings import Settings
from workers.lab.services import RedisServer
from workers.process.metrics import RedisStateCollector

QUEUE = "vuq-bench-history"  # nobody consumes it
TOKEN = "to1tcmSFHeYY5KzyhOqVKMKb"  # the shape of an api.video delegated upload token
CHUNK_BYTES = 50 * MIB
KEEP_S = DEFAULT_JOB_RETENTION_S  # finished jobs keep their record (and TTL) for the whole run
STALE_AFTER_S = 10**6  # the sweep reads and judges every active job but rescues none
DEFAULT_ENQUEUE_JOBS = 3000
ENQUEUE_WARMUP = 50
DEFAULT_BYTES_JOBS = 10_000
DEFAULT_ACTIVE = 1000
DEFAULT_LEVELS = (100_000, 1_000_000)
DEFAULT_BUDGET_S = 180.0
DEFAULT_RUNS = 15
PAGE_LIMIT = 50
BATCH = 500  # jobs per pipeline round trip while building history
TARGET_RATIO = 2.0
MEMORY_SAMPLE = 200


# -- jobs as the pipeline writes them ---------------------------------------------------------------
def new_spec(i: int, source_dir: str) -> UploadSpec:
    """What ``enqueue_upload`` hands ``JobStore.create``: the parsed spec with its new job id."""
    spec = parse_spec({"source": f"{source_dir}/talk-{i:07d}.mp4", "token": TOKEN,
                       "video": {"title": f"Conference talk {i}", "tags": ["bench", "history"]},
                       "chunk_size": None, "job_id": None, "callback_url": None})
    return replace(spec, job_id=new_job_id())


def _plan(i: int) -> tuple[int, int]:
    size = GIB + (i * 7_919_423) % (3 * GIB)  # 1..4 GiB, varied
    return size, -(-size // CHUNK_BYTES)


def uploading_fields(i: int) -> dict[str, object]:
    """What a start and a few chunks leave on a record (``tasks.pipeline.upload``)."""
    size, chunks = _plan(i)
    sent = chunks // 2
    return {"state": State.UPLOADING, "size": size, "chunk_size": CHUNK_BYTES, "chunks_total": chunks,
            "next_chunk": sent, "bytes_sent": sent * CHUNK_BYTES, "chunk_bytes": 0,
            "video_id": f"vi{uuid.uuid5(uuid.NAMESPACE_OID, str(i)).hex[:20]}",
            "source_identity": f"{size}:{1_764_000_000_000_000_000 + i}:{1_000_000 + i}",
            "heartbeat_at": NOW, "handoff_at": NOW}


def done_fields(i: int) -> dict[str, object]:
    """What the last chunk and finalize leave on it."""
    size, chunks = _plan(i)
    return {"state": State.DONE, "next_chunk": chunks, "bytes_sent": size, "chunk_bytes": 0, "error": "",
            "handoff_at": NOW}


def make_job(store: JobStore, i: int, source_dir: str, finished: bool) -> str:
    """One job through the store's scripts: create, → uploading, (→ done)."""
    spec = new_spec(i, source_dir)
    job_id = str(spec.job_id)
    written = [bool(store.create(spec, queue=QUEUE)),
               bool(store.update(job_id, None, uploading_fields(i)))]
    if finished:
        written.append(bool(store.update(job_id, None, done_fields(i))))
    if not all(written):
        raise RuntimeError(f"job {job_id}: a store script did not write ({written})")
    return job_id


def finished_job(store: JobStore, i: int, source_dir: str) -> str:
    """A finished job in two script calls: create, then one update with everything the others wrote
    (the same record, the same index entries and TTL as ``make_job``'s, in one call fewer)."""
    spec = new_spec(i, source_dir)
    job_id = str(spec.job_id)
    store.create(spec, queue=QUEUE)
    store.update(job_id, None, {**uploading_fields(i), **done_fields(i)})
    return job_id


# -- building history fast: the store's scripts, queued on a pipeline --------------------------------
class _Queued(Script):
    """One of the store's scripts, queued on ``pipe`` instead of run (the answer read at execute)."""

    def __init__(self, original: Script) -> None:
        super().__init__(original.registered_client, original.script)
        self.pipe: Pipeline | None = None

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        super().__call__(keys=keys, args=args, client=self.pipe)
        return [1, "0"]  # what create/update read as success; the real answers are checked at execute


class _Packer:
    """RESP in one join per command. redis-py's pure-Python packer (used without hiredis) copies its
    buffer again for every argument, and a script call has ~40: that, not Redis, bounded the build."""

    def pack(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT EXISTS" and the like
            args = (*args[0].split(), *args[1:])
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else (repr(arg) if isinstance(arg, float) else str(arg)).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return [b"".join(parts)]


class _BatchStore(JobStore):
    """The store, building each CREATE and UPDATE call's arguments itself, but queueing the calls."""

    def __init__(self, client: redis.Redis, keep_s: int) -> None:
        super().__init__(client, keep_s, keep_s)
        self._create = self._queued_create = _Queued(self._create)
        self._update = self._queued_update = _Queued(self._update)

    def run(self, fill: Callable[[], None]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        self._queued_create.pipe = self._queued_update.pipe = pipe
        fill()
        answers = pipe.execute()
        bad = [a for a in answers if not (isinstance(a, list) and a and a[0] == 1)]
        if bad:
            raise RuntimeError(f"{len(bad)} script calls did not write: {bad[:3]}")


def build_finished(url: str, first: int, count: int, deadline: float, source_dir: str) -> int:
    """Finished jobs ``first``.. (at most ``count``) until the wall-clock ``deadline``; how many were built.
    Runs in a builder process."""
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, decode_responses=True,
                                                                      command_packer=_Packer()))
    store = _BatchStore(client, KEEP_S)
    built = 0
    try:
        while built < count and time.time() < deadline:
            n = min(BATCH, count - built)
            start = first + built

            def fill(start: int = start, n: int = n) -> None:
                for i in range(start, start + n):
                    finished_job(store, i, source_dir)

            store.run(fill)
            built += n
    finally:
        client.close()
    return built


# -- measurements ----------------------------------------------------------------------------------
def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def enqueue_rate(settings: Settings, source_dir: str, jobs: int) -> dict[str, Any]:
    """Jobs/s of one producer calling ``enqueue_upload`` in a loop (after a warm-up)."""
    def one(i: int) -> str:
        return enqueue_upload(f"{source_dir}/upload-{i:06d}.mp4", token=TOKEN,
                              video={"title": f"Upload {i}", "tags": ["bench"]}, settings=settings)

    for i in range(ENQUEUE_WARMUP):
        one(-1 - i)
    began = time.perf_counter()
    for i in range(jobs):
        one(i)
    seconds = time.perf_counter() - began
    client = redis_client(settings.redis_url)
    try:
        messages = int(client.llen(settings.queue))
        queued = int(client.zcard("vuq:state:queued"))
    finally:
        client.close()
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds, "messages": messages,
            "queued": queued, "warmup": ENQUEUE_WARMUP}


def bytes_per_job(client: redis.Redis, store: JobStore, source_dir: str, n: int) -> list[dict[str, Any]]:
    """used_memory growth per job, for n active and then n finished jobs."""
    make_job(store, -1, source_dir, finished=True)  # scripts loaded, indexes created: not counted
    rows = []
    for kind, finished in (("active (uploading)", False), ("finished (done)", True)):
        before = used_memory(client)
        began = time.perf_counter()
        ids = [make_job(store, i, source_dir, finished) for i in range(n)]
        seconds = time.perf_counter() - began
        after = used_memory(client)
        sample = ids[:: max(1, n // MEMORY_SAMPLE)]
        record = median([float(client.memory_usage(f"vuq:job:{j}", samples=0) or 0) for j in sample])
        first = f"vuq:job:{ids[0]}"
        rows.append({"kind": kind, "jobs": n, "bytes": (after - before) / n, "record": record,
                     "encoding": client.object("encoding", first), "ttl": client.ttl(first) > 0,
                     "token": bool(client.hexists(first, TOKEN_FIELD)), "seconds": seconds})
    return rows


def timed_ms(fn: Callable[[], object], runs: int, server: redis.Redis) -> tuple[float, float]:
    """Median wall time of ``fn`` in ms (after one untimed call), and the time Redis itself spent per
    call (INFO commandstats, every command but INFO and CONFIG), in ms."""
    fn()
    server.config_resetstat()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    stats = server.info("commandstats")
    usec = sum(v["usec"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))
    return median(times), usec / runs / 1000


def costs(url: str, settings: Settings, store: JobStore, runs: int, active: int, finished: int) -> dict[str, Any]:
    """Sweep, scrape and page times (median ms) with the store as it is now."""
    broker = redis_client(url)
    collector = RedisStateCollector(settings)

    def one_sweep() -> None:
        rescued = sweep(store, lambda step: None, STALE_AFTER_S, queue_head(broker, QUEUE), QUEUE)
        if rescued:
            raise RuntimeError(f"the sweep rescued {len(rescued)} jobs; it should leave them alone")

    def one_scrape() -> None:
        families = list(collector.collect())
        counts = {s.labels["state"]: s.value for s in families[0].samples}
        if counts.get("done") != finished or counts.get("uploading") != active:
            raise RuntimeError(f"the scrape counted {counts}, expected {finished} done and {active} uploading")

    def one_page() -> None:
        if len(store.page(states=["uploading"], limit=PAGE_LIMIT)) != min(PAGE_LIMIT, active):
            raise RuntimeError("store.page returned a short page")

    try:
        result: dict[str, Any] = {"finished": finished, "redis_mib": used_memory(broker) / MIB}
        for name, fn in (("sweep", one_sweep), ("scrape", one_scrape), ("page", one_page)):
            result[name], result[f"{name}_server"] = timed_ms(fn, runs, broker)
        return result
    finally:
        collector.store.redis.close()
        broker.close()


def history_levels(levels: Iterable[int], max_history: int | None) -> list[int]:
    """The finished-job counts to measure at, 0 first, capped at ``max_history``."""
    cap = max_history if max_history is not None else max(levels, default=0)
    return sorted({0, *(min(level, cap) for level in levels)})


def cost_vs_history(url: str, settings: Settings, source_dir: str, levels: Sequence[int], active: int, runs: int,
                    budget_s: float, builders: int) -> dict[str, Any]:
    client = redis_client(url)
    store = JobStore(client, KEEP_S, KEEP_S)
    client.flushdb()
    for i in range(active):
        make_job(store, i, source_dir, finished=False)
    rows, builds = [costs(url, settings, store, runs, active, 0)], []
    have, spent, short = 0, 0.0, None
    context = multiprocessing.get_context("spawn")  # the builders share nothing with this process
    with concurrent.futures.ProcessPoolExecutor(builders, mp_context=context) as pool:
        for level in levels[1:]:
            began = time.time()
            deadline = began + budget_s - spent
            want = level - have
            shares = [want // builders + (1 if k < want % builders else 0) for k in range(builders)]
            starts = [active + have + sum(shares[:k]) for k in range(builders)]
            futures = [pool.submit(build_finished, url, s, n, deadline, source_dir)
                       for s, n in zip(starts, shares, strict=True) if n]
            built = sum(f.result() for f in futures)
            seconds = time.time() - began
            spent += seconds
            have += built
            builds.append({"from": have - built, "to": have, "seconds": seconds, "jobs_per_s": built / seconds})
            rows.append(costs(url, settings, store, runs, active, have))
            if have < level:
                short = {"level": level, "reached": have}
                break
    client.close()
    return {"active": active, "runs": runs, "rows": rows, "builds": builds, "short": short, "budget_s": budget_s,
            "builders": builders, "build_seconds": spent}


def run(enqueue_jobs: int = DEFAULT_ENQUEUE_JOBS, bytes_jobs: int = DEFAULT_BYTES_JOBS, active: int = DEFAULT_ACTIVE,
        levels: Sequence[int] = DEFAULT_LEVELS, max_history: int | None = None, budget_s: float = DEFAULT_BUDGET_S,
        runs: int = DEFAULT_RUNS, builders: int | None = None) -> dict[str, Any]:
    builders = builders or max(1, min(4, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="vuq-bench-history-") as tmp:
        source_dir = str(Path(tmp) / "videos")
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            url = server.url
            settings = Settings(broker_url=url, redis_url=url, queue=QUEUE, job_retention_s=KEEP_S,
                                failed_job_retention_s=KEEP_S)
            client = redis_client(url)
            try:
                enqueue = enqueue_rate(settings, source_dir, enqueue_jobs)
                client.flushdb()
                sizes = bytes_per_job(client, JobStore(client, KEEP_S, KEEP_S), source_dir, bytes_jobs)
            finally:
                client.close()
            history = cost_vs_history(url, settings, source_dir, history_levels(levels, max_history), active, runs,
                                      budget_s, builders)
        finally:
            server.stop()
    return {"enqueue": enqueue, "bytes": sizes, "history": history}


# -- the report ------------------------------------------------------------------------------------
def count(n: int) -> str:
    """1000000 → 1M, 100000 → 100k."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def report(result: dict[str, Any]) -> str:
    enqueue, sizes, history = result["enqueue"], result["bytes"], result["history"]
    head = ("History: what the job store costs as finished jobs pile up "
            "(private redis-server, one producer / one reader process)")
    enqueue_table = table(
        ["producer", "jobs", "seconds", "jobs/s", "ms per job", "messages queued", "jobs queued"],
        [["enqueue_upload, local source, fixed token", enqueue["jobs"], f"{enqueue['seconds']:.2f}",
          f"{enqueue['jobs_per_s']:.0f}", f"{1000 / enqueue['jobs_per_s']:.2f}", enqueue["messages"],
          enqueue["queued"]]])
    bytes_table = table(
        ["job", "jobs", "bytes per job (used_memory)", "record (MEMORY USAGE)", "index entries + rest",
         "hash encoding", "token", "TTL"],
        [[r["kind"], r["jobs"], f"{r['bytes']:.0f}", f"{r['record']:.0f}", f"{r['bytes'] - r['record']:.0f}",
          r["encoding"], "kept" if r["token"] else "erased", "yes" if r["ttl"] else "no"] for r in sizes])
    rows = history["rows"]
    base = rows[0]
    body = []
    for measure, name in (("sweep", "janitor sweep"), ("scrape", "metrics scrape"),
                          ("page", f"page(states=['uploading'], limit={PAGE_LIMIT})")):
        for r in rows:
            ratio = r[measure] / base[measure] if base[measure] else float("nan")
            later = r is not base
            body.append([name, count(r["finished"]), f"{r['redis_mib']:.0f}", f"{r[measure]:.2f}",
                         f"{r[measure + '_server']:.2f}", f"{ratio:.2f}", f"<= {TARGET_RATIO:g}x" if later else "",
                         verdict(ratio <= TARGET_RATIO) if later else ""])
    builds = "; ".join(f"{count(b['from'])} → {count(b['to'])} in {b['seconds']:.0f} s ({b['jobs_per_s']:.0f} jobs/s)"
                       for b in history["builds"]) or "none"
    short = history["short"]
    reached = (f"; {count(short['level'])} not reached in {history['budget_s'] / 60:g} min: "
               f"{short['reached']:,}" if short else "")
    caption = (f"Cost vs history: {history['active']:,} uploading jobs plus N finished ones; median of "
               f"{history['runs']} runs (wall, ms; \"ms in Redis\": the server's own time per call, INFO "
               f"commandstats) and the ratio of the median to the 0-history one. History built by "
               f"{history['builders']} processes through the store's scripts (pipelined): {builds}{reached}")
    cost_table = table(["operation", "finished jobs", "Redis MiB", "ms (median)", "ms in Redis", "x 0-history",
                        "target", "verdict"], body)
    sizes_caption = (f"Redis bytes per job: {sizes[0]['jobs']:,} of each kind, INFO used_memory after - before, "
                     f"/ N (records plus their index entries; finished jobs kept {KEEP_S // 86400} days)")
    enqueue_caption = (f"Enqueue rate: one producer process, record + Celery message to a queue nobody consumes "
                       f"(after {enqueue['warmup']} untimed)")
    return "\n\n".join([head, enqueue_caption, enqueue_table, sizes_caption, bytes_table, caption, cost_table])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default=",".join(map(str, DEFAULT_LEVELS)),
                        help="finished-job counts to measure at (0 is always measured)")
    parser.add_argument("--max-history", type=int, default=None, help="cap every level at this count")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="building time for all levels")
    parser.add_argument("--enqueue-jobs", type=int, default=DEFAULT_ENQUEUE_JOBS)
    parser.add_argument("--bytes-jobs", type=int, default=DEFAULT_BYTES_JOBS)
    parser.add_argument("--active", type=int, default=DEFAULT_ACTIVE)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--builders", type=int, default=None, help="history builder processes (default: cores)")
    args = parser.parse_args(argv)
    print(machine())
    levels = [int(n) for n in args.levels.split(",") if n]
    print(report(run(args.enqueue_jobs, args.bytes_jobs, args.active, levels, args.max_history, args.budget_s,
                     args.runs, args.builders)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
