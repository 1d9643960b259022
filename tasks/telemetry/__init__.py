"""Traces of jobs, and the step a log line belongs to: OpenTelemetry, opt-in (``pip install 'vuq[otel]'``).

One trace per job. Its root span covers the job from its creation to its end and is sent when it ends;
every step (start, each chunk, finalize, the webhook, the cleanup, a janitor's rescue) is a direct child
of it, whichever worker runs the step, after any crash, redelivery or deferral; api.video, source and
callback requests are client spans beneath their step; retries, deferrals, reclaimed leases and renewed
tokens are events. The record keeps the root's W3C ``traceparent`` (``tasks.telemetry.context``).
Configured by the standard ``OTEL_*`` variables only (``tasks.telemetry.switch``).

Rule of this room: it imports only the base (``tasks.constants``, ``tasks.errors``, ``tasks.redact``),
and every room may import it. ``opentelemetry`` is imported by ``tasks.telemetry.otel`` alone, and that
module only once tracing is on: with tracing off, or without the extra, no module of opentelemetry is
loaded and each call is a flag check. Nothing here sees a secret it could put in a span: URLs come
masked, and every text attribute is redacted once more on the way out.
"""

from tasks.telemetry.context import TRACEPARENT_FIELD, JobTrace, incoming_traceparent, of_job
from tasks.telemetry.spans import (
    NO_CALL,
    StepState,
    current,
    enabled,
    event,
    event_on,
    forget,
    job_ended,
    job_started,
    joined,
    log_fields,
    request,
    rescued,
    resumed,
    setup,
    shutdown,
    step,
    tracing,
)

__all__ = ["NO_CALL", "TRACEPARENT_FIELD", "JobTrace", "StepState", "current", "enabled", "event", "event_on",
           "forget", "incoming_traceparent", "job_ended", "job_started", "joined", "log_fields", "of_job", "request",
           "rescued", "resumed", "setup", "shutdown", "step", "tracing"]
