"""Benchmark 5: a fleet under api.video's upload rate limit.

4 worker processes (prefork, concurrency 4), 40 jobs of 12 MiB in 5 MiB chunks
(3 uploads each: 120), the emulator limited to 120 upload requests a minute (a
fixed window that starts with its first upload). Workers keep the production
retry policy (backoff 2 s, cap 120 s, 8 retries; X-RateLimit-Retry-After is a
floor), not the integration tests' fast one. Reports, from the emulator:

* accepted uploads per minute, over the span from the first upload's arrival
  to the last one's answer, and the most accepted in any sliding 60 s;
* 429s: ``faults()["injected"]["rate_limited"]`` and, from the request log,
  the most 429s any one chunk got (a chunk is its videoId and Content-Range).

Re-run it when the cluster-wide limiter lands: ``python -m bench.ratelimit``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from typing import Any

from bench.common import MIB, REDIS_URL, bench_dir, flush_redis, machine, table, upload_requests, verdict, wait_all
from workers.lab.localstack import running_stack

DEFAULT_JOBS = 40
JOB_BYTES = 12 * MIB
CHUNK_BYTES = 5 * MIB
PROCESSES = 4
CONCURRENCY = 4
LIMIT_PER_MINUTE = 120
TARGET_SHARE = 0.9
HANDFUL_429 = 5
RUN_TIMEOUT_S = 600.0
WINDOW_S = 60.0
PRODUCTION_RETRY = {"VUQ_RETRY_BACKOFF_S": "2", "VUQ_RETRY_BACKOFF_MAX_S": "120", "VUQ_MAX_RETRIES": "8"}


def run(jobs: int = DEFAULT_JOBS, limit: int = LIMIT_PER_MINUTE) -> dict[str, Any]:
    flush_redis()
    with bench_dir(2 * jobs * JOB_BYTES) as tmp, \
            running_stack(tmp, REDIS_URL, workers=PROCESSES, concurrency=CONCURRENCY, **PRODUCTION_RETRY) as stack:
        source = stack.file("rl.mp4", JOB_BYTES)[0]
        tokens = [stack.emulator.create_upload_token() for _ in range(jobs)]
        stack.emulator.set_faults(rate_limit_per_minute=limit)
        began = time.monotonic()
        ids = [stack.enqueue(source, token=tokens[i], chunk_size=CHUNK_BYTES) for i in range(jobs)]
        records = wait_all(stack.store, ids, RUN_TIMEOUT_S)
        seconds = time.monotonic() - began
        injected = int(stack.emulator.faults()["injected"]["rate_limited"])
        log = [e for e in upload_requests(stack.emulator.requests_log()) if e["started"] >= began]
    return {"jobs": jobs, "limit": limit, "seconds": seconds, "injected_429": injected,
            "failed": sum(1 for r in records if str(r.state) != "done"),
            "retries": sum(r.retries for r in records), **from_log(log)}


def from_log(log: list[dict[str, Any]]) -> dict[str, Any]:
    """Accepted uploads per minute, the busiest sliding minute, 429s in all and per chunk."""
    accepted = sorted(e["started"] for e in log if e["status"] and 200 <= e["status"] < 300)
    per_chunk = collections.Counter((e.get("video_id"), e["content_range"]) for e in log if e["status"] == 429)
    span = (max(e["finished"] or e["started"] for e in log) - min(e["started"] for e in log)) if log else 0.0
    busiest = max((sum(1 for t in accepted[i:] if t < start + WINDOW_S) for i, start in enumerate(accepted)),
                  default=0)
    return {"uploads": len(log), "accepted": len(accepted), "span_s": span,
            "per_minute": len(accepted) / span * WINDOW_S if span else 0.0, "busiest_minute": busiest,
            "logged_429": sum(per_chunk.values()), "max_429_one_chunk": max(per_chunk.values(), default=0)}


def report(r: dict[str, Any]) -> str:
    head = (f"Rate limit: {r['jobs']} jobs of {JOB_BYTES // MIB} MiB in {CHUNK_BYTES // MIB} MiB chunks, "
            f"{PROCESSES} processes x {CONCURRENCY}, emulator limit {r['limit']} uploads/min "
            f"(fixed window from the first upload); {r['seconds']:.1f} s, {r['failed']} failed, "
            f"{r['retries']} task retries")
    floor = TARGET_SHARE * r["limit"]
    rows = [
        ["accepted uploads per minute (over the upload span)", f"{r['per_minute']:.0f} "
         f"({r['accepted']} in {r['span_s']:.1f} s)", f">= {floor:.0f}", verdict(r["per_minute"] >= floor)],
        ["accepted uploads in the busiest sliding minute", r["busiest_minute"], f"<= {r['limit']}",
         verdict(r["busiest_minute"] <= r["limit"])],
        ["429s (emulator injected counter)", r["injected_429"], f"<= {HANDFUL_429}",
         verdict(r["injected_429"] <= HANDFUL_429)],
        ["429s (request log) / most for one chunk", f"{r['logged_429']} / {r['max_429_one_chunk']}", "<= 1 each",
         verdict(r["max_429_one_chunk"] <= 1)],
    ]
    return head + "\n\n" + table(["measure", "value", "target", "verdict"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--limit", type=int, default=LIMIT_PER_MINUTE)
    args = parser.parse_args(argv)
    print(machine())
    print(report(run(args.jobs, args.limit)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
