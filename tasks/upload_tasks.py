"""The Celery tasks: thin adapters over ``tasks.pipeline``.

Each unpacks ids, runs one pipeline step, enqueues the step that follows, and maps
our exceptions to a retry (``RetryableError``, bounded, backoff with full jitter) or a
failed job (``PermanentError``). Messages carry only a job id and a chunk index; a
spec sent by another service (``send_task("vuq.upload.start", kwargs=spec)``) has its
token moved into the job record at once, and its reprs are masked on the worker side.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from reprlib import repr as short_repr
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request
from kombu.exceptions import OperationalError

from tasks import runtime
from tasks.constants import TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.errors import (
    ApiRejected,
    Busy,
    ConfigError,
    PermanentError,
    RetryableError,
    SpecError,
    Throttled,
    VuqError,
)
from tasks.pipeline import LeaseLost, Step
from tasks.redact import mask_secrets, redact
from tasks.retry import backoff_s
from tasks.spec import parse_spec

log = logging.getLogger(__name__)


class MaskedRequest(Request):
    """Computes the argument reprs that logs, events and Flower show, secrets masked,
    whatever the sender put in the message (Celery #6086: retry() and other languages)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        body_args, body_kwargs, _ = self._payload
        self._argsrepr = short_repr(mask_secrets(list(body_args)))
        self._kwargsrepr = repr(mask_secrets(dict(body_kwargs)))[:1024]
        self._request_dict["argsrepr"] = self._argsrepr
        self._request_dict["kwargsrepr"] = self._kwargsrepr


class UploadTask(Task):
    """Late acks, requeue when the worker process dies, no result storage, our own retry bound."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    max_retries = None
    Request = MaskedRequest


@shared_task(bind=True, base=UploadTask, name=TASK_START)
def start(self: Task, job_id: str | None = None, **spec: Any) -> None:
    """Validate, stat the source, plan chunks, send chunk 0, record the videoId."""
    if spec:
        job_id = accept_spec(spec, job_id, default_id=self.request.id)
        if job_id is None:
            return
    assert job_id is not None
    run_step(self, job_id, {"job_id": job_id}, lambda: runtime.pipeline().start(job_id))


@shared_task(bind=True, base=UploadTask, name=TASK_CHUNK)
def chunk(self: Task, job_id: str, chunk: int) -> None:
    """Send chunk ``chunk`` of the job (0-based) if it is next, then enqueue the one after."""
    run_step(self, job_id, {"job_id": job_id, "chunk": chunk},
             lambda: runtime.pipeline().chunk(job_id, int(chunk)))


@shared_task(bind=True, base=UploadTask, name=TASK_FINALIZE)
def finalize(self: Task, job_id: str) -> None:
    """Patch title, description, tags, metadata and flags with API-key auth; mark the job done."""
    run_step(self, job_id, {"job_id": job_id}, lambda: runtime.pipeline().finalize(job_id))


def accept_spec(spec: dict[str, Any], job_id: str | None, default_id: str) -> str | None:
    """Store a spec that arrived in a message as a job record (token included, kept there)."""
    store = runtime.pipeline().store
    raw = {**spec, **({"job_id": job_id} if job_id else {})}
    try:
        parsed = parse_spec(raw)
    except SpecError as exc:
        failed_id = str(raw.get("job_id") or default_id)
        store.create(failed_id, mask_secrets(raw), None)  # type: ignore[arg-type]
        runtime.pipeline().fail(failed_id, exc, retryable=False)
        log.warning("job %s: rejected spec: %s", failed_id, exc)
        return None
    new_id = parsed.job_id or default_id
    store.create(new_id, {**parsed.public(), "job_id": new_id}, parsed.token)
    return new_id


def run_step(task: Task, job_id: str, kwargs: dict[str, Any], step: Callable[[], Step | None]) -> None:
    pipeline = runtime.pipeline()
    try:
        following = step()
    except LeaseLost as exc:
        log.warning("%s", exc)
        return
    except Throttled as exc:  # the upload rate limit, or another worker holding the job (Busy)
        _defer(task, job_id, kwargs, exc)
        return
    except (RetryableError, SoftTimeLimitExceeded) as exc:
        error = exc if isinstance(exc, RetryableError) else RetryableError(
            "the step ran past its soft time limit", reason="time_limit")
        _retry(task, job_id, kwargs, error)
    except (redis.RedisError, OperationalError) as exc:
        # Redis (job store or broker) is away: the job record is untouched and still active, so
        # a retry, or the janitor once Redis is back, continues it; never fail the job for this.
        log.warning("job %s: Redis unavailable (%s); will retry", job_id, type(exc).__name__)
        _retry(task, job_id, kwargs, RetryableError(f"Redis unavailable: {type(exc).__name__}", reason="redis"))
    except PermanentError as exc:
        _fail(task, job_id, exc, _resumable(exc))
        raise
    except Exception as exc:
        message = redact(f"internal error: {type(exc).__name__}: {exc}", pipeline.settings.secrets())
        _fail(task, job_id, VuqError(message), True)
        log.exception("job %s: %s", job_id, message)
        raise PermanentError(message) from None
    if following is not None:
        enqueue(task, following)
        if following.sent is not None:
            pipeline.observer.chunk_sent(job_id, *following.sent)


def _fail(task: Task, job_id: str, error: VuqError, resumable: bool) -> None:
    step = runtime.pipeline().fail(job_id, error, retryable=resumable)
    if step is not None:
        enqueue(task, step)


def enqueue(task: Task, step: Step) -> None:
    task.app.send_task(step.task, kwargs=step.kwargs(), queue=runtime.pipeline().settings.queue)


def _defer(task: Task, job_id: str, kwargs: dict[str, Any], pause: Throttled) -> None:
    """Send the same step again for a moment later; not a retry, not counted."""
    pipeline = runtime.pipeline()
    pipeline.release(job_id)
    delay = pause.wait_s + random.uniform(0, 1.0)  # spread the fleet's return over a second
    if not isinstance(pause, Busy):  # a busy job's holder keeps its heartbeat itself
        pipeline.store.update(job_id, None, {"wake_at": f"{time.time() + delay:.3f}"})
    task.app.send_task(task.name, kwargs=kwargs, queue=pipeline.settings.queue, countdown=delay)
    log.info("job %s: %s; step deferred %.1fs", job_id, pause, delay)


def _retry(task: Task, job_id: str, kwargs: dict[str, Any], error: RetryableError) -> None:
    pipeline = runtime.pipeline()
    settings = pipeline.settings
    pipeline.release(job_id)
    attempt = task.request.retries
    if attempt >= settings.max_retries:
        failure = RetryableError(f"gave up after {attempt + 1} attempts: {error}", reason=error.reason)
        _fail(task, job_id, failure, True)
        raise PermanentError(str(failure)) from None
    delay = backoff_s(attempt, settings.retry_backoff_s, settings.retry_backoff_max_s, error.retry_after_s)
    pipeline.store.add_retry(job_id)
    pipeline.store.update(job_id, None, {"wake_at": f"{time.time() + delay:.3f}",
                                          "last_retry_reason": error.reason})
    pipeline.observer.retry(job_id, error.reason)
    log.warning("job %s: %s; retry %d/%d in %.1fs", job_id, error, attempt + 1, settings.max_retries, delay)
    raise task.retry(countdown=delay, kwargs=kwargs, exc=error)


def _resumable(error: PermanentError) -> bool:
    """Whether resuming after a fix of the workers can succeed: settings, or API-key credentials
    (a rejected upload token stays rejected: the job needs a new one, so it is not resumable)."""
    if isinstance(error, ConfigError):
        return True
    if not isinstance(error, ApiRejected) or "upload-token" in error.slug:
        return False
    # a rejected API key answers 401, or 400 authentication-invalid-user-credentials on /auth/api-key
    return error.status in (401, 403) or error.slug.startswith("authentication-")
