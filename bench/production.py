"""Benchmark 7: production-shaped throughput under api.video's per-class limits.

api.video limits each account per minute and per request class (production: uploads 100,
writes 200, reads 500). Here the limits are scaled down so the run takes minutes: the
emulator allows upload 30, write 60, read 150 a minute (``PUT /_emulator/faults
{"limits": …}``) and the workers are told the same (``VUQ_RATE_LIMITS``), so the fleet's
limiter paces every class through Redis.

The backlog: 6 jobs of 1 GiB enqueued first, then 24 of 8 MiB, none with a pinned chunk
size (the budget rule of ``Pipeline._fitted_chunk_size`` picks it), on 4 worker processes
(prefork, concurrency 2: the budget, not the slots, binds; a 128 MiB request takes a
second or two here, so 8 slots cover one request every 2 s with room to spare, and more
children would only contend for the 2 cores). The workers hold an API key, so each job
costs two writes (container creation, metadata patch) plus one ``POST /auth/api-key`` for
the fleet; every job carries the same delegated upload token, minted once before the
run (api.video's tokens are reusable), so no job mints one. The 6 big jobs share one
1 GiB source file and the small ones one 8 MiB file (on /dev/shm when it has room).

Per class, from the emulator's request log (entries after the first enqueue): accepted
requests per whole minute counted from the class's first request (the last, partial
minute is the tail where the backlog has run out, so it is shown but not averaged),
the busiest sliding minute, 429s in the log and in ``injected.rate_limited_by_class``.
For uploads, bytes per minute against the ceiling (limit x 128 MiB) and against this
mix's ceiling (limit x the mean of min(128 MiB, what is left of the job at the request's
offset) over the requests made). Also the small jobs' wait (enqueue to done, both on
Redis's clock) and the chunk size each big job got.

``python -m bench.production`` runs it alone; ``--scale 0.25`` runs a quarter of the jobs,
quarter-size big jobs and limits scaled with them (at least 10 a minute) for development.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.common import (
    GIB,
    MIB,
    REDIS_URL,
    bench_dir,
    flush_redis,
    machine,
    median,
    percentile,
    table,
    verdict,
    wait_all,
)
from tasks.apivideo import CLASSES
from tasks.constants import MAX_CHUNK_BYTES
from workers.lab.localstack import running_stack

BIG_JOBS = 6
BIG_BYTES = GIB
SMALL_JOBS = 24
SMALL_BYTES = 8 * MIB
LIMITS = {"upload": 30, "write": 60, "read": 150}
MIN_SCALED_LIMIT = 10
PROCESSES = 4
CONCURRENCY = 2
TARGET_SHARE = 0.9
TOLERATED_429 = 1
RUN_TIMEOUT_S = 900.0
MINUTE_S = 60.0
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Shape:
    big_jobs: int
    big_bytes: int
    small_jobs: int
    small_bytes: int
    limits: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return self.big_jobs * self.big_bytes + self.small_jobs * self.small_bytes

    @property
    def fewest_uploads(self) -> int:
        """Upload requests the mix needs at 128 MiB a request."""
        per = math.ceil
        return self.big_jobs * per(self.big_bytes / MAX_CHUNK_BYTES) + self.small_jobs * per(
            self.small_bytes / MAX_CHUNK_BYTES)


def shape(scale: float = 1.0) -> Shape:
    """The backlog and limits at ``scale`` (1: the production-shaped run)."""
    if scale == 1.0:
        return Shape(BIG_JOBS, BIG_BYTES, SMALL_JOBS, SMALL_BYTES, dict(LIMITS))
    limits = {k: max(MIN_SCALED_LIMIT, round(v * scale)) for k, v in LIMITS.items()}
    big_bytes = max(SMALL_BYTES, round(BIG_BYTES * scale / MIB) * MIB)
    return Shape(max(1, round(BIG_JOBS * scale)), big_bytes, max(1, round(SMALL_JOBS * scale)), SMALL_BYTES, limits)


def run(scale: float = 1.0, processes: int = PROCESSES, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    flush_redis()
    s = shape(scale)
    limits_env = ",".join(f"{k}={v}" for k, v in s.limits.items())
    # the two sources plus what the emulator stores of every job
    with bench_dir(s.big_bytes + s.small_bytes + s.total_bytes) as tmp, \
            running_stack(tmp, REDIS_URL, workers=processes, concurrency=concurrency,
                          VUQ_RATE_LIMITS=limits_env) as stack:
        big_source = stack.file("big.mp4", s.big_bytes, seed=1)[0]
        small_source = stack.file("small.mp4", s.small_bytes, seed=2)[0]
        stack.emulator.set_faults(limits=s.limits)
        token = stack.emulator.create_upload_token()  # one write, before the run; shared by every job
        began = time.monotonic()
        big = [stack.enqueue(big_source, token=token, video={"title": f"big {i}", "tags": ["bench"]})
               for i in range(s.big_jobs)]
        small = [stack.enqueue(small_source, token=token, video={"title": f"small {i}", "tags": ["bench"]})
                 for i in range(s.small_jobs)]
        enqueue_s = time.monotonic() - began
        records = wait_all(stack.store, big + small, RUN_TIMEOUT_S)
        seconds = time.monotonic() - began
        faults = stack.emulator.faults()
        log = [e for e in stack.emulator.requests_log() if e["started"] >= began]
        data_dir = str(tmp.parent)
    sizes = {r.video_id: r.size or 0 for r in records if r.video_id}
    by_id = {r.job_id: r for r in records}
    small_waits = [(by_id[j].ended_at or 0.0) - by_id[j].created_at for j in small]
    big_waits = [(by_id[j].ended_at or 0.0) - by_id[j].created_at for j in big]
    return {
        "shape": s, "processes": processes, "concurrency": concurrency, "seconds": seconds,
        "enqueue_s": enqueue_s, "data_dir": data_dir,
        "failed": sum(1 for r in records if str(r.state) != "done"), "retries": sum(r.retries for r in records),
        "injected": faults["injected"].get("rate_limited_by_class", {}),
        "classes": {k: per_class([e for e in log if e["class"] == k], s.limits[k]) for k in CLASSES},
        "bytes": upload_bytes([e for e in log if e["class"] == "upload"], sizes, s.limits["upload"]),
        "timeline": timeline(log, sizes),
        "small_waits": small_waits, "big_waits": big_waits,
        "big_chunk_sizes": [by_id[j].chunk_size or 0 for j in big],
        "small_chunk_sizes": sorted({by_id[j].chunk_size or 0 for j in small}),
        "log": log, "video_of": {j: by_id[j].video_id for j in big + small},
    }


# -- from the request log ----------------------------------------------------------------
def accepted(entry: dict[str, Any]) -> bool:
    return entry["status"] is not None and 200 <= entry["status"] < 300


def whole_minutes(entries: list[dict[str, Any]]) -> tuple[float, int, float]:
    """The class's first arrival, how many whole minutes its backlog lasted (first arrival to
    last answer), and that span in seconds."""
    if not entries:
        return 0.0, 0, 0.0
    first = min(e["started"] for e in entries)
    span = max(e["finished"] or e["started"] for e in entries) - first
    return first, int(span // MINUTE_S), span


def per_class(entries: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Accepted per whole minute (and overall), the busiest sliding minute, 429s and other errors."""
    ok = sorted(e["started"] for e in entries if accepted(e))
    first, minutes, span = whole_minutes(entries)
    in_whole = sum(1 for t in ok if t < first + minutes * MINUTE_S)
    busiest = max((sum(1 for t in ok[i:] if t < start + MINUTE_S) for i, start in enumerate(ok)), default=0)
    return {"limit": limit, "requests": len(entries), "accepted": len(ok), "span_s": span, "minutes": minutes,
            "in_whole": in_whole, "per_minute": in_whole / minutes if minutes else (
                len(ok) / span * MINUTE_S if span else 0.0),
            "overall_per_minute": len(ok) / span * MINUTE_S if span else 0.0, "busiest": busiest,
            "logged_429": sum(1 for e in entries if e["status"] == 429),
            "other_errors": sum(1 for e in entries if not accepted(e) and e["status"] != 429)}


def carried(entry: dict[str, Any], sizes: dict[str, int]) -> tuple[int, int]:
    """Bytes an upload request carried, and what it could have carried: min(128 MiB, the rest of its job)."""
    match = _RANGE.fullmatch(entry.get("content_range") or "")
    total = sizes.get(entry.get("video_id") or "", 0)
    if match is None:  # no Content-Range: the whole file in one request
        return total, min(MAX_CHUNK_BYTES, total)
    start, end, whole = int(match[1]), int(match[2]), match[3]
    total = int(whole) if whole != "*" else total or end + 1
    return end - start + 1, min(MAX_CHUNK_BYTES, total - start)


def upload_bytes(entries: list[dict[str, Any]], sizes: dict[str, int], limit: int) -> dict[str, Any]:
    """Bytes per whole minute against the raw ceiling (limit x 128 MiB) and this mix's ceiling."""
    first, minutes, span = whole_minutes(entries)
    ok = [e for e in entries if accepted(e)]
    window = [e for e in ok if e["started"] < first + minutes * MINUTE_S] if minutes else ok
    per_minute_of = (lambda n: n / minutes) if minutes else (lambda n: n / span * MINUTE_S if span else 0.0)
    sent = sum(carried(e, sizes)[0] for e in window)
    could = sum(carried(e, sizes)[1] for e in window)
    raw_ceiling = limit * MAX_CHUNK_BYTES
    mix_ceiling = limit * could / len(window) if window else 0.0
    return {"per_minute": per_minute_of(sent), "raw_ceiling": raw_ceiling, "mix_ceiling": mix_ceiling,
            "raw_share": per_minute_of(sent) / raw_ceiling, "fill": sent / could if could else 0.0,
            "mix_share": per_minute_of(sent) / mix_ceiling if mix_ceiling else 0.0,
            "total": sum(carried(e, sizes)[0] for e in ok), "requests": len(ok)}


def timeline(log: list[dict[str, Any]], sizes: dict[str, int]) -> list[dict[str, Any]]:
    """Per minute from the first api.video request: accepted per class, upload MiB, 429s."""
    if not log:
        return []
    first = min(e["started"] for e in log)
    rows: dict[int, dict[str, Any]] = {}
    for e in log:
        row = rows.setdefault(int((e["started"] - first) // MINUTE_S), {k: 0 for k in (*CLASSES, "mib", "429")})
        if e["status"] == 429:
            row["429"] += 1
        elif accepted(e):
            row[e["class"]] += 1
            if e["class"] == "upload":
                row["mib"] += carried(e, sizes)[0] / MIB
    return [{"minute": m, **rows[m]} for m in sorted(rows)]


# -- the report ----------------------------------------------------------------------------
def report(r: dict[str, Any]) -> str:
    s: Shape = r["shape"]
    up, b = r["classes"]["upload"], r["bytes"]
    big_mib = s.big_bytes // MIB
    head = (f"Production-shaped throughput: {s.big_jobs} jobs of {big_mib} MiB enqueued first, then "
            f"{s.small_jobs} of {s.small_bytes // MIB} MiB, no pinned chunk size; {r['processes']} processes x "
            f"{r['concurrency']} (prefork); emulator and workers limited to upload {s.limits['upload']}, "
            f"write {s.limits['write']}, read {s.limits['read']} a minute; one upload token for all jobs, "
            f"minted before the run; data under {r['data_dir']}. {r['seconds']:.0f} s from the first enqueue "
            f"to the last job done ({r['enqueue_s']:.2f} s to enqueue), {r['failed']} failed, "
            f"{r['retries']} task retries.")
    share_floor = TARGET_SHARE * s.limits["upload"]
    chunk_sizes = ", ".join(f"{c // MIB}" for c in r["big_chunk_sizes"])
    small_p95, big_median = percentile(r["small_waits"], 95), median(r["big_waits"])
    late = sum(1 for w in r["small_waits"] if w > MINUTE_S)
    mix_mean = s.total_bytes / s.fewest_uploads
    whole_mix_ceiling = s.limits["upload"] * mix_mean
    rows = [
        ["upload requests accepted per minute while the backlog lasts",
         f"{up['per_minute']:.1f} = {up['per_minute'] / s.limits['upload']:.0%} of {s.limits['upload']}",
         f">= {share_floor:.0f} (90%)", verdict(up["per_minute"] >= share_floor)],
        *[[f"429s, {k} (request log / injected counter)",
           f"{r['classes'][k]['logged_429']} / {int(r['injected'].get(k, 0))}", f"<= {TOLERATED_429}",
           verdict(max(r["classes"][k]["logged_429"], int(r["injected"].get(k, 0))) <= TOLERATED_429)]
          for k in CLASSES],
        ["upload MiB per minute / raw ceiling (limit x 128 MiB)",
         f"{b['per_minute'] / MIB:.0f} / {b['raw_ceiling'] / MIB:.0f} = {b['raw_share']:.0%}", ">= 90%",
         verdict(b["raw_share"] >= TARGET_SHARE) + " (bounded by the mix)"],
        ["upload MiB per minute / this mix's ceiling (limit x what those requests could carry)",
         f"{b['per_minute'] / MIB:.0f} / {b['mix_ceiling'] / MIB:.0f} = {b['mix_share']:.0%}", ">= 90%",
         verdict(b["mix_share"] >= TARGET_SHARE)],
        [f"  (for reference: / limit x the whole mix's best {mix_mean / MIB:.0f} MiB a request)",
         f"{b['per_minute'] / MIB:.0f} / {whole_mix_ceiling / MIB:.0f} = {b['per_minute'] / whole_mix_ceiling:.0%}",
         "", "no target"],
        ["big jobs' chunk size chosen (MiB)", chunk_sizes, f"{MAX_CHUNK_BYTES // MIB} (budget binds)",
         verdict(all(c == MAX_CHUNK_BYTES for c in r["big_chunk_sizes"]))],
        ["small jobs' wait, enqueue to done: p95 / median / max (s)",
         f"{small_p95:.1f} / {median(r['small_waits']):.1f} / {max(r['small_waits'], default=0):.1f} "
         f"({late} of {len(r['small_waits'])} over a minute)",
         f"p95 <= half the big jobs' median ({big_median / 2:.0f})", verdict(small_p95 <= big_median / 2)],
        ["big jobs' wait, enqueue to done: median / max (s)",
         f"{median(r['big_waits']):.1f} / {max(r['big_waits'], default=0):.1f}", "", ""],
    ]
    classes = [[k, c["limit"], f"{c['accepted']} of {c['requests']}", f"{c['span_s']:.0f}", c["minutes"],
                f"{c['per_minute']:.1f}", f"{c['per_minute'] / c['limit']:.0%}", f"{c['overall_per_minute']:.1f}",
                c["busiest"], c["logged_429"], int(r["injected"].get(k, 0)), c["other_errors"]]
               for k, c in r["classes"].items()]
    minutes = [[t["minute"], t["upload"], f"{t['mib']:.0f}", t["write"], t["read"], t["429"]] for t in r["timeline"]]
    caption = (
        "Per-minute rates count accepted requests (2xx) that arrived in the whole minutes from the class's "
        "first request to its last answer; the last, partial minute (the backlog has run out) is left out "
        "of the average but shown in the timeline, and 'overall' divides all of them by the whole span. "
        "Writes and reads are demand-bound (two writes a job and one token exchange; reads only on "
        "recovery), so only the upload rate has a target. 'busiest 60 s' counts arrivals at the emulator in "
        "any sliding 60 s; the fleet admits on Redis's clock, so arrival jitter can show one more than it "
        "admitted (the emulator's own windows decide the 429s). The fleet admits at most limit - 1 requests in "
        f"any 60 s, so {s.limits['upload'] - 1}/{s.limits['upload']} = "
        f"{(s.limits['upload'] - 1) / s.limits['upload']:.0%} is the most the upload rate can show. "
        f"Bytes: the raw ceiling is {s.limits['upload']} x 128 MiB = {b['raw_ceiling'] // MIB} MiB a minute, "
        f"but this mix cannot reach it: its {s.total_bytes // MIB} MiB need at least {s.fewest_uploads} "
        f"upload requests ({s.small_jobs} of them carry only {s.small_bytes // MIB} MiB), "
        f"{mix_mean / MIB:.0f} MiB a request at best: at the limit's pace the whole mix cannot go faster than "
        f"{mix_mean / MAX_CHUNK_BYTES:.0%} of the raw ceiling (one minute can, by holding only big chunks). "
        "This mix's ceiling is the limit times the mean, over the accepted uploads of the same whole "
        "minutes, of min(128 MiB, what was left of the request's job at its offset): what those requests "
        f"could have carried. They carried {b['fill']:.0%} of that; the ratio against this ceiling is that "
        "fill times the upload rate's share of the limit. The reference row divides by the whole mix's "
        "mean instead: it is lower when the averaged minutes hold more than their share of the small "
        "requests (the rest of the big chunks go in the tail). A small job's wait over a minute means its "
        "request did not fit the window it arrived in and waited for the next.")
    return "\n\n".join([
        head,
        table(["measure", "value", "target", "verdict"], rows),
        table(["class", "limit/min", "accepted", "span s", "whole min", "per whole min", "of limit",
               "overall/min", "busiest 60 s", "429 log", "429 injected", "other errors"], classes),
        "Timeline (minutes from the first api.video request after the first enqueue; accepted requests):\n\n"
        + table(["minute", "uploads", "upload MiB", "writes", "reads", "429s"], minutes),
        caption,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="share of the jobs, of the big jobs' size and of the limits (at least 10/min)")
    parser.add_argument("--processes", type=int, default=PROCESSES)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    print(machine())
    print(report(run(args.scale, args.processes, args.concurrency)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
