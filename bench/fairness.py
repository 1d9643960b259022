"""Benchmark: fair shares between producers (issue #19).

One account limited to 30 uploads a minute (write 90, read 150). Tenant ``backfill`` enqueues 60
one-request jobs; once its uploads are under way, tenant ``live`` enqueues 3. Reports how long each live
job took from its enqueue to done, and how long the backfill took, against the same run where the three
are enqueued as ``backfill`` too (one tenant: first come, first served). Target: each live job done within
15 s of its enqueue while the backfill takes about two minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.common import MIB, REDIS_URL, bench_dir, ended_at, flush_redis, machine, table, wait_all
from workers.lab.localstack import running_stack
from workers.lab.supervise import wait_until

LIMITS = {"upload": 30, "write": 90, "read": 150}
BACKFILL_JOBS = 60
LIVE_JOBS = 3
JOB_BYTES = 2 * MIB
PROCESSES = 2
CONCURRENCY = 4
LIVE_TARGET_S = 15.0
STARTED_UPLOADS = 5  # the live jobs arrive once the backfill has this many uploads done
RUN_TIMEOUT_S = 600.0


def run(live_tenant: str) -> dict[str, Any]:
    flush_redis()
    limits = ",".join(f"{k}={v}" for k, v in LIMITS.items())
    with bench_dir(4 * JOB_BYTES) as tmp, running_stack(tmp, REDIS_URL, workers=PROCESSES, concurrency=CONCURRENCY,
                                                         VUQ_RATE_LIMITS=limits) as stack:
        stack.emulator.set_faults(limits=LIMITS)
        source = stack.file("job.mp4", JOB_BYTES)[0]
        token = stack.emulator.create_upload_token()
        began = stack.store.now()
        backfill = [stack.enqueue(source, token=token, tenant="backfill") for _ in range(BACKFILL_JOBS)]
        wait_until(lambda: sum(1 for e in stack.emulator.requests_log() if e["path"] == "/upload"
                               and e["status"] == 201) >= STARTED_UPLOADS, RUN_TIMEOUT_S, "the backfill under way")
        live_at = stack.store.now()
        live = [stack.enqueue(source, token=token, tenant=live_tenant) for _ in range(LIVE_JOBS)]
        wait_all(stack.store, backfill + live, RUN_TIMEOUT_S)
        live_s = [ended_at(stack, job_id) - live_at for job_id in live]
        backfill_s = max(ended_at(stack, job_id) for job_id in backfill) - began
        rate_limited = int(stack.emulator.faults()["injected"]["rate_limited"])
    return {"live_tenant": live_tenant, "live_s": live_s, "backfill_s": backfill_s, "rate_limited": rate_limited}


def report(fair: dict[str, Any], fifo: dict[str, Any]) -> str:
    head = (f"Fair shares: one account at {LIMITS} a minute; tenant backfill enqueues {BACKFILL_JOBS} one-request "
            f"jobs, then {LIVE_JOBS} more arrive once {STARTED_UPLOADS} of its uploads are done; "
            f"{PROCESSES} processes x {CONCURRENCY}")
    rows = []
    runs = (("live as a tenant of its own", fair), ("the same jobs as backfill (first come, first served)", fifo))
    for name, r in runs:
        worst = max(r["live_s"])
        target = f"each <= {LIVE_TARGET_S:.0f} s" if r is fair else "(contrast)"
        verdict = ("met" if worst <= LIVE_TARGET_S and r["rate_limited"] == 0 else "missed") if r is fair else ""
        rows.append([name, " / ".join(f"{s:.1f} s" for s in r["live_s"]), f"{r['backfill_s']:.0f} s",
                     r["rate_limited"], target, verdict])
    return head + "\n\n" + table(["the three late jobs", "enqueue to done", "backfill took", "429", "target",
                                  "verdict"], rows)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    print(machine())
    began = time.monotonic()
    fair = run("live")
    fifo = run("backfill")
    print(f"{time.monotonic() - began:.0f} s", file=sys.stderr)
    print(report(fair, fifo))
    return 0


if __name__ == "__main__":
    sys.exit(main())
