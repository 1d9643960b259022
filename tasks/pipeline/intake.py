"""What arrives in messages from other services, checked before it touches anything.

* **Steps** (``vuq.upload.chunk`` and the others): keyword arguments of the right types only, a job id
  that matches the documented pattern whole, a chunk a whole number (``checked_message``). Anything else
  is refused and kept apart by message id (``refuse_message``): never a record under that id, never a
  member of the deferred-step set.
* **Specs** (``send_task("vuq.upload.start", kwargs=spec)``, Flower's API): stored as a job, the token
  moved into the record at once (``accept_spec``). A spec that fails validation holds the id it claims
  (its ``job_id``, else its message id) when that id is a valid one: a failed record naming the field,
  whose spec never matches a later enqueue under that id (that enqueue is refused as a conflict, never
  silently taken for it). What either keeps is bounded and masked: the source (masked, at most 4 KiB),
  the error (at most 512 characters), the names of unknown fields, never their values. A rejected spec
  under an id already in use, or under no valid id, holds nothing: it is kept apart by message id.
  The same id with the same spec is the same job (a replayed message changes nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from typing import Any

from tasks.errors import BadMessage, JobFailed, SpecError
from tasks.job.record import State
from tasks.job.spec import SPEC_FIELDS, UploadSpec, is_job_id, parse_spec
from tasks.job.store import JobStore
from tasks.pipeline.message import Step, checked_step
from tasks.pipeline.upload import Pipeline
from tasks.redact import mask_secrets, mask_url
from tasks.telemetry import job_started

log = logging.getLogger(__name__)
MAX_SHOWN_SOURCE_CHARS = 4096
MAX_ERROR_CHARS = 512
MAX_KEPT_CHARS = 8192  # what a rejection keeps of the message
MAX_KEPT_FIELD_CHARS = 256
REJECTED_FINGERPRINT = "rejected"  # no spec's fingerprint: a later enqueue under the id conflicts


def checked_message(task: str, args: tuple[Any, ...], kwargs: dict[str, Any], takes: tuple[str, ...]) -> Step:
    """The step a task's message asks for; ``BadMessage`` when vuq could not have written it."""
    if args:
        raise BadMessage("positional arguments: vuq's tasks take keyword arguments only")
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise BadMessage(f"{bounded(unknown[0], 64)}: not an argument of {task} (it takes {', '.join(takes)})")
    return checked_step(task, kwargs.get("job_id"), kwargs.get("chunk"))


def checked_finish(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, int | None]:
    """The job id and size a ``vuq.upload.finish`` message names; ``BadMessage`` for anything else."""
    if args:
        raise BadMessage("positional arguments: vuq's tasks take keyword arguments only")
    unknown = sorted(set(kwargs) - {"job_id", "size"})
    if unknown:
        raise BadMessage(f"{bounded(unknown[0], 64)}: not an argument of vuq.upload.finish (it takes job_id, size)")
    job_id, size = kwargs.get("job_id"), kwargs.get("size")
    if not is_job_id(job_id):
        raise BadMessage(f"job_id: must be a job id ([A-Za-z0-9][A-Za-z0-9._:-]*, at most 128), not "
                         f"{type(job_id).__name__}")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise BadMessage(f"size: must be a whole number of bytes, 1 or more, not {bounded(repr(size), 64)}")
    return str(job_id), size


def refuse_message(store: JobStore, message_id: str, task: str, kwargs: dict[str, Any], error: BadMessage,
                   ttl_s: int) -> None:
    """Keep a refused message apart by its message id (bounded, masked) and say so in one line."""
    store.reject(safe_message_id(message_id), "", kept_of(kwargs), bounded(str(error), MAX_ERROR_CHARS), ttl_s)
    log.warning("message %s (%s): refused, nothing touched: %s", safe_message_id(message_id), task,
                bounded(str(error), MAX_ERROR_CHARS))


def accept_spec(pipeline: Pipeline, spec: dict[str, Any], job_id: object, message_id: str,
                traceparent: str | None = None) -> str:
    """The job id to start for this message's spec; ``JobFailed`` when the spec is refused. ``traceparent``:
    the sender's trace (a checked W3C header of the message), which the job's trace continues."""
    raw = {**spec, **({"job_id": job_id} if job_id is not None else {})}
    store, settings = pipeline.store, pipeline.settings
    try:
        parsed = parse_spec(raw, settings.net_policy)
    except SpecError as exc:
        held = _rejected(pipeline, raw, message_id, exc)
        where = f"job {held}: " if held else f"message {safe_message_id(message_id)}: "
        raise JobFailed(f"{where}rejected spec: {bounded(str(exc), MAX_ERROR_CHARS)}") from None
    parsed = replace(parsed, job_id=parsed.job_id or _claimable(message_id))
    new_id = str(parsed.job_id)
    created = store.create(parsed, queue=settings.queue, **job_started(new_id, traceparent))
    if created.conflicts(parsed.fingerprint()):
        problem = f"job_id: {new_id!r} already names a job with a different spec ({created.state})"
        _keep_apart(pipeline, message_id, new_id, raw, problem)
        raise JobFailed(f"job {new_id}: {problem}; the existing job is unchanged")
    return new_id


def _rejected(pipeline: Pipeline, raw: dict[str, Any], message_id: str, exc: SpecError) -> str:
    """Record a refused spec; the job id its failed record holds, or "" when it holds none."""
    error = bounded(str(exc), MAX_ERROR_CHARS)
    claimed = raw.get("job_id") if "job_id" in raw else message_id
    if is_job_id(claimed):
        record = UploadSpec(source=_shown_source(raw.get("source")), job_id=str(claimed))
        created = pipeline.store.create(record, notify=False, fingerprint=REJECTED_FINGERPRINT, state=State.FAILED,
                                        error=error, error_reason=exc.reason, error_retryable=False)
        if created.created:
            log.warning("job %s: rejected spec: %s", claimed, error)
            return str(claimed)
    _keep_apart(pipeline, message_id, str(claimed) if is_job_id(claimed) else "", raw, error)
    return ""


def _keep_apart(pipeline: Pipeline, message_id: str, job_id: str, raw: dict[str, Any], problem: str) -> None:
    pipeline.store.reject(safe_message_id(message_id), job_id, kept_of(raw), problem,
                          pipeline.settings.failed_job_retention_s)
    log.warning("message %s: spec refused and kept apart%s: %s", safe_message_id(message_id),
                f" (job {job_id} is unchanged)" if job_id else "", problem)


def _claimable(message_id: str) -> str:
    """A message id as a job id (Celery's are uuids); a hash of it when it is not one."""
    return message_id if is_job_id(message_id) else safe_message_id(message_id)


def safe_message_id(message_id: object) -> str:
    """A message id fit for a Redis key and a log line: itself when it is a job id, else a hash of it."""
    if is_job_id(message_id):
        return str(message_id)
    return "h-" + hashlib.sha256(repr(message_id).encode("utf-8", "backslashreplace")).hexdigest()[:32]


def kept_of(raw: dict[str, Any]) -> dict[str, Any]:
    """What a rejection keeps of a message: the known fields (masked, each cut short), the names of the
    others (never their values: a secret under a misspelt name is still a secret), at most 8 KiB."""
    kept: dict[str, Any] = {}
    for name, value in raw.items():
        key = bounded(str(name), 64)
        if name in SPEC_FIELDS and name != "token":
            shown = mask_secrets(value)
            text = json.dumps(shown, default=str) if not isinstance(shown, str) else shown
            kept[key] = mask_url(bounded(text, MAX_KEPT_FIELD_CHARS))
        else:
            kept[key] = "***"
        if len(json.dumps(kept)) > MAX_KEPT_CHARS:
            kept.pop(key)
            kept["…"] = "more fields left out"
            break
    return kept


def _shown_source(value: object) -> str:
    return mask_url(bounded(value, MAX_SHOWN_SOURCE_CHARS)) if isinstance(value, str) else ""


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, control characters escaped (one line, safe to show)."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
