"""The Celery tasks of an upload: thin adapters over ``tasks.pipeline``.

Each builds the ``Step`` its message names, lets ``Pipeline.run`` run it, and maps the outcome to
Celery: ``Continue`` publishes the next step, ``Retry`` ends the task RETRY (the step already waits
in the delayed set, on Redis's clock, never a Celery countdown judged by a worker's own clock),
``Fail`` publishes the webhook the job owes and ends the task with ``JobFailed`` naming the reason
(no traceback: an expected outcome), ``Stop`` ends it quietly. Messages carry only a job id and a
chunk index; a spec sent by another service (``send_task("vuq.upload.start", kwargs=spec)``) has
its token moved into the job record first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from reprlib import repr as short_repr
from typing import Any, TypeVar

from celery import Task, shared_task
from celery.exceptions import Retry, SoftTimeLimitExceeded
from celery.worker.request import Request

from tasks import runtime
from tasks.constants import HANDOFF_HEADER, TASK_CHUNK, TASK_FINALIZE, TASK_FINISH, TASK_START
from tasks.errors import BadMessage, JobFailed
from tasks.pipeline import Attempt, Continue, Fail, Step
from tasks.pipeline import Retry as Retrying
from tasks.pipeline.intake import accept_spec, checked_finish, checked_message, refuse_message
from tasks.pipeline.operations import OperationError
from tasks.pipeline.operations import finish as finish_job
from tasks.redact import mask_secrets, redact
from tasks.telemetry import incoming_traceparent

log = logging.getLogger(__name__)
Checked = TypeVar("Checked")
# Publishing the next step waits out a short broker outage (a Redis restart) before giving up;
# if it still fails, the cursor has moved and the janitor sends the step.
PUBLISH_RETRY = {"max_retries": 10, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 2.0}


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
    throws = (JobFailed, BadMessage, OperationError)
    Request = MaskedRequest


@shared_task(bind=True, base=UploadTask, name=TASK_START)
def start(self: Task, *args: Any, **kwargs: Any) -> None:
    """Validate, stat the source, plan chunks, send chunk 0, record the videoId."""
    if not args and set(kwargs) - {"job_id"}:  # a whole spec, sent by another service
        sender_trace = incoming_traceparent(getattr(self.request, "traceparent", None))
        kwargs = {"job_id": accept_spec(runtime.pipeline(), kwargs, kwargs.pop("job_id", None), self.request.id,
                                        sender_trace)}
    run_step(self, checked(self, TASK_START, args, kwargs, ("job_id",)))


@shared_task(bind=True, base=UploadTask, name=TASK_CHUNK)
def chunk(self: Task, *args: Any, **kwargs: Any) -> None:
    """Send chunk ``chunk`` of the job (0-based) if it is next, then enqueue the one after."""
    run_step(self, checked(self, TASK_CHUNK, args, kwargs, ("job_id", "chunk")))


@shared_task(bind=True, base=UploadTask, name=TASK_FINALIZE)
def finalize(self: Task, *args: Any, **kwargs: Any) -> None:
    """Patch title, description, tags, metadata and flags with API-key auth; mark the job done."""
    run_step(self, checked(self, TASK_FINALIZE, args, kwargs, ("job_id",)))


@shared_task(bind=True, base=UploadTask, name=TASK_FINISH)
def finish(self: Task, *args: Any, **kwargs: Any) -> str:
    """A live job's end: record its final size (``size``, else its file's as a worker sees it) and wake it.
    A finish that does not apply ends the task with ``OperationError`` naming the job and the reason."""
    job_id, size = refused_unless(self, TASK_FINISH, kwargs, lambda: checked_finish(args, kwargs))
    try:
        line = finish_job(runtime.pipeline().store, job_id, lambda step: enqueue(self, step), size)
    except OperationError as exc:
        log.warning("%s", exc)
        raise
    log.info("%s", line)
    return line


def checked(task: Task, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], takes: tuple[str, ...]) -> Step:
    """The step the message asks for, checked before anything is touched."""
    return refused_unless(task, name, kwargs, lambda: checked_message(name, args, kwargs, takes))


def refused_unless(task: Task, name: str, kwargs: dict[str, Any], check: Callable[[], Checked]) -> Checked:
    """What ``check`` makes of a message; one vuq could not have written is kept apart by its id and the
    task ends with ``BadMessage`` (one line, no traceback)."""
    try:
        return check()
    except BadMessage as exc:
        pipeline = runtime.pipeline()
        refuse_message(pipeline.store, task.request.id or "", name, kwargs, exc,
                       pipeline.settings.failed_job_retention_s)
        raise


def run_step(task: Task, step: Step) -> None:
    """Run one pipeline step for ``task`` and map how it ended to Celery."""
    pipeline = runtime.pipeline()
    step = Step(step.task, step.job_id, step.chunk, label=task.request.kwargsrepr or None,
                queue=pipeline.settings.queue)
    outcome = pipeline.run(step, Attempt(task.request.id, task.request.retries), (SoftTimeLimitExceeded,))
    if isinstance(outcome, Continue):
        enqueue(task, outcome.step)
    elif isinstance(outcome, Retrying):
        raise Retry(str(outcome.error), exc=outcome.error, when=outcome.delay_s)
    elif isinstance(outcome, Fail):
        if outcome.then is not None:
            enqueue(task, outcome.then)
        raise outcome.failure


def enqueue(task: Task, step: Step) -> None:
    """Publish ``step`` with its label for Flower and its hand-off time for the janitor."""
    task.app.send_task(step.task, queue=runtime.pipeline().settings.queue, retry=True, retry_policy=PUBLISH_RETRY,
                       **step.message())
