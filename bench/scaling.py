"""Benchmark 4: jobs/s and MB/s with 1, 2 and 4 worker processes, 60 ms injected per request.

200 jobs of 12 MiB (one chunk each at the default 50 MiB chunk size: the start task
finds or creates the container, sends the chunk; finalize patches the metadata), the
emulator adding 60 ms to every api.video request. Upload tokens are made before the
latency is switched on. Time runs from the first enqueue to the last ``ended_at``.
The sources are 10 files of 12 MiB used in turn (on /dev/shm when it has room).

Each worker process runs the prefork pool with ``--concurrency`` children. A job
spends about 5 x 60 ms waiting on the API and a few ms of CPU, so it is I/O bound:
one process with c children tops out near c / 0.3 s jobs/s. The chosen value is 4:
one process then does ~13 jobs/s, below what this machine's 2 cores (emulator,
Redis and workers together) can carry (~18-19 jobs/s measured), so adding
processes measures vuq's scaling rather than the machine. At 8, one process already
reaches that ceiling and more processes only add contention; both are run and shown.
Run alone: ``python -m bench.scaling [--jobs 200] [--processes 1,2,4] [--concurrency 4,8]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.common import (
    MIB,
    REDIS_URL,
    bench_dir,
    cpu_s,
    ended_at,
    flush_redis,
    machine,
    table,
    tree_cpu_s,
    verdict,
    wait_all,
)
from workers.lab.localstack import LocalStack as Stack
from workers.lab.localstack import running_stack

DEFAULT_JOBS = 200
JOB_BYTES = 12 * MIB
SOURCE_FILES = 10
DEFAULT_PROCESSES = (1, 2, 4)
DEFAULT_CONCURRENCY = (4, 8)
LATENCY_MS = 60
TARGET_SPEEDUP = 1.8
RUN_TIMEOUT_S = 300.0


def run_one(processes: int, concurrency: int, jobs: int = DEFAULT_JOBS) -> dict[str, Any]:
    """One configuration on a fresh emulator and fresh workers."""
    flush_redis()
    with bench_dir(2 * jobs * JOB_BYTES) as tmp, \
            running_stack(tmp, REDIS_URL, workers=processes, concurrency=concurrency) as stack:
        sources = [stack.file(f"s{i}.mp4", JOB_BYTES, seed=i)[0] for i in range(SOURCE_FILES)]
        tokens = [stack.emulator.create_upload_token() for _ in range(jobs)]
        stack.emulator.set_faults(latency_ms=[LATENCY_MS, LATENCY_MS])
        cpu_before = cpu_of(stack)
        began = time.time()
        ids = [stack.enqueue(sources[i % SOURCE_FILES], token=tokens[i], video={"title": f"job {i}"})
               for i in range(jobs)]
        records = wait_all(stack.store, ids, RUN_TIMEOUT_S)
        seconds = max(ended_at(stack, j) for j in ids) - began
        requests = stack.emulator.faults()["requests"]
        cpu = {k: v - cpu_before[k] for k, v in cpu_of(stack).items()}
    failed = sum(1 for r in records if str(r.state) != "done")
    return {"processes": processes, "concurrency": concurrency, "jobs": jobs, "failed": failed,
            "seconds": seconds, "jobs_per_s": jobs / seconds, "mb_per_s": jobs * JOB_BYTES / seconds / 1e6,
            "requests": requests, "cpu_workers_s": cpu["workers"], "cpu_emulator_s": cpu["emulator"]}


def cpu_of(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of the emulator and of all worker processes (pool children included)."""
    return {"emulator": cpu_s(stack.emulator.proc.pid),
            "workers": sum(tree_cpu_s(w.proc.pid) for w in stack.workers)}


def run(processes: tuple[int, ...] = DEFAULT_PROCESSES, concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY,
        jobs: int = DEFAULT_JOBS) -> list[dict[str, Any]]:
    return [run_one(n, c, jobs) for c in concurrency for n in processes]


def report(rows: list[dict[str, Any]]) -> str:
    base = {r["concurrency"]: r["jobs_per_s"] for r in rows if r["processes"] == 1}
    body = []
    for r in rows:
        speedup = r["jobs_per_s"] / base.get(r["concurrency"], float("nan"))
        target = f">= {TARGET_SPEEDUP}" if r["processes"] == 4 else ""
        body.append([r["processes"], r["concurrency"], r["jobs"], r["failed"], r["requests"], f"{r['seconds']:.1f}",
                     f"{r['jobs_per_s']:.1f}", f"{r['mb_per_s']:.0f}",
                     f"{r['cpu_workers_s']:.1f}", f"{r['cpu_emulator_s']:.1f}", f"{speedup:.2f}", target,
                     verdict(speedup >= TARGET_SPEEDUP) if target else ""])
    head = (f"Scaling: {rows[0]['jobs']} jobs of {JOB_BYTES // MIB} MiB, {LATENCY_MS} ms latency per api.video "
            "request, prefork workers")
    return head + "\n\n" + table(["processes", "concurrency", "jobs", "failed", "api requests", "seconds",
                                  "jobs/s", "MB/s", "CPU s workers", "CPU s emulator", "x one process", "target",
                                  "verdict"], body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--processes", default=",".join(map(str, DEFAULT_PROCESSES)))
    parser.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)))
    args = parser.parse_args(argv)
    print(machine())
    processes = tuple(int(p) for p in args.processes.split(","))
    print(report(run(processes, tuple(int(c) for c in args.concurrency.split(",")), args.jobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
