"""The OpenTelemetry side of vuq's traces: the one module that imports opentelemetry, and only once tracing
is on (``tasks.telemetry.spans``).

Configuration is OpenTelemetry's own, from the standard variables: the exporter (``OTEL_TRACES_EXPORTER``:
``otlp`` over HTTP/protobuf, or ``console``), its endpoint, headers, timeout and TLS
(``OTEL_EXPORTER_OTLP_*``), the sampler (``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), the resource
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) and the batching (``OTEL_BSP_*``). vuq's provider is
its own, not the global one, so a producer that set up OpenTelemetry for itself keeps its own; vuq reads
that producer's current span to continue its trace.

The job's root span is made with the SDK's public pieces: its ids are fixed long before it ends (every
step names it as parent), so when it is sent the provider's id generator hands out exactly those ids
(``PinnedIds``) and the span starts at the time the record was created.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from tasks.redact import redact
from tasks.telemetry import context as ctx
from tasks.telemetry.spans import Attribute, StepState

log = logging.getLogger(__name__)
SCOPE = "vuq"
SERVICE_NAME = "vuq"  # unless OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says otherwise
MAX_TEXT = 512  # of an error message in a status or an event
ROOT_NAME = "vuq.job"
RESCUE_NAME = "vuq.janitor.rescue"


class PinnedIds(IdGenerator):
    """Random ids, except those pinned for the span being made in this thread (a job's root)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._pinned = threading.local()

    @contextmanager
    def pinned(self, trace_id: int, span_id: int) -> Iterator[None]:
        self._pinned.ids = (trace_id, span_id)
        try:
            yield
        finally:
            self._pinned.ids = None

    def generate_span_id(self) -> int:
        ids = getattr(self._pinned, "ids", None)
        return ids[1] if ids else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        ids = getattr(self._pinned, "ids", None)
        return ids[0] if ids else self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True  # random, or (a record without one) the first 128 bits of a SHA-256


class Tracing:
    """One process's tracer provider, exporters and the spans of its steps."""

    def __init__(self, exporters: tuple[str, ...], secrets: tuple[str, ...] = (),
                 exporter: SpanExporter | None = None) -> None:
        self.secrets = list(secrets)
        self.ids = PinnedIds()
        self.provider = TracerProvider(resource=self._resource(), id_generator=self.ids)
        for name in exporters:
            named = _exporter(name)
            if named is not None:
                self.provider.add_span_processor(BatchSpanProcessor(named))
        if exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer(SCOPE, _version())

    def shutdown(self) -> None:
        self.provider.shutdown()

    def force_flush(self, timeout_ms: int = 5000) -> bool:
        return self.provider.force_flush(timeout_ms)

    # -- jobs ----------------------------------------------------------------------------------------
    def new_job(self, job_id: str, parent: str | None) -> ctx.JobTrace:
        """A new job's trace: under ``parent`` (a traceparent), else the current span, else its own."""
        parsed = ctx.parse_traceparent(parent) if parent else None
        if parsed is None:
            here = trace.get_current_span().get_span_context()
            if here.is_valid:
                parsed = (here.trace_id, here.span_id, here.trace_flags.sampled)
        if parsed is not None:
            return ctx.under(job_id, *parsed)
        trace_id = self.ids.generate_trace_id()
        return ctx.new_trace(job_id, self._sampled(trace_id), trace_id)

    def end_job(self, job: ctx.TracedJob, state: str, at: float | None, attributes: Mapping[str, Any],
                running: StepState | None) -> None:
        """Send the root span of ``job``, which ended in ``state``: from its creation to ``at``."""
        found = self._trace(job)
        end_ns = int((at or time.time()) * 1e9)
        failed = state == "failed"
        if running is not None and running.span is not None and running.job_id == job.job_id and failed:
            running.span.set_status(Status(StatusCode.ERROR, self._text(getattr(job, "error", None) or state)))
        if not found.sampled:
            return
        parent = self._remote(found.trace_id, found.parent_id, True) if found.parent_id else otel_context.Context()
        with self.ids.pinned(found.trace_id, found.root_id):
            root = self.tracer.start_span(ROOT_NAME, context=parent, kind=SpanKind.INTERNAL,
                                          start_time=int((job.created_at or at or time.time()) * 1e9))
        root.set_attributes(self._clean({**job_attributes(job), "vuq.job.state": state, **attributes}))
        if failed:
            reason = getattr(job, "error_reason", None)
            root.set_status(Status(StatusCode.ERROR, self._text(f"{reason or 'failed'}: "
                                                                f"{getattr(job, 'error', None) or ''}")))
        root.end(end_time=max(end_ns, int(job.created_at * 1e9)))

    def rescue(self, job: ctx.TracedJob, task: str, idle_s: float | None) -> None:
        found = self._trace(job)
        if not found.sampled:
            return
        span = self.tracer.start_span(RESCUE_NAME, context=self._remote(found.trace_id, found.root_id, True),
                                      kind=SpanKind.INTERNAL)
        idle = {"vuq.idle_s": round(idle_s, 3)} if idle_s is not None else {}
        span.set_attributes(self._clean({**job_attributes(job), "vuq.task": task, **idle}))
        span.end()

    # -- steps ---------------------------------------------------------------------------------------
    def start_step(self, state: StepState, job: ctx.TracedJob, attributes: Mapping[str, Any]) -> None:
        found = self._trace(job)
        if not found.sampled:
            return
        span = self.tracer.start_span(state.task, context=self._remote(found.trace_id, found.root_id, True),
                                      kind=SpanKind.CONSUMER, start_time=state.began_ns)
        if not span.is_recording():
            return
        step_attributes: dict[str, Any] = {**job_attributes(job), "vuq.task": state.task, "vuq.attempt": state.attempt}
        if state.chunk is not None:
            step_attributes["vuq.chunk.index"] = state.chunk
        span.set_attributes(self._clean({**step_attributes, **attributes}))
        context = span.get_span_context()
        state.span, state.ids = span, (f"{context.trace_id:032x}", f"{context.span_id:016x}")
        state.attached = otel_context.attach(trace.set_span_in_context(span))

    def end_step(self, state: StepState, error: BaseException | None) -> None:
        span, state.span = state.span, None
        if state.attached is not None:
            with suppress(Exception):  # detached in another context already: the span still ends
                otel_context.detach(state.attached)
            state.attached = None
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, self._text(f"{type(error).__name__}: {error}")))
        span.end()

    def event(self, state: StepState, name: str, attributes: Mapping[str, Attribute | None]) -> None:
        span = state.span
        if span is not None:
            span.add_event(name, self._clean({k: v for k, v in attributes.items() if v is not None}))

    def request(self, state: StepState, peer: str, method: str, url: str, route: str | None,
                request_class: str | None) -> Call:
        attributes: dict[str, Any] = {"http.request.method": method, "url.full": url, "vuq.peer": peer}
        if route:
            attributes["url.template"] = route
        if request_class:
            attributes["vuq.request_class"] = request_class
        name = f"{method} {route or peer}"
        span = self.tracer.start_span(name, context=trace.set_span_in_context(state.span), kind=SpanKind.CLIENT,
                                      attributes=self._clean(attributes))
        return Call(span, self)

    # -- helpers -------------------------------------------------------------------------------------
    def _trace(self, job: ctx.TracedJob) -> ctx.JobTrace:
        found = ctx.of_job(job)
        if found.sampled is None:  # a record that names no trace: the sampler decides, the same everywhere
            return ctx.JobTrace(found.trace_id, found.root_id, found.parent_id, self._sampled(found.trace_id))
        return found

    def _sampled(self, trace_id: int) -> bool:
        decision = self.provider.sampler.should_sample(otel_context.Context(), trace_id, ROOT_NAME)
        return decision.decision.is_sampled()

    @staticmethod
    def _remote(trace_id: int, span_id: int, sampled: bool) -> otel_context.Context:
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        parent = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags))
        return trace.set_span_in_context(parent, otel_context.Context())

    def _text(self, text: str) -> str:
        return redact(str(text), self.secrets)[:MAX_TEXT]

    def _clean(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Attributes as they may leave: text redacted (known secrets and every credential shape)."""
        return {k: self._text(v) if isinstance(v, str) else v for k, v in attributes.items() if v is not None}

    def _resource(self) -> Resource:
        detected = Resource.create({"service.version": _version()})  # with OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(detected.attributes.get("service.name", "unknown_service")).startswith("unknown_service"):
            detected = detected.merge(Resource({"service.name": SERVICE_NAME}))
        cleaned = {k: self._text(v) if isinstance(v, str) else v for k, v in detected.attributes.items()}
        return Resource(cleaned, detected.schema_url)


class Call:
    """One request's client span: ``answered`` notes the status and bytes; an exception ends it in error."""

    __slots__ = ("span", "tracing")

    def __init__(self, span: Any, tracing: Tracing) -> None:
        self.span, self.tracing = span, tracing

    def __enter__(self) -> Call:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if error is not None:
            self.span.set_attribute("error.type", type(error).__name__)
            self.span.set_status(Status(StatusCode.ERROR, self.tracing._text(type(error).__name__)))
        self.span.end()

    def answered(self, status: int, received: int | None = None, sent: int | None = None) -> None:
        self.span.set_attribute("http.response.status_code", status)
        if received is not None:
            self.span.set_attribute("http.response.body.size", received)
        if sent is not None:
            self.span.set_attribute("http.request.body.size", sent)
        if status >= 400:
            self.span.set_attribute("error.type", str(status))
            self.span.set_status(Status(StatusCode.ERROR))


def job_attributes(job: ctx.TracedJob) -> dict[str, Any]:
    """What every span of a job names: its id, video, account and tenant (those known)."""
    attributes: dict[str, Any] = {"vuq.job.id": job.job_id}
    video_id = getattr(job, "video_id", None)
    if video_id:
        attributes["vuq.video.id"] = video_id
    whose = getattr(job, "whose", None)
    if whose:
        attributes["vuq.account"], attributes["vuq.tenant"] = whose
    for name, attribute in (("size", "vuq.job.bytes"), ("chunks_total", "vuq.job.chunks")):
        value = getattr(job, name, None)
        if value:
            attributes[attribute] = value
    return attributes


def _exporter(name: str) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s: vuq sends traces with otlp or console; %s ignored", name, name)
        return None
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc; vuq[otel] "
                        "sends http/protobuf (port 4318): no traces are sent")
            return None
        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _version() -> str:
    try:
        return metadata.version("vuq")
    except metadata.PackageNotFoundError:
        return "unknown"
