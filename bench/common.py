"""What every benchmark shares: where data lives, the Redis database, process memory, tables.

Benchmarks use Redis database 12 (flushed when a benchmark starts) and put their
files under /dev/shm when it has room, else the temp dir; everything is removed
at the end.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tasks.job import JobRecord, JobStore
from workers.lab.localstack import LocalStack as Stack
from workers.lab.supervise import wait_until

MIB = 1024 * 1024
GIB = 1024 * MIB
REDIS_URL = os.environ.get("VUQ_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
SHM_DIR = Path("/dev/shm")
SHM_SPARE_BYTES = 512 * MIB


def flush_redis(url: str = REDIS_URL) -> None:
    """Empty the benchmark database so no job or queue of an earlier run interferes."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def tmp_root(needed_bytes: int) -> Path:
    """/dev/shm when it has room for ``needed_bytes`` (plus a margin), else the temp dir."""
    if SHM_DIR.is_dir() and shutil.disk_usage(SHM_DIR).free > needed_bytes + SHM_SPARE_BYTES:
        return SHM_DIR
    return Path(tempfile.gettempdir())


@contextmanager
def bench_dir(needed_bytes: int, prefix: str = "vuq-bench-") -> Iterator[Path]:
    """A temporary directory with room for ``needed_bytes``, removed on exit."""
    with tempfile.TemporaryDirectory(dir=tmp_root(needed_bytes), prefix=prefix) as tmp:
        yield Path(tmp)


# -- process memory ----------------------------------------------------------------------
def status_kib(pid: int, field: str = "VmHWM") -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM is the peak resident set size)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the pool processes of a prefork worker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def worker_peaks_kib(main_pid: int) -> dict[str, Any]:
    """Peak RSS (VmHWM) of a worker's main process and of each pool child."""
    kids = {pid: status_kib(pid) for pid in children(main_pid)}
    return {"main": status_kib(main_pid), "children": kids, "max_child": max(kids.values(), default=0)}


def reset_peaks(main_pid: int) -> None:
    """Set VmHWM of a worker's main process and pool children back to their RSS now (clear_refs 5), so
    the next ``worker_peaks_kib`` is the peak of what ran in between."""
    for pid in [main_pid, *children(main_pid)]:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (a prefork worker and its pool)."""
    return cpu_s(pid) + sum(cpu_s(child) for child in children(pid))


# -- jobs --------------------------------------------------------------------------------
def wait_all(store: JobStore, job_ids: Sequence[str], timeout_s: float) -> list[JobRecord]:
    """Wait until every job is in a final state; returns their records."""
    pending = set(job_ids)
    done: dict[str, JobRecord] = {}

    def probe() -> bool:
        for job_id in list(pending):
            job = store.get(job_id)
            if job and job.state.final:
                done[job_id] = job
                pending.discard(job_id)
        return not pending

    wait_until(probe, timeout_s, f"{len(pending)} of {len(job_ids)} jobs to end")
    return [done[j] for j in job_ids]


def ended_at(stack: Stack, job_id: str) -> float:
    """When the job's record says it ended (Redis's clock, as time.time() on this machine)."""
    job = stack.store.get(job_id)
    return job.ended_at if job and job.ended_at else time.time()


def upload_requests(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answered ``POST /upload`` and ``/source`` entries of the emulator's request log."""
    return [e for e in log if e["method"] == "POST" and (e["path"] == "/upload" or e["path"].endswith("/source"))]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- the machine and tables ---------------------------------------------------------------
def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python and kernel: printed with every table."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram": f"{ram_kib / 1024 / 1024:.1f} GiB",
            "python": sys.version.split()[0], "kernel": platform.release()}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "|".join("-" * (w + 2) for w in widths) + "|", *lines[1:]])


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
