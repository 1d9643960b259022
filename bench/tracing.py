"""Benchmark: what tracing costs, from the emulator's side and per step.

1. The hand-off benchmark (``bench.handoff``: the gap from api.video's answer to chunk k to the arrival of
   chunk k+1, one job alone on one prefork worker) in three arms, interleaved over ``--rounds``:
   **without the extra** (``import opentelemetry`` fails in the worker, as when ``vuq[otel]`` is not
   installed, while ``OTEL_*`` variables ask for traces), **tracing off** (the extra installed, no
   ``OTEL_*`` variables) and **tracing on** (OTLP/HTTP to a local sink that answers at once, every trace
   sampled, the producer tracing too).
2. The seams' own cost per step, in this process: a step, its claim joined, two requests and an event,
   off and on (spans made and handed to a batch processor whose exporter drops them).

Run alone: ``python -m bench.tracing [--size-mib 256] [--chunk-mib 5] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import handoff
from bench.common import MIB, machine, table
from tasks import telemetry
from tasks.constants import TASK_CHUNK

ARMS = ("without the extra", "tracing off", "tracing on")
DEFAULT_SIZE_BYTES = 256 * MIB
STEPS_MEASURED = 20_000


@dataclass
class Sink:
    """A local OTLP/HTTP endpoint that takes every export and answers 200 at once (nothing decoded)."""

    endpoint: str = ""
    requests: int = 0
    bytes: int = 0


@contextmanager
def otlp_sink() -> Iterator[Sink]:
    sink = Sink()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(size)
            sink.requests, sink.bytes = sink.requests + 1, sink.bytes + size
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """This process's OTEL_* variables exactly ``values`` (the workers inherit them), then as they were."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}
    for name in saved:
        del os.environ[name]
    os.environ.update(values)
    telemetry.forget()
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith("OTEL_")]:
            del os.environ[name]
        os.environ.update(saved)
        telemetry.forget()


def no_extra_path(directory: Path) -> str:
    """A PYTHONPATH entry that makes ``import opentelemetry`` fail, as if the extra were not installed."""
    package = directory / "opentelemetry"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("raise ImportError('vuq[otel] is not installed (bench.tracing)')\n")
    return str(directory)


def arm_env(arm: str, sink: Sink, blocker: str) -> tuple[dict[str, str], dict[str, str]]:
    """(OTEL_* variables of the bench and its workers, more environment for the worker only)."""
    asked = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
             "OTEL_TRACES_SAMPLER": "always_on"}
    if arm == "without the extra":
        path = os.pathsep.join(p for p in (blocker, os.environ.get("PYTHONPATH", "")) if p)
        return asked, {"PYTHONPATH": path}
    if arm == "tracing off":
        return {}, {}
    return asked, {}


def handoffs(size: int, chunk: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Each arm's hand-off gaps over ``rounds`` interleaved runs (the arms' order turns each round)."""
    gaps: dict[str, list[float]] = {arm: [] for arm in ARMS}
    runs: dict[str, list[float]] = {arm: [] for arm in ARMS}  # each run's median: the noise between runs
    exports: dict[str, int] = dict.fromkeys(ARMS, 0)
    with tempfile.TemporaryDirectory(prefix="vuq-bench-no-otel-") as blocked, otlp_sink() as sink:
        blocker = no_extra_path(Path(blocked))
        for round_ in range(rounds):
            for arm in ARMS[round_ % 3:] + ARMS[:round_ % 3]:
                otel, worker = arm_env(arm, sink, blocker)
                before = sink.requests
                with environment(otel):
                    result = handoff.run(size, chunk, "prefork", 2, env=worker)
                    telemetry.shutdown()  # the producer's buffered spans (none: it only starts traces)
                assert result["state"] == "done", (arm, result)
                gaps[arm] += result["gaps"]
                runs[arm].append(result["median_ms"])
                exports[arm] += sink.requests - before
    return {arm: {**handoff.summary(gaps[arm], arm), "runs": runs[arm], "exports": exports[arm]} for arm in ARMS}


class _Job:
    """A record as the seams read it."""

    def __init__(self) -> None:
        self.job_id, self.created_at, self.video_id, self.whose = "bench-1", time.time(), "vi123", ("default", "x")
        self.traceparent: str | None = telemetry.JobTrace(0x1234, 0x5678, None, True).traceparent


def per_step_us(steps: int = STEPS_MEASURED) -> float:
    """Microseconds the seams of one step cost: step, joined, two requests answered, one event."""
    job = _Job()
    began = time.perf_counter()
    for index in range(steps):
        with telemetry.step(TASK_CHUNK, job.job_id, index % 100):
            telemetry.joined(job, 5 * MIB)
            with telemetry.request("source", "GET", "https://bucket.example/v.mp4?***") as call:
                call.answered(206, 5 * MIB)
            with telemetry.request("api.video", "POST", "https://ws.api.video/upload", "/upload", "upload") as call:
                call.answered(201, 300, 5 * MIB + 200)
            telemetry.event("vuq.retry", reason="server_error", attempt=1)
    return (time.perf_counter() - began) / steps * 1e6


def seams() -> dict[str, float]:
    """``per_step_us`` with tracing off, then on (every span made and handed to an exporter that drops it)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # the "on" arm only

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    with environment({}):
        off = per_step_us()
    with environment({}):
        assert telemetry.setup((), exporter=Dropping()) is not None
        on = per_step_us()
    return {"off": off, "on": on}


def report(rows: dict[str, dict[str, Any]], cost: dict[str, float]) -> str:
    base = rows["tracing off"]["median_ms"]
    body = [[arm, r["count"], f"{r['median_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['max_ms']:.1f}",
             f"{r['median_ms'] - base:+.2f}", " ".join(f"{m:.1f}" for m in r["runs"]), r["exports"]]
            for arm, r in rows.items()]
    noise = statistics.median(max(r["runs"]) - min(r["runs"]) for r in rows.values())
    return ("Tracing: hand-off gap (ms, emulator side) per arm, prefork worker, concurrency 2\n\n"
            + table(["arm", "gaps", "median", "p95", "max", "median vs off", "each run's median",
                     "OTLP exports"], body)
            + f"\n\nRun-to-run spread of one arm's median (the noise): {noise:.2f} ms. Seams per step, in "
              f"process (step + claim joined + 2 requests + 1 event): off {cost['off']:.2f} µs, on "
              f"{cost['on']:.1f} µs (spans made and handed to an exporter).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_BYTES // MIB)
    parser.add_argument("--chunk-mib", type=int, default=handoff.DEFAULT_CHUNK_BYTES // MIB)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    print(machine())
    rows = handoffs(args.size_mib * MIB, args.chunk_mib * MIB, args.rounds)
    print(report(rows, seams()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
