"""Benchmark: three accounts, one fleet (issue #19).

The emulator holds three accounts, each limited like a small production plan (upload 30, write 90, read
150 a minute, fixed windows per account); the workers hold all three keys (``default`` and two in
``VUQ_ACCOUNTS_FILE``). Each account gets a backlog of one-request jobs (a small file, one upload, a
container and a metadata patch with the key), enqueued at once. Reports, per run, from the emulator's
request log: accepted uploads a minute against the three budgets together (over the span from the first
upload to the last one's answer), the busiest sliding minute of each account, and 429s in every class
and account. Target: at least 85 % of the three budgets, 0 x 429, in every run.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.common import MIB, REDIS_URL, bench_dir, flush_redis, machine, table, wait_all
from workers.lab.localstack import running_stack

KEYS = {"default": "bench-key-default-3c1d", "acme": "bench-key-acme-7e2f", "globex": "bench-key-globex-9a4b"}
LIMITS = {"upload": 30, "write": 90, "read": 150}
JOBS_PER_ACCOUNT = 60
JOB_BYTES = 2 * MIB
PROCESSES = 2
CONCURRENCY = 4
WINDOW_S = 60.0
TARGET_SHARE = 0.85
RUNS = 3
RUN_TIMEOUT_S = 900.0


def run(jobs_per_account: int = JOBS_PER_ACCOUNT) -> dict[str, Any]:
    flush_redis()
    limits = ",".join(f"{k}={v}" for k, v in LIMITS.items())
    others = {name: key for name, key in KEYS.items() if name != "default"}
    with bench_dir(4 * JOB_BYTES) as tmp, running_stack(
            tmp, REDIS_URL, workers=PROCESSES, concurrency=CONCURRENCY, api_key=KEYS["default"], accounts=others,
            VUQ_RATE_LIMITS=limits) as stack:
        stack.emulator.set_faults(limits=LIMITS)
        source = stack.file("one-request.mp4", JOB_BYTES)[0]
        tokens = {name: stack.emulator.for_key(key).create_upload_token() for name, key in KEYS.items()}
        ids = [stack.enqueue(source, token=tokens[name], account=name, video={"title": f"{name} {n}"})
               for n in range(jobs_per_account) for name in KEYS]
        records = wait_all(stack.store, ids, RUN_TIMEOUT_S)
        log = stack.emulator.requests_log()
        injected = stack.emulator.faults()["injected"]
        accounts = {stack.emulator.for_key(key).account: name for name, key in KEYS.items()}
    return {"jobs": len(ids), "failed": sum(1 for r in records if str(r.state) != "done"),
            "rate_limited": int(injected["rate_limited"]), "logged_429": sum(1 for e in log if e["status"] == 429),
            **uploads(log, accounts)}


def uploads(log: list[dict[str, Any]], accounts: dict[str, str]) -> dict[str, Any]:
    """Accepted uploads a minute over their span, and each account's busiest sliding minute."""
    accepted = [e for e in log if e["path"] == "/upload" and e["status"] and 200 <= e["status"] < 300]
    if not accepted:
        return {"per_minute": 0.0, "busiest": {}, "span_s": 0.0, "accepted": 0}
    span = max(e["finished"] for e in accepted) - min(e["started"] for e in accepted)
    busiest = {}
    for account, name in accounts.items():
        times = sorted(e["started"] for e in accepted if e["account"] == account)
        busiest[name] = max((sum(1 for t in times[i:] if t < start + WINDOW_S) for i, start in enumerate(times)),
                            default=0)
    return {"per_minute": len(accepted) / span * WINDOW_S, "busiest": busiest, "span_s": span,
            "accepted": len(accepted)}


def report(results: list[dict[str, Any]]) -> str:
    budget = LIMITS["upload"] * len(KEYS)
    head = (f"Three accounts: {results[0]['jobs']} one-request jobs ({JOB_BYTES // MIB} MiB), "
            f"{results[0]['jobs'] // len(KEYS)} per account, limits per account {LIMITS} a minute, "
            f"{PROCESSES} processes x {CONCURRENCY}; "
            f"{len(results)} run(s)")
    rows = []
    for n, r in enumerate(results, start=1):
        share = r["per_minute"] / budget
        ok = share >= TARGET_SHARE and r["rate_limited"] == 0 and r["failed"] == 0
        rows.append([n, f"{r['per_minute']:.1f} of {budget} ({share:.0%})", " / ".join(
            f"{name} {count}" for name, count in r["busiest"].items()), f"{r['rate_limited']} / {r['logged_429']}",
            r["failed"], f">= {TARGET_SHARE:.0%}, 0 x 429", "met" if ok else "missed"])
    return head + "\n\n" + table(["run", "accepted uploads/min", "busiest minute per account", "429 (all classes)",
                                  "failed", "target", "verdict"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--jobs", type=int, default=JOBS_PER_ACCOUNT, help="jobs per account")
    args = parser.parse_args(argv)
    print(machine())
    results = []
    for _ in range(args.runs):
        began = time.monotonic()
        results.append(run(args.jobs))
        print(f"run {len(results)}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
