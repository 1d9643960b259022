"""Traces of real workers, collected by a local OTLP/HTTP receiver: a multi-chunk job from an http source
(a presigned-style URL) with a completion webhook, during which the worker sending a chunk is SIGKILLed
and the janitor continues the job. One trace, one root, every step a direct child of the root, client
spans beneath the steps, no secret in any span, event or resource; JSON log lines name the trace."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import telemetry
from tasks.constants import MIB, TASK_CHUNK, TASK_FINALIZE, TASK_START, TASK_WEBHOOK
from tasks.job.record import State
from tests.support.otlp import Receiver, Span, receiving_traces, svg, tree
from tests.support.range_server import serving
from tests.support.receiver import receiving
from tests.support.stack import API_KEY, Stack, running_stack
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
WEBHOOK_SECRET = "whsec-traces-7d1f0c9b2a"
SIGNATURE, CREDENTIAL = "sig-f00dfeed1234", "cred-0a1b2c3d4e"
CHUNKS = 6


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """The receiver, and OTEL_* variables pointing at it: for this process (the producer) and, through
    the environment they inherit, for the workers and beat."""
    with receiving_traces() as receiver:
        for name, value in {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                            "OTEL_SERVICE_NAME": "vuq-traces-test", "OTEL_BSP_SCHEDULE_DELAY": "100"}.items():
            monkeypatch.setenv(name, value)
        telemetry.forget()
        try:
            yield receiver
        finally:
            telemetry.forget()


def kill_the_worker_sending_a_chunk(stack: Stack, job_id: str) -> int:
    """SIGKILL the worker (main process and pool) that holds the job's lease while a chunk is in flight, once
    it has held it a second (its spans of earlier steps have been sent); the chunk it was sending."""
    def holding() -> tuple[str, int] | None:
        job, holder = stack.store.get(job_id), stack.store.lease_holder(job_id)
        return (holder, job.next_chunk) if job and holder and 2 <= job.next_chunk < CHUNKS else None

    while True:
        holder, chunk = wait_for(holding, 60, "a chunk in flight")
        time.sleep(1.0)
        if holding() == (holder, chunk):
            break
    pid = holder.split(":")[1]
    victim = next(w for w in stack.workers if w.alive and pid in _pids(w.proc.pid))
    victim.kill()
    return chunk


def _pids(pid: int) -> set[str]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {str(pid), *(children.read_text().split() if children.exists() else [])}


def test_a_job_whose_worker_was_killed_is_one_trace_of_direct_children(otlp: Receiver, tmp_path: Path,
                                                                       redis_url: str) -> None:
    (tmp_path / "logs").mkdir()
    with receiving() as hooks, running_stack(tmp_path, redis_url, workers=2, concurrency=1, VUQ_LOG_FORMAT="json",
                                             VUQ_LEASE_TTL_S="5", VUQ_STALE_AFTER_S="10", VUQ_JANITOR_INTERVAL_S="2",
                                             VUQ_WEBHOOK_SECRET=WEBHOOK_SECRET) as stack:
        path, digest = stack.file("traced.mp4", (CHUNKS - 1) * 5 * MIB + 12345, seed=88)
        token = stack.emulator.create_upload_token()
        stack.add_beat()
        with serving(path.parent) as base:
            source = f"{base}/{path.name}?X-Amz-Signature={SIGNATURE}&X-Amz-Credential={CREDENTIAL}"
            stack.emulator.set_faults(latency_ms=[2000, 2000])  # a chunk stays in flight long enough to be caught
            job_id = stack.enqueue(source, token=token, chunk_size="5MiB", callback_url=hooks.url,
                                   video={"title": "traced"})
            killed = kill_the_worker_sending_a_chunk(stack, job_id)
            stack.emulator.set_faults(latency_ms=[0, 0])
            job = stack.wait_final(job_id, timeout_s=120)
            wait_for(lambda: hooks.requests, 30, "the completion webhook")
        assert job.state == State.DONE, job.error
        assert stack.emulator.video(job.video_id)["sha256"] == digest
        stack.stop_workers()  # a graceful stop sends what the survivors' spans buffered
        logs = stack.logs()

    trace = telemetry.of_job(job)
    spans = wait_for(lambda: _job_spans(otlp, job_id) if _webhook_done(otlp, job_id) else None, 30, "the spans")
    print(tree([s for s in otlp.collected() if s.trace_id == trace.trace_hex]))  # pytest -s shows it
    if os.environ.get("VUQ_TRACE_PICTURE"):  # docs/trace.svg was drawn so
        Path(os.environ["VUQ_TRACE_PICTURE"]).write_text(svg(
            [s for s in otlp.collected() if s.trace_id == trace.trace_hex],
            f"one job of {CHUNKS} chunks; the worker sending chunk #{killed} SIGKILLed, the janitor continues"))
    assert {s.trace_id for s in spans} == {trace.trace_hex}, "one trace"
    assert job.public()["trace_id"] == trace.trace_hex  # vuq status shows where to look
    everything = [s for s in otlp.collected() if s.trace_id == trace.trace_hex]
    roots = [s for s in everything if not s.parent_id]
    assert len(roots) == 1, [(s.name, s.span_id) for s in roots]
    root = roots[0]
    assert (root.name, root.span_id) == ("vuq.job", f"{trace.root_id:016x}")
    assert root.attributes["vuq.job.state"] == "done" and root.attributes["vuq.video.id"] == job.video_id
    assert root.start_ns == int(job.created_at * 1e9) and root.end_ns >= root.start_ns

    steps = [s for s in everything if s.kind == "consumer" or s.name == "vuq.janitor.rescue"]
    assert all(s.parent_id == root.span_id for s in steps), [(s.name, s.parent_id) for s in steps]
    names = [s.name for s in steps]
    assert {TASK_START, TASK_CHUNK, TASK_FINALIZE, TASK_WEBHOOK, "vuq.janitor.rescue"} <= set(names), names
    chunks = sorted({s.attributes["vuq.chunk.index"] for s in steps if s.name == TASK_CHUNK})
    assert chunks == list(range(1, CHUNKS)) and killed in chunks, (chunks, killed)
    assert all(s.attributes["vuq.job.id"] == job_id for s in steps)

    step_ids = {s.span_id for s in steps}
    clients = [s for s in everything if s.kind == "client"]
    # beneath a step; the requests the killed step made before the kill went out, its own span never ended
    orphans = {s.parent_id for s in clients if s.parent_id not in step_ids}
    assert clients and len(orphans) <= 1 and root.span_id not in orphans
    kinds = {s.name for s in clients}
    assert {"POST /upload", "GET source", "POST callback", "PATCH /videos/{videoId}"} <= kinds, kinds
    uploads = [s for s in clients if s.name == "POST /upload"]
    assert all(s.attributes["vuq.request_class"] == "upload" and "http.response.status_code" in s.attributes
               for s in uploads)
    assert all(s.attributes["url.full"].endswith(f"/{path.name}?***") for s in clients if s.name == "GET source")
    assert {s.resource.get("service.name") for s in everything} == {"vuq-traces-test"}

    secrets = [token, API_KEY, WEBHOOK_SECRET, SIGNATURE, CREDENTIAL]
    assert [secret for secret in secrets if secret in otlp.text()] == []

    lines = [json.loads(line[line.index("{"):]) for line in logs.splitlines() if '"trace_id"' in line]
    ours = [entry for entry in lines if entry.get("job_id") == job_id]
    assert ours and all(entry["trace_id"] == trace.trace_hex for entry in ours)
    assert {entry["span_id"] for entry in ours} & step_ids  # a log line leads to its step's span


def _job_spans(otlp: Receiver, job_id: str) -> list[Span] | None:
    spans = [s for s in otlp.collected() if s.attributes.get("vuq.job.id") == job_id]
    return spans if any(s.name == "vuq.job" for s in spans) else None


def _webhook_done(otlp: Receiver, job_id: str) -> bool:
    return any(s.name == TASK_WEBHOOK and s.attributes.get("vuq.job.id") == job_id for s in otlp.collected())



@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_threads_and_solo_workers_trace_in_their_own_process(otlp: Receiver, tmp_path: Path, redis_url: str,
                                                             pool: str) -> None:
    (tmp_path / "logs").mkdir()
    with running_stack(tmp_path, redis_url, workers=1, concurrency=2 if pool == "threads" else 1,
                       pool=pool) as stack:
        path, _ = stack.file("small.mp4", 2 * 5 * MIB + 7, seed=3)
        job = stack.wait_final(stack.enqueue(path, chunk_size="5MiB"), timeout_s=60)
        assert job.state == State.DONE, job.error
        spans = wait_for(lambda: _job_spans(otlp, job.job_id), 30, "the spans")
    trace = telemetry.of_job(job)
    root = next(s for s in spans if s.name == "vuq.job")
    steps = [s for s in spans if s.kind == "consumer"]
    assert {s.trace_id for s in spans} == {trace.trace_hex} and not root.parent_id
    assert [s.name for s in sorted(steps, key=lambda s: s.start_ns)] == [TASK_START, TASK_CHUNK, TASK_CHUNK,
                                                                          TASK_FINALIZE]
    assert all(s.parent_id == root.span_id for s in steps)
