"""Benchmark 2: peak RSS of a vuq worker and of the official client, by chunk size.

The worker runs the prefork pool with concurrency 1, so one pool child runs every
task; its VmHWM (/proc/PID/status, read before the worker stops) is the number
that matters and is reported as "worker (task child)". The main process, which
only consumes messages, is shown next to it; they are not summed (the child is a
fork of the main process, so a sum would count the shared pages twice). The
official client runs in a subprocess that reports its own VmHWM. Run alone:
``python -m bench.memory [--size-mib 1024] [--chunks-mib 50,128]``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench import single_file
from bench.common import GIB, MIB, machine, table, verdict

DEFAULT_SIZE_BYTES = 1 * GIB
DEFAULT_CHUNKS_BYTES = (50 * MIB, 128 * MIB)
TARGET_WORKER_MIB = 80


def peaks(result: dict[str, Any]) -> dict[str, float]:
    """Peak RSS in MiB of the worker's task child, its main process and the official client."""
    worker = result["vuq"]["peaks"][0]
    return {"chunk_mib": result["chunk"] / MIB, "child": worker["max_child"] / 1024,
            "main": worker["main"] / 1024, "official": result["official"]["vmhwm_kib"] / 1024}


def run(size: int = DEFAULT_SIZE_BYTES, chunks: tuple[int, ...] = DEFAULT_CHUNKS_BYTES,
        known: list[dict[str, Any]] | None = None) -> list[dict[str, float]]:
    """Peaks for each chunk size; ``known`` single-file results (same size) are reused, not re-run."""
    found = {r["chunk"]: peaks(r) for r in known or [] if r["size"] == size}
    for chunk in chunks:
        if chunk not in found:
            found[chunk] = peaks(single_file.run(size, chunk, ways=("official", "vuq"), repeats=1))
    return [found[c] for c in sorted(found)]


def report(rows: list[dict[str, float]], size: int = DEFAULT_SIZE_BYTES) -> str:
    body = [[f"{r['chunk_mib']:.0f}", f"{r['child']:.0f}", f"{r['main']:.0f}", f"{r['official']:.0f}",
             f"<= {TARGET_WORKER_MIB}", verdict(r["child"] <= TARGET_WORKER_MIB)] for r in rows]
    head = (f"Memory: peak RSS (VmHWM, MiB) uploading {size // MIB} MiB; worker = prefork, concurrency 1, "
            "max over pool children (one runs the task); main process shown apart, not summed")
    return head + "\n\n" + table(["chunk MiB", "worker (task child)", "worker main", "api-video client",
                                  "target (child)", "verdict"], body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_BYTES // MIB)
    parser.add_argument("--chunks-mib", default=",".join(str(c // MIB) for c in DEFAULT_CHUNKS_BYTES))
    args = parser.parse_args(argv)
    chunks = tuple(int(c) * MIB for c in args.chunks_mib.split(","))
    print(machine())
    print(report(run(args.size_mib * MIB, chunks), args.size_mib * MIB))
    return 0


if __name__ == "__main__":
    sys.exit(main())
