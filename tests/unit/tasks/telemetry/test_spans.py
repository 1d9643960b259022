"""Spans of a job run by the pipeline rig, collected by the SDK's in-memory exporter: one trace, the root
sent at the end with the ids its children named, every step a direct child of the root, client spans
beneath their step, events for retries, no secret anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tasks import telemetry
from tasks.constants import TASK_CHUNK, TASK_CLEANUP, TASK_FINALIZE, TASK_START, TASK_WEBHOOK
from tasks.job.record import State
from tasks.job.spec import UploadSpec
from tasks.job.store import JobStore
from tasks.pipeline.cleanup import clean_up
from tasks.pipeline.message import Step
from tasks.pipeline.operations import cancel, resume
from tasks.pipeline.outcomes import Attempt, Continue, Fail, Outcome, Retry, Stop
from tasks.pipeline.upload import Pipeline
from tests.unit.tasks.fakes import API_KEY, UPLOAD_TOKEN, FakeApiVideo
from tests.unit.tasks.rig import CHUNK, SIZE, Build, record

SECRETS = (UPLOAD_TOKEN, API_KEY)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """This process traces into memory for the test (as a worker would, with its secrets)."""
    telemetry.forget()
    exporter = InMemorySpanExporter()
    assert telemetry.setup(SECRETS, exporter=exporter) is not None
    yield exporter
    telemetry.forget()


def enqueue(store: JobStore, clip: Path, job_id: str = "j1", **spec: object) -> str:
    """What enqueue_upload writes (the broker aside): the record, with the trace the producer starts."""
    created = store.create(UploadSpec(str(clip), token=UPLOAD_TOKEN, job_id=job_id, **spec),  # type: ignore[arg-type]
                           **telemetry.job_started(job_id))
    assert created.created
    return job_id


def drive(pipeline: Pipeline, step: Step) -> list[Outcome]:
    """Run ``step`` and what follows it as the Celery adapters would, a retried step again at once."""
    outcomes: list[Outcome] = []
    retries = 0
    while step.task != TASK_WEBHOOK:
        outcome = pipeline.run(step, Attempt("task-1", retries))
        outcomes.append(outcome)
        if isinstance(outcome, Continue):
            step, retries = outcome.step, 0
        elif isinstance(outcome, Retry):
            retries += 1
        else:
            break
    return outcomes


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def the_root(spans: list[ReadableSpan]) -> ReadableSpan:
    roots = named(spans, "vuq.job")
    assert len(roots) == 1, [s.name for s in spans]
    return roots[0]


def everything(spans: list[ReadableSpan]) -> str:
    """Every span, event and resource as the exporter would show them."""
    return "\n".join(s.to_json() for s in spans)


def test_a_job_is_one_trace_whose_steps_are_children_of_its_root(spans: InMemorySpanExporter, build: Build,
                                                                  store: JobStore, clip: Path) -> None:
    enqueue(store, clip)
    drive(build(), Step(TASK_START, "j1"))
    job = record(store)
    assert job.state is State.DONE and job.traceparent
    finished = list(spans.get_finished_spans())
    root = the_root(finished)
    trace = telemetry.of_job(job)
    assert root.context is not None and root.parent is None
    assert (root.context.trace_id, root.context.span_id) == (trace.trace_id, trace.root_id)
    assert root.start_time == int(job.created_at * 1e9) and root.end_time == int((job.ended_at or 0) * 1e9)
    assert root.attributes is not None and root.attributes["vuq.job.state"] == "done"
    assert root.attributes["vuq.video.id"] == job.video_id and root.attributes["vuq.job.bytes"] == SIZE
    assert {s.context.trace_id for s in finished if s.context} == {trace.trace_id}

    steps = [s for s in finished if s.kind is SpanKind.CONSUMER]
    assert [s.name for s in steps] == [TASK_START, TASK_CHUNK, TASK_CHUNK, TASK_FINALIZE]
    assert all(s.parent is not None and s.parent.span_id == trace.root_id for s in steps)
    chunks = named(steps, TASK_CHUNK)
    assert [s.attributes["vuq.chunk.index"] for s in chunks if s.attributes] == [1, 2]
    assert [s.attributes["vuq.chunk.bytes"] for s in chunks if s.attributes] == [CHUNK, SIZE - 2 * CHUNK]
    assert all(s.attributes and s.attributes["vuq.job.id"] == "j1" and s.attributes["vuq.account"] == "default"
               for s in steps)

    step_ids = {s.context.span_id for s in steps if s.context}
    clients = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert all(s.parent is not None and s.parent.span_id in step_ids for s in clients)
    uploads = named(clients, "POST /upload")
    assert len(uploads) == 3 and all(u.attributes and u.attributes["http.response.status_code"] == 201
                                     for u in uploads)
    assert [u.attributes["vuq.request_class"] for u in uploads if u.attributes] == ["upload"] * 3
    assert sum(int(u.attributes["http.request.body.size"]) for u in uploads if u.attributes) > SIZE  # multipart
    assert {"POST /videos", "PATCH /videos/{videoId}", "POST /auth/api-key"} <= {s.name for s in clients}
    for secret in SECRETS:
        assert secret not in everything(finished)


def test_a_retry_is_an_event_and_the_retried_step_is_another_child_of_the_root(
        spans: InMemorySpanExporter, build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    enqueue(store, clip)
    fake.fail("POST", "/upload", 503, times=1)
    outcomes = drive(build(), Step(TASK_START, "j1"))
    assert any(isinstance(o, Retry) for o in outcomes) and record(store).state is State.DONE
    finished = list(spans.get_finished_spans())
    root_id = the_root(finished).context.span_id  # type: ignore[union-attr]
    starts = named(finished, TASK_START)
    assert len(starts) == 2 and all(s.parent and s.parent.span_id == root_id for s in starts)
    retried = [e for e in starts[0].events if e.name == "vuq.retry"]
    assert len(retried) == 1 and retried[0].attributes and retried[0].attributes["reason"] == "server_error"
    assert starts[1].attributes and starts[1].attributes["vuq.attempt"] == 1
    failed_upload = [s for s in named(finished, "POST /upload") if s.status.status_code is StatusCode.ERROR]
    assert len(failed_upload) == 1 and failed_upload[0].attributes
    assert failed_upload[0].attributes["http.response.status_code"] == 503


def test_a_budget_deferral_and_an_access_token_renewal_are_events_of_their_steps(
        spans: InMemorySpanExporter, build: Build, store: JobStore, clip: Path) -> None:
    enqueue(store, clip, chunk_size=CHUNK)  # pinned: the budget would fit the file into one chunk
    outcomes = drive(build(rate_limits={"upload": 1}), Step(TASK_START, "j1"))  # one upload a minute
    assert isinstance(outcomes[-1], Stop) and record(store).next_chunk == 1  # chunk 2 waits for the budget
    finished = list(spans.get_finished_spans())
    deferred = [e for s in named(finished, TASK_CHUNK) for e in s.events if e.name == "vuq.deferred"]
    assert len(deferred) == 1 and deferred[0].attributes
    assert (deferred[0].attributes["reason"], deferred[0].attributes["request_class"]) == ("budget", "upload")
    assert float(deferred[0].attributes["delay_s"]) > 0
    renewed = [e for s in named(finished, TASK_START) for e in s.events if e.name == "vuq.access_token.renewed"]
    assert len(renewed) == 1 and renewed[0].attributes and int(renewed[0].attributes["valid_s"]) > 0


def test_a_job_enqueued_inside_a_span_continues_that_trace(spans: InMemorySpanExporter, build: Build,
                                                           store: JobStore, clip: Path) -> None:
    producer = TracerProvider().get_tracer("a-producer")  # the producer's own OpenTelemetry, not vuq's
    with producer.start_as_current_span("POST /talks") as request:
        enqueue(store, clip)
    drive(build(), Step(TASK_START, "j1"))
    root = the_root(list(spans.get_finished_spans()))
    assert root.context and root.context.trace_id == request.get_span_context().trace_id
    assert root.parent is not None and root.parent.span_id == request.get_span_context().span_id


def test_a_failed_job_sends_its_root_in_error_and_a_resumed_run_is_a_root_beneath_it(
        spans: InMemorySpanExporter, build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    enqueue(store, clip)
    fake.fail("POST", "/upload", 400, "invalid-attribute", times=1)
    outcomes = drive(build(), Step(TASK_START, "j1"))
    assert isinstance(outcomes[-1], Fail) and record(store).state is State.FAILED
    first = the_root(list(spans.get_finished_spans()))
    assert first.status.status_code is StatusCode.ERROR and first.attributes
    assert first.attributes["vuq.job.state"] == "failed"
    start = named(list(spans.get_finished_spans()), TASK_START)[0]
    assert start.status.status_code is StatusCode.ERROR

    spans.clear()
    sent: list[Step] = []
    step = resume(store, "j1", sent.append)
    drive(build(), step)
    assert record(store).state is State.DONE
    finished = list(spans.get_finished_spans())
    second = the_root(finished)
    assert first.context and second.context and second.context.trace_id == first.context.trace_id
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert second.context.span_id != first.context.span_id
    assert all(s.parent and s.parent.span_id == second.context.span_id for s in finished
               if s.kind is SpanKind.CONSUMER)


def test_a_cancelled_job_sends_its_root_from_the_process_that_cancelled_it(
        spans: InMemorySpanExporter, store: JobStore, clip: Path) -> None:
    enqueue(store, clip)
    cancel(store, "j1")
    root = the_root(list(spans.get_finished_spans()))
    assert root.attributes and root.attributes["vuq.job.state"] == "cancelled"


def test_the_cleanup_of_a_cancelled_job_is_another_child_of_its_root(
        spans: InMemorySpanExporter, build: Build, store: JobStore, fake: FakeApiVideo, clip: Path) -> None:
    enqueue(store, clip, chunk_size=CHUNK)
    pipeline = build()
    assert isinstance(pipeline.run(Step(TASK_START, "j1"), Attempt("task-1", 0)), Continue)  # a video, chunk 1 sent
    cancel(store, "j1")
    with telemetry.step(TASK_CLEANUP, "j1"):  # as the vuq.job.cleanup task runs it
        assert clean_up(store, pipeline.keyring, "j1") is None  # type: ignore[arg-type]
    finished = list(spans.get_finished_spans())
    root = the_root(finished)
    (cleanup,) = named(finished, TASK_CLEANUP)
    assert cleanup.parent and root.context and cleanup.parent.span_id == root.context.span_id
    (deleted,) = named(finished, "DELETE /videos/{videoId}")
    assert deleted.parent and cleanup.context and deleted.parent.span_id == cleanup.context.span_id
    assert record(store).cleanup and record(store).cleanup.startswith("video vi")  # type: ignore[union-attr]


def test_log_fields_name_the_step_its_job_chunk_trace_and_span(spans: InMemorySpanExporter, store: JobStore,
                                                               clip: Path) -> None:
    enqueue(store, clip)
    with telemetry.step(TASK_CHUNK, "j1", 2):
        assert telemetry.log_fields() == {"job_id": "j1", "chunk": 2}  # before the record is read
        telemetry.joined(record(store))
        fields = telemetry.log_fields()
    assert telemetry.log_fields() == {}
    trace = telemetry.of_job(record(store))
    assert fields["trace_id"] == trace.trace_hex and len(str(fields["span_id"])) == 16
    assert named(list(spans.get_finished_spans()), TASK_CHUNK)[0].context.span_id == int(  # type: ignore[union-attr]
        str(fields["span_id"]), 16)


def test_an_unsampled_trace_sends_nothing(monkeypatch: pytest.MonkeyPatch, build: Build, store: JobStore,
                                          clip: Path) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry.forget()
    exporter = InMemorySpanExporter()
    telemetry.setup(SECRETS, exporter=exporter)
    try:
        enqueue(store, clip)
        assert record(store).traceparent and str(record(store).traceparent).endswith("-00")
        drive(build(), Step(TASK_START, "j1"))
        assert record(store).state is State.DONE and exporter.get_finished_spans() == ()
    finally:
        telemetry.forget()


def test_with_tracing_off_a_job_records_no_trace_and_steps_make_no_span(build: Build, store: JobStore,
                                                                         clip: Path) -> None:
    telemetry.forget()
    assert not telemetry.enabled() and telemetry.job_started("j1") == {}
    enqueue(store, clip)
    drive(build(), Step(TASK_START, "j1"))
    assert record(store).state is State.DONE and record(store).traceparent is None
    with telemetry.step(TASK_CHUNK, "j1", 0) as state:
        telemetry.joined(record(store))
        assert state.span is None and telemetry.request("api.video", "GET", "u") is telemetry.NO_CALL


@pytest.mark.parametrize(("env", "name"), [({}, "vuq"), ({"OTEL_SERVICE_NAME": "uploads"}, "uploads"),
                                           ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=media"}, "media")])
def test_the_service_is_vuq_unless_the_otel_variables_name_it(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                              name: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    telemetry.forget()
    try:
        tracing = telemetry.setup((), exporter=InMemorySpanExporter())
        assert tracing is not None and tracing.provider.resource.attributes["service.name"] == name
    finally:
        telemetry.forget()


def test_resource_attributes_are_redacted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"deployment.environment=prod,note=key {API_KEY} t={UPLOAD_TOKEN}")
    telemetry.forget()
    try:
        tracing = telemetry.setup(SECRETS, exporter=InMemorySpanExporter())
        assert tracing is not None
        shown = str(dict(tracing.provider.resource.attributes))
    finally:
        telemetry.forget()
    assert "prod" in shown and API_KEY not in shown and UPLOAD_TOKEN not in shown
