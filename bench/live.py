"""Benchmark: a live recording (issue #20), ready seconds after its last byte.

A ``Recorder`` writes 1 GiB at a steady 50 MiB/s; three uploaders take it in 50 MiB chunks, each on a
fresh recording of the same bytes, against the emulator on loopback, one worker (prefork, concurrency 1):

* **vuq, live**: the job is enqueued (``live=True``) before the first byte; ``finish_upload`` is called
  the moment the recorder flushed its last byte. Timed from that last byte to the ``ended_at`` of the
  job's record (``done``: last part, then the metadata patch).
* **(a) vuq, at rest**: a normal job enqueued when the recording ended, timed the same way.
* **(b) the official client** (``api-video`` 1.4.7, ``bench.official_client --growing``, its own
  process): its progressive session reads the growing file, sending part n once the file holds more than
  n chunks, the last part when it is told the final size. Timed from the last byte to the last part's
  answer; it has no metadata step.

Also the peak RSS (VmHWM, reset before each run) of the worker's processes during the live run and the
at-rest one, and of the official client. Every upload is checked byte for byte. Targets: the live job
ready within one part's upload time plus 1 s of the finish, at least 10x sooner than (a), worker memory
flat. Run alone: ``python -m bench.live [--size-mib 1024] [--chunk-mib 50] [--pace-mib 50] [--log]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import httpx

from bench.common import (
    GIB,
    MIB,
    REDIS_URL,
    bench_dir,
    ended_at,
    flush_redis,
    machine,
    median,
    reset_peaks,
    table,
    upload_requests,
    verdict,
    worker_peaks_kib,
)
from bench.memory import TARGET_WORKER_MIB
from tasks import OperationError, finish_upload
from workers.lab.localstack import LocalStack as Stack
from workers.lab.localstack import running_stack
from workers.lab.recorder import Recorder

DEFAULT_SIZE_BYTES = 1 * GIB
DEFAULT_CHUNK_BYTES = 50 * MIB
DEFAULT_PACE_BYTES = 50 * MIB  # a second
SEED = 20
JOB_TIMEOUT_S = 300.0
TARGET_MARGIN_S = 1.0  # ready within one part's upload time plus this
TARGET_VS_AT_REST = 10.0
FLAT_MIB = 5  # the live run's worker peak within this of the at-rest run's
FINISH_TRIES = 5
TITLE = "bench live"
IDS = re.compile(r"\b(vi|to)[0-9A-Za-z]{8,}")  # video ids and tokens in paths


def record(stack: Stack, name: str, size: int, pace: int) -> Recorder:
    """A recording of the same bytes every time (created empty now, written once started)."""
    return Recorder(stack.root / name, size, pace, seed=SEED)


def finish(stack: Stack, job_id: str, size: int) -> int:
    """``finish_upload`` at once; a finish that met the worker moving the cursor is tried again.
    Returns how many were refused that way."""
    for refused in range(FINISH_TRIES):
        try:
            finish_upload(job_id, size=size, settings=stack.settings)
            return refused
        except OperationError as exc:
            if "changed while finishing" not in str(exc):
                raise
    raise RuntimeError(f"job {job_id}: finish refused {FINISH_TRIES} times")


def vuq_run(stack: Stack, size: int, chunk: int, pace: int, live: bool) -> dict[str, Any]:
    """One recording uploaded by a vuq job: live (enqueued first, finished at the last byte) or at rest
    (enqueued at the last byte); from the last byte to the job's ``ended_at``."""
    recorder = record(stack, "live.mp4" if live else "at-rest.mp4", size, pace)
    worker = stack.workers[0].proc.pid
    reset_peaks(worker)
    since = time.monotonic()
    job_id = stack.enqueue(recorder.path, live=True, chunk_size=chunk, video={"title": TITLE}) if live else ""
    recorder.start().join(JOB_TIMEOUT_S)
    finish_s, refused = time.time(), 0
    if live:
        refused = finish(stack, job_id, size)
    else:
        job_id = stack.enqueue(recorder.path, chunk_size=chunk, video={"title": TITLE})
    job = stack.wait_final(job_id, JOB_TIMEOUT_S)
    assert recorder.ended_at is not None
    result = {"seconds": ended_at(stack, job_id) - recorder.ended_at, "finish_call_s": finish_s - recorder.ended_at,
              "refused": refused, "video_id": job.video_id, "state": str(job.state),
              "peaks": worker_peaks_kib(worker), "last_byte": recorder.ended_at, "done": ended_at(stack, job_id),
              "requests": since_log(stack, since), "log": [line for line in stack.logs().splitlines()
                                                           if job_id in line]}
    recorder.path.unlink()
    return result


def official_run(stack: Stack, size: int, chunk: int, pace: int) -> dict[str, Any]:
    """(b): the official client's progressive session on the growing file, in its own process; told the
    final size on stdin at the last byte; from the last byte to its last part's answer."""
    recorder = record(stack, "official.mp4", size, pace)
    token = stack.emulator.create_upload_token()
    since = time.monotonic()
    with subprocess.Popen([sys.executable, "-m", "bench.official_client", "--growing", stack.emulator.url, token,
                           str(recorder.path), str(chunk)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("bench.official_client --growing did not start")
        recorder.start().join(JOB_TIMEOUT_S)
        proc.stdin.write(f"{size}\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=JOB_TIMEOUT_S)
    if proc.returncode:
        raise RuntimeError(f"bench.official_client --growing exited {proc.returncode}")
    answer = json.loads(out.strip().splitlines()[-1])
    assert recorder.ended_at is not None
    recorder.path.unlink()
    return {"seconds": answer["answered_at"] - recorder.ended_at, "video_id": answer["video_id"],
            "vmhwm_kib": answer["vmhwm_kib"], "last_byte": recorder.ended_at, "parts": answer["parts"],
            "requests": since_log(stack, since)}


def since_log(stack: Stack, since: float) -> list[dict[str, Any]]:
    """The emulator's requests since ``since`` (monotonic), times turned into ``time.time()``."""
    offset = time.time() - time.monotonic()
    return [{**e, "started": e["started"] + offset, "finished": (e["finished"] or e["started"]) + offset}
            for e in stack.emulator.requests_log() if e["started"] >= since]


def verify(stack: Stack, result: dict[str, Any], sha256: str, size: int) -> dict[str, Any]:
    """Byte for byte (the emulator's hook), then the video goes so the emulator's data stays small."""
    emu = stack.emulator
    stored = emu.video(str(result["video_id"]))
    result["ok"] = bool(stored["complete"] and stored["sha256"] == sha256 and stored["size"] == size)
    httpx.delete(f"{emu.url}/videos/{result['video_id']}", headers=emu.auth_header, timeout=60).raise_for_status()
    return result


def part_s(result: dict[str, Any], chunk: int) -> float:
    """Median upload time of the run's whole parts (or chunks), from the emulator's log."""
    return median([e["finished"] - e["started"] for e in upload_requests(result["requests"])
                   if e["status"] and e["status"] < 300 and whole(e.get("content_range") or "", chunk)])


def last_upload_s(result: dict[str, Any]) -> float:
    """How long the run's last upload request took, sent to answered (the emulator assembles a part
    upload's parts into one file before it answers the last)."""
    last = upload_requests(result["requests"])[-1]
    return float(last["finished"] - last["started"])


def whole(content_range: str, chunk: int) -> bool:
    """A request that carried one whole chunk: ``part n/*``, or ``bytes A-B/T`` of ``chunk`` bytes."""
    if content_range.startswith("part "):
        return content_range.endswith("/*")
    if content_range.startswith("bytes "):
        first, last = content_range[6:].split("/")[0].split("-")
        return int(last) - int(first) + 1 == chunk
    return False


def after_last_byte(result: dict[str, Any]) -> str:
    """What went after the last byte, in seconds from it (request sent..answered); three or more
    uploads in a row are shown as one span."""
    start = result["last_byte"]
    steps: list[tuple[str, float, float]] = []
    runs: list[dict[str, Any]] = []

    def flush() -> None:
        if len(runs) >= 3:
            steps.append((f"{len(runs)} uploads", runs[0]["started"], runs[-1]["finished"]))
        else:
            steps.extend((e["content_range"] or "upload", e["started"], e["finished"]) for e in runs)
        runs.clear()

    for e in result["requests"]:
        if e["finished"] < start:
            continue
        if e["path"] == "/upload":
            runs.append(e)
            continue
        flush()
        steps.append((f"{e['method']} {IDS.sub('{id}', e['path'])}", e["started"], e["finished"]))
    flush()
    text = [f"{what} {began - start:+.2f}..{ended - start:+.2f}" for what, began, ended in steps]
    if "done" in result:
        text.append(f"done {result['done'] - start:+.2f}")
    return ", ".join(text)


def run(size: int = DEFAULT_SIZE_BYTES, chunk: int = DEFAULT_CHUNK_BYTES,
        pace: int = DEFAULT_PACE_BYTES, link_mib: float = 0.0) -> dict[str, Any]:
    """``link_mib``: the emulator reads upload bodies no faster (a link to api.video; 0: loopback)."""
    flush_redis()
    load_before = os.getloadavg()
    with bench_dir(3 * size) as tmp, running_stack(tmp, REDIS_URL, workers=1, concurrency=1) as stack:
        sha256 = Recorder(stack.root / "digest", size, seed=SEED, create=False).sha256
        warm, warm_sha256 = stack.file("warm-up.mp4", 2 * chunk + 1)  # untimed: pool child, connections
        warmed = stack.wait_final(stack.enqueue(warm, chunk_size=chunk), JOB_TIMEOUT_S)
        verify(stack, {"video_id": warmed.video_id}, warm_sha256, 2 * chunk + 1)
        stack.emulator.set_faults(ingest_mib_per_s=link_mib)
        live = verify(stack, vuq_run(stack, size, chunk, pace, live=True), sha256, size)
        at_rest = verify(stack, vuq_run(stack, size, chunk, pace, live=False), sha256, size)
        official = verify(stack, official_run(stack, size, chunk, pace), sha256, size)
        data_dir = str(tmp.parent)
    return {"size": size, "chunk": chunk, "pace": pace, "data_dir": data_dir, "live": live, "at_rest": at_rest,
            "official": official, "load": (load_before, os.getloadavg()), "link_mib": link_mib}


def report(results: dict[str, Any]) -> str:
    live, at_rest, official, chunk = results["live"], results["at_rest"], results["official"], results["chunk"]
    before, after = results["load"]
    head = (f"Live recording: {results['size'] // MIB} MiB written at {results['pace'] // MIB} MiB/s, "
            f"{chunk // MIB} MiB chunks, emulator on loopback"
            + (f" reading uploads at {results['link_mib']:g} MiB/s (a link)" if results.get("link_mib") else "")
            + f", data on {results['data_dir']}, one worker "
            f"(prefork, concurrency 1), one run each; load average {before[0]:.1f} before, {after[0]:.1f} after")

    def mib(kib: float) -> str:
        return f"{kib / 1024:.0f}"

    rows = [["vuq, live job, finish_upload at the last byte", f"{live['seconds']:.2f}", f"{last_upload_s(live):.2f}",
             f"{mib(live['peaks']['max_child'])} / {mib(live['peaks']['main'])}", "ok" if live["ok"] else "BAD"],
            ["(a) vuq, a job enqueued when the recording ended", f"{at_rest['seconds']:.2f}",
             f"{last_upload_s(at_rest):.2f}", f"{mib(at_rest['peaks']['max_child'])} / {mib(at_rest['peaks']['main'])}",
             "ok" if at_rest["ok"] else "BAD"],
            ["(b) api-video 1.4.7 progressive session on the growing file (no metadata step)",
             f"{official['seconds']:.2f}", f"{last_upload_s(official):.2f}", f"{mib(official['vmhwm_kib'])} (client)",
             "ok" if official["ok"] else "BAD"]]
    one_part = part_s(live, chunk)
    limit = one_part + TARGET_MARGIN_S
    ratio = at_rest["seconds"] / live["seconds"]
    child, rest_child = live["peaks"]["max_child"] / 1024, at_rest["peaks"]["max_child"] / 1024
    flat = child <= TARGET_WORKER_MIB and child <= rest_child + FLAT_MIB
    targets = [["live: last byte to done", f"{live['seconds']:.2f} s",
                f"<= one part ({one_part:.2f} s) + {TARGET_MARGIN_S:.0f} s", verdict(live["seconds"] <= limit)],
               ["(a) / live", f"{ratio:.1f}x", f">= {TARGET_VS_AT_REST:.0f}x", verdict(ratio >= TARGET_VS_AT_REST)],
               ["worker peak RSS, live (task child)", f"{child:.0f} MiB (at rest {rest_child:.0f})",
                f"<= {TARGET_WORKER_MIB} MiB, within {FLAT_MIB} of at rest", verdict(flat)]]
    timeline = "\n".join(f"* {name}, after the last byte (s): {after_last_byte(r)}"
                         for name, r in (("vuq live", live), ("(a)", at_rest), ("(b)", official)))
    notes = (f"finish_upload called {live['finish_call_s'] * 1000:.1f} ms after the last byte"
             + (f", refused {live['refused']} time(s) while the worker moved the cursor" if live["refused"] else ""))
    headers = ["uploader", "last byte to ready, s", "of it: last upload request, s",
               "peak RSS MiB (worker child / main)", "sha256"]
    return "\n\n".join([head, table(headers, rows), table(["target", "value", "target", "verdict"], targets),
                        timeline + "\n* " + notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=DEFAULT_SIZE_BYTES // MIB)
    parser.add_argument("--chunk-mib", type=int, default=DEFAULT_CHUNK_BYTES // MIB)
    parser.add_argument("--pace-mib", type=int, default=DEFAULT_PACE_BYTES // MIB, help="MiB written a second")
    parser.add_argument("--link-mib", type=float, default=0.0,
                        help="the emulator reads uploads no faster than this many MiB/s (0: loopback)")
    parser.add_argument("--log", action="store_true", help="also print the worker's log lines of the live job")
    args = parser.parse_args(argv)
    print(machine())
    results = run(args.size_mib * MIB, args.chunk_mib * MIB, args.pace_mib * MIB, args.link_mib)
    print(report(results))
    if args.log:
        print("\n".join(results["live"]["log"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
