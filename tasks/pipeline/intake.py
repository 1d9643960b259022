"""Specs that arrive in a message (``send_task("vuq.upload.start", kwargs=spec)``, Flower's API):
stored as a job, with the token moved into the record at once, or refused without touching
any existing job.

A spec that fails validation under a free id becomes a failed record naming the field (so
``vuq status ID`` explains it); under an id already in use it is kept under its own
rejection record and logged, and the job with that id is left alone. The same id with the
same spec is the same job (a replayed message changes nothing); with another spec it is refused.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from tasks.errors import JobFailed, SpecError
from tasks.job.record import State
from tasks.job.spec import UploadSpec, parse_spec
from tasks.pipeline.upload import Pipeline
from tasks.redact import mask_secrets

log = logging.getLogger(__name__)
MAX_SHOWN_SOURCE_CHARS = 4096


def accept_spec(pipeline: Pipeline, spec: dict[str, Any], job_id: str | None, message_id: str) -> str:
    """The job id to start for this message's spec; ``JobFailed`` when the spec is refused."""
    raw = {**spec, **({"job_id": job_id} if job_id else {})}
    store, settings = pipeline.store, pipeline.settings
    try:
        parsed = parse_spec(raw, settings.net_policy)
    except SpecError as exc:
        claimed = str(raw.get("job_id") or message_id)
        created = store.create(_rejected(raw, claimed), notify=False, fingerprint="", state=State.FAILED,
                               error=str(exc), error_reason=exc.reason, error_retryable=False)
        if not created.created:
            _refuse(pipeline, message_id, claimed, mask_secrets(raw), str(exc))
        log.warning("job %s: rejected spec: %s", claimed, exc)
        raise JobFailed(f"job {claimed}: rejected spec: {exc}") from None
    parsed = replace(parsed, job_id=parsed.job_id or message_id)
    new_id = str(parsed.job_id)
    created = store.create(parsed, queue=settings.queue)
    if created.conflicts(parsed.fingerprint()):
        problem = f"job_id: {new_id!r} already names a job with a different spec ({created.state})"
        _refuse(pipeline, message_id, new_id, mask_secrets(raw), problem)
        raise JobFailed(f"job {new_id}: {problem}; the existing job is unchanged")
    return new_id


def _rejected(raw: dict[str, Any], job_id: str) -> UploadSpec:
    """What the failed record of a refused spec keeps of it: the source it named (masked), no token."""
    source = mask_secrets(raw.get("source"))
    return UploadSpec(source=source[:MAX_SHOWN_SOURCE_CHARS] if isinstance(source, str) else "", job_id=job_id)


def _refuse(pipeline: Pipeline, message_id: str, job_id: str, spec: object, problem: str) -> None:
    pipeline.store.reject(message_id, job_id, spec, problem, pipeline.settings.failed_job_retention_s)
    log.warning("message %s: spec for job %s refused and kept apart (the job is unchanged): %s",
                message_id, job_id, problem)
