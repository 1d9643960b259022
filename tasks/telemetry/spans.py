"""What the pipeline calls at its seams: a step, the job record it claimed, a request, an event, a job's
start and end. Each call costs a function call and a flag check while tracing is off; the
OpenTelemetry side (``tasks.telemetry.otel``) is imported the first time one is made with tracing on.

A step (``with step(task, job_id, chunk):``) notes when it began and which job it serves (JSON log lines
show both). Once it has read its job's record (``joined(record)``: the claim's read, no other round trip)
its span starts, back-dated to the step's beginning, as a direct child of the job's root span. Requests
(``with request(...) as call:``) are client spans beneath the step that makes them; ``event`` notes a
retry, a deferral, a reclaimed lease or a renewed token on the step's span.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tasks.telemetry import context as ctx
from tasks.telemetry import switch

if TYPE_CHECKING:
    from tasks.telemetry.otel import Tracing

log = logging.getLogger(__name__)
Attribute = str | int | float | bool


@dataclass(eq=False)
class StepState:
    """The step a thread runs: what logs and spans say of it."""

    task: str
    job_id: str
    chunk: int | None
    attempt: int
    began_ns: int
    span: Any = None  # the step's span, once joined (tracing on, sampled)
    ids: tuple[str, str] | None = None  # its (trace id, span id) in hex, for log lines
    attached: Any = None  # the OpenTelemetry context token while the span is current
    extra: dict[str, Attribute] = field(default_factory=dict)


_step: ContextVar[StepState | None] = ContextVar("vuq_step", default=None)
_tracing: Tracing | None = None
_tracing_pid: int | None = None
_secrets: tuple[str, ...] = ()
_lock = threading.Lock()
_failed_setup: list[str] = []


# -- switching on ----------------------------------------------------------------------------------
def enabled() -> bool:
    """Whether this process traces (``OTEL_*``, and the extra installed)."""
    return tracing() is not None


def tracing() -> Tracing | None:
    """This process's tracing, set up on first use (after a fork, anew); None when off or not installed."""
    if _tracing is not None and _tracing_pid == os.getpid():
        return _tracing
    if not switch.asked() or _failed_setup:
        return None
    return setup()


def setup(secrets: Iterable[str] | None = None, exporter: Any = None) -> Tracing | None:
    """Set tracing up in this process now (a pool process after fork, a threads or solo worker; producers
    do it lazily). ``secrets``: what never shows in a span, an event or the resource, besides every
    credential shape ``tasks.redact`` knows. ``exporter``: a span exporter to send to, synchronously,
    instead of those ``OTEL_TRACES_EXPORTER`` names (tests, benchmarks)."""
    global _tracing, _tracing_pid, _secrets
    if secrets is not None:
        _secrets = tuple(s for s in secrets if s)
    wanted = switch.asked()
    if (not wanted and exporter is None) or _failed_setup:
        return None
    with _lock:
        if _tracing is not None and _tracing_pid == os.getpid():
            return _tracing
        try:
            from tasks.telemetry.otel import Tracing  # imported only here, once tracing is on
        except ImportError as exc:
            _failed_setup.append(str(exc))
            log.warning("OTEL_* variables ask for traces, but vuq[otel] is not installed (%s); tracing is off "
                        "(pip install 'vuq[otel]')", exc)
            return None
        _tracing = Tracing(() if exporter is not None else wanted, _secrets, exporter)
        _tracing_pid = os.getpid()
    return _tracing


def shutdown() -> None:
    """Send what is buffered and stop (a pool process or a worker that ends)."""
    global _tracing
    current, _tracing = _tracing, None
    if current is not None and _tracing_pid == os.getpid():
        current.shutdown()


def forget() -> None:
    """Drop this process's tracing and read ``OTEL_*`` again on next use (tests)."""
    global _tracing, _tracing_pid
    if _tracing is not None and _tracing_pid == os.getpid():
        _tracing.shutdown()
    _tracing, _tracing_pid = None, None
    _failed_setup.clear()
    switch.forget()


# -- steps -----------------------------------------------------------------------------------------
class step:
    """``with step(task, job_id, chunk, attempt):`` around one pipeline step (a task execution)."""

    __slots__ = ("reset", "state")

    def __init__(self, task: str, job_id: str, chunk: int | None = None, attempt: int = 0) -> None:
        self.state = StepState(task, job_id, chunk, attempt, time.time_ns())

    def __enter__(self) -> StepState:
        self.reset = _step.set(self.state)
        return self.state

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.state.span is not None and _tracing is not None:
                _tracing.end_step(self.state, error)
        finally:
            _step.reset(self.reset)


def joined(job: ctx.TracedJob | None, chunk_bytes: int | None = None) -> None:
    """The running step read ``job``'s record: its span starts now (back-dated to the step's beginning), a
    child of the job's root. ``chunk_bytes``: the size of the chunk it sends, when known."""
    state = _step.get()
    if state is None or state.span is not None or job is None or job.job_id != state.job_id:
        return
    current = tracing()
    if current is not None:
        current.start_step(state, job, {"vuq.chunk.bytes": chunk_bytes} if chunk_bytes is not None else {})


def event(name: str, **attributes: Attribute | None) -> None:
    """Note ``name`` on the running step's span (a retry, a deferral, a renewed token)."""
    state = _step.get()
    if state is not None and state.span is not None and _tracing is not None:
        _tracing.event(state, name, attributes)


def current() -> StepState | None:
    """The running step, for another thread to note events on (``event_on``)."""
    return _step.get()


def event_on(state: StepState | None, name: str, **attributes: Attribute | None) -> None:
    """``event`` on ``state``'s span from another thread (the lease keeper)."""
    if state is not None and state.span is not None and _tracing is not None:
        _tracing.event(state, name, attributes)


def log_fields() -> dict[str, str | int]:
    """The job id, chunk, trace id and span id of the step this thread runs (those there are)."""
    state = _step.get()
    if state is None:
        return {}
    fields: dict[str, str | int] = {"job_id": state.job_id}
    if state.chunk is not None:
        fields["chunk"] = state.chunk
    if state.ids is not None:
        fields["trace_id"], fields["span_id"] = state.ids
    return fields


# -- requests ----------------------------------------------------------------------------------------
class _NoCall:
    """A request while nothing traces it."""

    __slots__ = ()

    def __enter__(self) -> _NoCall:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def answered(self, status: int, received: int | None = None, sent: int | None = None) -> None:
        return None


NO_CALL = _NoCall()


def request(peer: str, method: str, url: str, route: str | None = None, request_class: str | None = None) -> Any:
    """``with request("api.video", "POST", url, "/upload", "upload") as call: … call.answered(status, received,
    sent)``: a client span beneath the running step (not beneath another request: a source read while the
    upload streams is the step's child too). ``url`` must come masked (no query, no user info); every text
    is masked once more on the way out. An exception leaving the block ends the span in error."""
    state = _step.get()
    if state is None or state.span is None or _tracing is None:
        return NO_CALL
    return _tracing.request(state, peer, method, url, route, request_class)


# -- jobs --------------------------------------------------------------------------------------------
def job_started(job_id: str, parent: str | None = None) -> ctx.TraceFields:
    """The trace fields of a new job's record: its root's ``traceparent`` (a child of ``parent``, a
    traceparent from a message, else of the producer's current span, if any); ``{}`` when off."""
    current = tracing()
    if current is None:
        return {}
    return {"traceparent": current.new_job(job_id, parent).traceparent}


def job_ended(job: ctx.TracedJob, state: str, at: float | None, **attributes: Attribute | None) -> None:
    """``job`` ended in ``state`` at ``at`` (Redis's time of the write that ended it): its root span is sent,
    from the time the record was created to now."""
    current = tracing()
    if current is not None:
        current.end_job(job, state, at, attributes, _step.get())


def resumed(job: ctx.TracedJob) -> ctx.TraceFields:
    """The trace fields a resume writes: a new root for the run that starts, child of the one that ended.
    Plain Python, written whether this process traces or not (the workers may)."""
    return {"traceparent": ctx.resumed(job)}


def rescued(job: ctx.TracedJob, task: str, idle_s: float | None = None) -> None:
    """The janitor sent ``task`` for ``job``, which nobody had moved for ``idle_s`` (when known)."""
    current = tracing()
    if current is not None:
        current.rescue(job, task, idle_s)
