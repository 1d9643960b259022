"""The Celery tasks: thin adapters over ``tasks.pipeline.upload``.

Each unpacks ids, runs one pipeline step under a lease holder id of its own, enqueues the
step that follows, and maps our exceptions: a ``RetryableError`` is retried with backoff
and full jitter, bounded; ``Throttled`` (the fleet's api.video budget) and ``Busy`` (another
worker holds the job) defer the step; a ``PermanentError`` fails the job, resumable or not,
and the task ends with ``JobFailed`` naming the reason (no traceback: an expected outcome).
Retries and deferrals go to the delayed set on Redis's clock (``tasks.pipeline.deferred``), never to
Celery countdowns judged by each worker's own clock; the task then ends ``RETRY`` in Flower.
Messages carry only a job id and a chunk index; a spec sent by another service
(``send_task("vuq.upload.start", kwargs=spec)``) has its token moved into the job record.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from reprlib import repr as short_repr
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.worker.request import Request
from kombu.exceptions import OperationalError

from tasks import runtime
from tasks.apivideo.client import TOKEN_REJECTED_SLUGS
from tasks.constants import HANDOFF_HEADER, TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.errors import ApiRejected, Busy, ConfigError, PermanentError, RetryableError, Throttled, VuqError
from tasks.failures import JobFailed, failure_for
from tasks.intake import accept_spec
from tasks.job.connections import patiently
from tasks.job.record import NEEDS_TOKEN
from tasks.pipeline.backoff import backoff_s
from tasks.pipeline.message import Step
from tasks.pipeline.upload import LeaseLost, StepKeepsDying, expectation
from tasks.redact import mask_secrets, redact

log = logging.getLogger(__name__)
# Publishing the next step waits out a short broker outage (a Redis restart) before giving up;
# if it still fails, the cursor has moved and the janitor sends the step.
PUBLISH_RETRY = {"max_retries": 10, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}
REDIS_PATIENCE_S = 20.0  # how long a step waits for Redis to answer again (a failover takes seconds)


class MaskedRequest(Request):
    """The argument reprs logs, events and Flower show: vuq's own label when vuq sent the message,
    else computed here with secrets masked, whatever the sender put in it (Celery #6086)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        body_args, body_kwargs, _ = self._payload
        ours = self._request_dict.get(HANDOFF_HEADER) is not None and self._request_dict.get("kwargsrepr")
        self._argsrepr = short_repr(mask_secrets(list(body_args)))
        self._kwargsrepr = redact(str(ours)) if ours else repr(mask_secrets(dict(body_kwargs)))[:1024]
        self._request_dict["argsrepr"] = self._argsrepr
        self._request_dict["kwargsrepr"] = self._kwargsrepr


class UploadTask(Task):
    """Late acks, requeue when the worker process dies, no result storage, our own retry bound;
    a job that failed is an expected outcome, logged in one line."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    max_retries = None
    throws = (JobFailed,)
    Request = MaskedRequest


@shared_task(bind=True, base=UploadTask, name=TASK_START)
def start(self: Task, job_id: str | None = None, **spec: Any) -> None:
    """Validate, stat the source, plan chunks, send chunk 0, record the videoId."""
    if spec:
        job_id = accept_spec(runtime.pipeline(), spec, job_id, message_id=self.request.id)
    assert job_id is not None
    run_step(self, Step(TASK_START, job_id), lambda holder: runtime.pipeline().start(job_id, holder))


@shared_task(bind=True, base=UploadTask, name=TASK_CHUNK)
def chunk(self: Task, job_id: str, chunk: int) -> None:
    """Send chunk ``chunk`` of the job (0-based) if it is next, then enqueue the one after."""
    index = int(chunk)
    run_step(self, Step(TASK_CHUNK, job_id, index), lambda holder: runtime.pipeline().chunk(job_id, index, holder))


@shared_task(bind=True, base=UploadTask, name=TASK_FINALIZE)
def finalize(self: Task, job_id: str) -> None:
    """Patch title, description, tags, metadata and flags with API-key auth; mark the job done."""
    run_step(self, Step(TASK_FINALIZE, job_id), lambda holder: runtime.pipeline().finalize(job_id, holder))


def run_step(task: Task, step: Step, body: Callable[[str], Step | None]) -> None:
    pipeline = runtime.pipeline()
    holder = runtime.new_holder()
    step = Step(step.task, step.job_id, step.chunk, label=task.request.kwargsrepr or None,
                queue=pipeline.settings.queue)
    try:
        following = body(holder)
    except LeaseLost as exc:
        log.info("%s", exc)
        return
    except Busy as exc:  # another worker holds the job: ask again shortly (its lease is not ours to touch)
        pipeline.store.later(step, exc.wait_s + random.uniform(0, 1.0), task.request.id, task.request.retries)
        log.info("job %s: %s; asking again shortly", step.job_id, exc)
        return
    except Throttled as exc:  # the fleet's api.video budget: wait for it, not a retry
        _schedule(task, step, holder, exc.wait_s + random.uniform(0, 1.0), None)
        log.info("job %s: %s; step deferred", step.job_id, exc)
        return
    except (RetryableError, SoftTimeLimitExceeded) as exc:
        error = exc if isinstance(exc, RetryableError) else RetryableError(
            "the step ran past its soft time limit", reason="time_limit")
        _retry(task, step, holder, error)
    except (redis.RedisError, OperationalError) as exc:
        # Redis (the job store or the broker) is away: a restart, a failover, a partition. The record
        # is as the last fenced write left it; retry once Redis answers again, or leave the job to
        # the janitor. An outage never fails a job.
        log.warning("job %s: Redis unavailable (%s); the step will be tried again", step.job_id,
                    type(exc).__name__)
        _retry(task, step, holder, RetryableError(f"Redis unavailable: {type(exc).__name__}", reason="redis"))
    except PermanentError as exc:
        _fail(task, step, holder, exc, _resumable(exc))
    except Exception as exc:  # a bug: the job fails resumable, and the traceback is logged once
        message = redact(f"internal error: {type(exc).__name__}: {exc}", pipeline.settings.secrets())
        log.exception("job %s: %s", step.job_id, message)
        _fail(task, step, holder, VuqError(message), True)
    if following is not None:
        enqueue(task, following)
        if following.sent is not None:
            pipeline.reporter.chunk_sent(step.job_id, *vars(following.sent).values())


def enqueue(task: Task, step: Step) -> None:
    """Publish ``step`` with its label for Flower and its hand-off time for the janitor."""
    task.app.send_task(step.task, queue=runtime.pipeline().settings.queue, retry=True, retry_policy=PUBLISH_RETRY,
                       **step.message())


def _schedule(task: Task, step: Step, holder: str, delay_s: float, reason: str | None) -> bool:
    retries = task.request.retries + (1 if reason else 0)
    store = runtime.pipeline().store
    try:
        written = patiently(lambda: store.schedule(step.job_id, holder, step, delay_s,
                                                   expectation(step.task, step.chunk), retry_reason=reason,
                                                   task_id=task.request.id, retries=retries), REDIS_PATIENCE_S)
    except redis.RedisError as exc:
        log.warning("job %s: Redis still unavailable (%s); the janitor will continue the job", step.job_id,
                    type(exc).__name__)
        return False
    if not written:
        log.info("job %s: not rescheduled (%s)", step.job_id, written.why)
    return bool(written)


def _retry(task: Task, step: Step, holder: str, error: RetryableError) -> None:
    settings = runtime.pipeline().settings
    attempt = task.request.retries
    if attempt >= settings.max_retries:
        _fail(task, step, holder, RetryableError(f"gave up after {attempt + 1} attempts: {error}",
                                                 reason=error.reason), True)
        return  # the job moved on under another worker: nothing of this step's to retry
    delay = backoff_s(attempt, settings.retry_backoff_s, settings.retry_backoff_max_s, error.retry_after_s)
    if not _schedule(task, step, holder, delay, error.reason):
        return
    runtime.pipeline().reporter.retry(step.job_id, error.reason)
    log.warning("job %s: %s; retry %d/%d in %.1fs", step.job_id, error, attempt + 1, settings.max_retries, delay)
    raise Retry(str(error), exc=error, when=delay)


def _fail(task: Task, step: Step, holder: str, error: VuqError, resumable: bool) -> None:
    needs = NEEDS_TOKEN if isinstance(error, ApiRejected) and error.slug in TOKEN_REJECTED_SLUGS else None
    recorded, following = runtime.pipeline().fail(step.job_id, holder, error, resumable,
                                                  expectation(step.task, step.chunk), needs)
    if not recorded:
        return  # the job moved on under another worker: this step's failure is not the job's
    if following is not None:
        enqueue(task, following)
    raise failure_for(step.job_id, error, resumable, needs)


def _resumable(error: PermanentError) -> bool:
    """Whether resuming can succeed: after a fix of the workers (settings, API key, a worker that
    kept dying) or with a new upload token; a bad source, spec or other api.video refusal cannot."""
    if isinstance(error, ConfigError | StepKeepsDying):
        return True
    if not isinstance(error, ApiRejected):
        return False
    if error.slug in TOKEN_REJECTED_SLUGS:
        return True
    # a rejected API key answers 401, or 400 authentication-invalid-user-credentials on /auth/api-key
    return error.status in (401, 403) or error.slug.startswith("authentication-")
