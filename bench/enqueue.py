"""Benchmark: how fast a producer enqueues (issue #19, bulk enqueue).

No workers run: the jobs are created in Redis and their start messages queued, nothing more. Three ways,
each from one Python process on this machine: ``enqueue_upload`` called once per job, ``enqueue_many``
with the whole list, and ``vuq enqueue --from FILE.jsonl`` (one spec per line, the process's start
included). Every job names the same local source (its size is read once per job) and a token of the
default account. Target: enqueue_many at 10 000 jobs a second or more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import MIB, REDIS_URL, bench_dir, flush_redis, machine, table
from tasks import enqueue_many, enqueue_upload
from tasks.settings import Settings

ONE_BY_ONE = 2_000
MANY = 20_000
TARGET_PER_S = 10_000
TOKEN = "to1bench0enqueue0token0000"


def _env(tmp: Path) -> dict[str, str]:
    return {"VUQ_BROKER_URL": REDIS_URL, "VUQ_REDIS_URL": REDIS_URL, "VUQ_ALLOWED_ROOTS": str(tmp),
            "VUQ_API_BASE_URL": "http://127.0.0.1:9", "VUQ_API_KEY": "bench-enqueue-key"}


def _specs(source: Path, n: int, tag: str) -> list[dict[str, Any]]:
    return [{"source": str(source), "token": TOKEN, "video": {"title": f"{tag} {i}"}, "job_id": f"{tag}-{i:06d}"}
            for i in range(n)]


def _queued(queue: str) -> int:
    """Start messages waiting in the broker's list for ``queue``."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.llen(queue))  # type: ignore[arg-type]
    finally:
        client.close()


def run() -> list[dict[str, Any]]:
    results = []
    with bench_dir(2 * MIB) as tmp:
        source = tmp / "clip.mp4"
        source.write_bytes(b"\0" * MIB)
        env = _env(tmp)
        os.environ.update(env)
        settings = Settings.from_env()

        flush_redis()
        specs = _specs(source, ONE_BY_ONE, "one")
        began = time.perf_counter()
        for spec in specs:
            enqueue_upload(spec["source"], token=spec["token"], video=spec["video"], job_id=spec["job_id"],
                           settings=settings)
        results.append(_row("enqueue_upload, once per job", ONE_BY_ONE, time.perf_counter() - began))

        flush_redis()
        specs = _specs(source, MANY, "many")
        began = time.perf_counter()
        ids = enqueue_many(specs, settings=settings)
        results.append(_row("enqueue_many, one list", MANY, time.perf_counter() - began,
                            refused=sum(1 for i in ids if not isinstance(i, str))))

        flush_redis()
        lines = tmp / "jobs.jsonl"
        lines.write_text("".join(json.dumps(s) + "\n" for s in _specs(source, MANY, "file")))
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "workers.console.cli", "enqueue", "--from", str(lines)],
                              env={**os.environ, **env}, capture_output=True, text=True, check=False)
        took = time.perf_counter() - began
        printed = [line for line in done.stdout.splitlines() if line]
        results.append(_row("vuq enqueue --from (process included)", MANY, took,
                            refused=MANY - len(printed) if done.returncode in (0, 1) else MANY))
        results[-1]["queued"] = _queued(settings.queue)
        flush_redis()
    return results


def _row(how: str, n: int, seconds: float, refused: int = 0) -> dict[str, Any]:
    return {"how": how, "jobs": n, "seconds": seconds, "per_s": n / seconds, "refused": refused}


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        target = f">= {TARGET_PER_S:,}/s" if r["how"].startswith("enqueue_many") else ""
        verdict = ("met" if r["per_s"] >= TARGET_PER_S and not r["refused"] else "missed") if target else ""
        rows.append([r["how"], f"{r['jobs']:,}", f"{r['seconds']:.2f}", f"{r['per_s']:,.0f}", r["refused"], target,
                     verdict])
    return ("Enqueue speed: jobs created and their start messages queued, no workers (bench.enqueue)\n\n"
            + table(["how", "jobs", "seconds", "jobs/s", "refused", "target", "verdict"], rows))


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    print(machine())
    print(report(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
