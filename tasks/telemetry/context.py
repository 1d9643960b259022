"""A job's trace context, in plain Python (no OpenTelemetry): the W3C ``traceparent`` its record keeps.

The record keeps one field, ``traceparent``: the W3C context of the job's root span
(``00-<trace id>-<root span id>-<flags>``), written when the job is created (``enqueue_upload``,
``enqueue_many``, a spec arriving by ``send_task``). Every step reads it from the record it claims
and names the root as its parent, so each step is a direct child of the root, whichever worker runs
it. The root span itself is sent only when the job ends, with the start time the record noted.

The root's own parent is not stored: it is recoverable from the root's id. A job's root ids are the
orbit of an invertible map of 64-bit ids, keyed by the trace id and the job id (``_Keyed``)::

    root of a job nobody traced before it         = key.next(0)         (no parent)
    root of a job enqueued inside span P          = key.next(P)         (parent: P, the producer's span)
    root of a job resumed after its run R ended   = key.next(R)         (parent: R, the run before)

so at the end ``key.previous(root)`` is 0 (no parent) or the parent's span id. The map is an affine
map modulo 2**64 that goes through every id once before it repeats (Hull-Dobell), so a job resumed
any number of times never gets a root id it had before.

A record without the field (a producer that did not trace, a job older than tracing) still has a trace:
one derived from its job id and creation time, the same in every process.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Protocol, TypedDict

TRACEPARENT_FIELD = "traceparent"
MASK64 = (1 << 64) - 1
_OURS = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", re.ASCII)
# W3C Trace Context: a version we do not know may add fields after ours; "ff" is never valid.
_THEIRS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?", re.ASCII)
SAMPLED = 0x01


class TraceFields(TypedDict, total=False):
    """The fields tracing writes in a job record: none while off."""

    traceparent: str


class TracedJob(Protocol):
    """What tracing reads of a job record (``tasks.job.JobRecord`` is one)."""

    @property
    def job_id(self) -> str: ...
    @property
    def traceparent(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...


@dataclass(frozen=True)
class JobTrace:
    """Where a job's spans go: its trace, its root span, the root's parent (None: the root is the
    trace's root) and whether the trace is sampled (None: not decided yet, the sampler decides)."""

    trace_id: int
    root_id: int
    parent_id: int | None
    sampled: bool | None

    @property
    def traceparent(self) -> str:
        """The root's W3C context, as the record keeps it."""
        return format_traceparent(self.trace_id, self.root_id, self.sampled is not False)

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"


class _Keyed:
    """The invertible map of one job's root ids: ``x -> a*x + b (mod 2**64)``, a and b from a hash of the
    trace id and the job id, ``a % 4 == 1`` and ``b`` odd: one cycle through all 2**64 ids."""

    def __init__(self, trace_id: int, job_id: str) -> None:
        digest = hashlib.sha256(f"vuq-root:{trace_id:032x}:{job_id}".encode()).digest()
        self.a = ((int.from_bytes(digest[:8], "big") << 2) | 1) & MASK64
        self.b = int.from_bytes(digest[8:16], "big") | 1
        self.a_inverse = pow(self.a, -1, 1 << 64)

    def next(self, parent_id: int) -> int:
        return (self.a * parent_id + self.b) & MASK64

    def previous(self, root_id: int) -> int:
        return ((root_id - self.b) * self.a_inverse) & MASK64


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{SAMPLED if sampled else 0:02x}"


def parse_traceparent(value: object) -> tuple[int, int, bool] | None:
    """(trace id, span id, sampled) of a traceparent vuq wrote; None for anything else."""
    if not isinstance(value, str) or not (match := _OURS.fullmatch(value)):
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(int(match.group(3), 16) & SAMPLED)


def incoming_traceparent(value: object) -> str | None:
    """A ``traceparent`` from outside (a message another service sent, Celery's instrumentation puts it
    in the headers), checked as W3C Trace Context says and written back as version 00; None if invalid."""
    if not isinstance(value, str) or len(value) > 512 or not (match := _THEIRS.fullmatch(value.strip())):
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if not int(trace, 16) or not int(span, 16):
        return None
    return format_traceparent(int(trace, 16), int(span, 16), bool(int(flags, 16) & SAMPLED))


def new_trace(job_id: str, sampled: bool | None, trace_id: int | None = None) -> JobTrace:
    """A job whose trace starts here."""
    trace_id = trace_id or (secrets.randbits(128) or 1)
    return JobTrace(trace_id, _Keyed(trace_id, job_id).next(0) or 1, None, sampled)


def under(job_id: str, trace_id: int, parent_id: int, sampled: bool) -> JobTrace:
    """A job whose root is a child of span ``parent_id`` (the producer's, or the run it resumes)."""
    return JobTrace(trace_id, _Keyed(trace_id, job_id).next(parent_id) or 1, parent_id, sampled)


def of_job(job: TracedJob) -> JobTrace:
    """The trace of ``job`` as its record says (or derived, for a record that names none)."""
    parsed = parse_traceparent(job.traceparent)
    if parsed is None:
        seed = hashlib.sha256(f"vuq-trace:{job.job_id}:{job.created_at:.6f}".encode()).digest()
        return new_trace(job.job_id, sampled=None, trace_id=int.from_bytes(seed[:16], "big") or 1)
    trace_id, root_id, sampled = parsed
    parent = _Keyed(trace_id, job.job_id).previous(root_id)
    return JobTrace(trace_id, root_id, parent or None, sampled)


def resumed(job: TracedJob) -> str:
    """The ``traceparent`` of a resumed job's next run: a new root, child of the root of the run that ended
    (sent when it ended), in the same trace."""
    current = of_job(job)
    return under(job.job_id, current.trace_id, current.root_id, current.sampled is not False).traceparent
