"""Periodic maintenance tasks, run by ``vuq beat``."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from tasks import runtime
from tasks.constants import TASK_JANITOR, TASK_WEBHOOK
from tasks.errors import PermanentError, RetryableError
from tasks.janitor import sweep
from tasks.pipeline import Step
from tasks.retry import backoff_s
from tasks.webhooks import deliver

log = logging.getLogger(__name__)


@shared_task(bind=True, name=TASK_WEBHOOK, ignore_result=True, acks_late=True, max_retries=None)
def webhook(self: Task, job_id: str) -> None:
    """POST the job's final record to its callback_url, signed; retried with backoff, bounded."""
    pipeline = runtime.pipeline()
    settings = pipeline.settings
    job = pipeline.store.get(job_id)
    url = job.spec.get("callback_url") if job else None
    if job is None or not url:
        return
    try:
        status = deliver(pipeline.http, url, job, settings.webhook_secret)
    except RetryableError as exc:
        if self.request.retries >= settings.max_retries:
            pipeline.store.update(job_id, None, {"callback": f"failed: {exc}"})
            log.warning("job %s: callback given up: %s", job_id, exc)
            return
        delay = backoff_s(self.request.retries, settings.retry_backoff_s, settings.retry_backoff_max_s)
        pipeline.store.update(job_id, None, {"callback": f"retrying: {exc}"})
        raise self.retry(countdown=delay, exc=exc) from None
    except PermanentError as exc:
        pipeline.store.update(job_id, None, {"callback": f"failed: {exc}"})
        log.warning("job %s: callback refused: %s", job_id, exc)
        return
    pipeline.store.update(job_id, None, {"callback": f"delivered ({status})"})


@shared_task(bind=True, name=TASK_JANITOR, ignore_result=True)
def janitor(self: Task) -> list[str]:
    """Find active jobs with no heartbeat for too long and re-enqueue their next step."""
    pipeline = runtime.pipeline()

    def send(step: Step) -> None:
        self.app.send_task(step.task, kwargs=step.kwargs(), queue=pipeline.settings.queue)

    return sweep(pipeline.store, send, pipeline.settings.stale_after_s)
