"""Benchmark 3: the hand-off between chunks, as the emulator sees it.

For consecutive chunks of one job, the gap is the time from the emulator's
response to chunk k (``finished``) to the arrival of chunk k+1 (``started``), both
from ``GET /_emulator/requests`` (one monotonic clock). It covers the cursor
update in Redis, the next task's message going through the broker, a pool child
picking it up, the lease claim and the source re-open. One job runs alone (one
worker, concurrency 1) so its requests are consecutive in the log. Run alone:
``python -m bench.handoff [--size-mib 512] [--chunk-mib 5]``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Mapping
from typing import Any

from bench import emulator_ingest
from bench.common import MIB, REDIS_URL, bench_dir, flush_redis, machine, median, percentile, table, upload_requests
from bench.common import verdict as met
from workers.lab.localstack import running_stack

DEFAULT_SIZE_BYTES = 512 * MIB
# (pool, concurrency) measured: prefork is what vuq recommends; threads and solo show what the
# prefork hand-off from the main process to a pool child costs
POOLS = (("prefork", 2), ("threads", 2), ("solo", 1))
DEFAULT_CHUNK_BYTES = 5 * MIB
TARGET_MEDIAN_MS = 5.0
JOB_TIMEOUT_S = 300.0


def gaps_ms(log: list[dict[str, Any]]) -> list[float]:
    """Gaps between one upload's answer and the next upload's arrival (one job's requests only)."""
    ups = sorted((e for e in upload_requests(log) if e["finished"] is not None), key=lambda e: e["started"])
    return [(nxt["started"] - prev["finished"]) * 1000 for prev, nxt in itertools.pairwise(ups)]


def run(size: int = DEFAULT_SIZE_BYTES, chunk: int = DEFAULT_CHUNK_BYTES, pool: str = "prefork",
        concurrency: int = 2, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One job of ``size`` bytes in ``chunk``-byte chunks; gap statistics in milliseconds. ``env``: more
    environment for the worker (``bench.tracing`` turns tracing on and off with it)."""
    flush_redis()
    with bench_dir(2 * size) as tmp, running_stack(tmp, REDIS_URL, workers=1, concurrency=concurrency,
                                                      pool=pool, **dict(env or {})) as stack:
        path = stack.root / "handoff.mp4"
        emulator_ingest.make_source(path, size)
        since = time.monotonic()
        job = stack.wait_final(stack.enqueue(path, chunk_size=chunk), JOB_TIMEOUT_S)
        log = [e for e in stack.emulator.requests_log() if e["started"] >= since]
    label = f"{size // MIB} MiB in {chunk // MIB} MiB chunks, {pool} pool, concurrency {concurrency}"
    gaps = gaps_ms(log)
    return {**summary(gaps, label, str(job.state)), "gaps": gaps}


def summary(gaps: list[float], label: str, state: str = "done") -> dict[str, Any]:
    return {"label": label, "state": state, "count": len(gaps), "median_ms": median(gaps),
            "p95_ms": percentile(gaps, 95), "max_ms": max(gaps, default=float("nan"))}


def report(rows: list[dict[str, Any]]) -> str:
    body = [[r["label"], r["count"], f"{r['median_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['max_ms']:.1f}",
             f"<= {TARGET_MEDIAN_MS:.0f}", met(r["median_ms"] <= TARGET_MEDIAN_MS)] for r in rows]
    return ("Hand-off: emulator-side gap from the answer to chunk k to the arrival of chunk k+1 (ms)\n\n"
            + table(["job", "gaps", "median", "p95", "max", "target (median)", "verdict"], body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_BYTES // MIB)
    parser.add_argument("--chunk-mib", type=int, default=DEFAULT_CHUNK_BYTES // MIB)
    args = parser.parse_args(argv)
    print(machine())
    print(report([run(args.size_mib * MIB, args.chunk_mib * MIB, pool, c) for pool, c in POOLS]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
