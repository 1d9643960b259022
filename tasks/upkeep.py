"""Tasks around the upload: completion webhooks, cleaning up after a job ended (its minted token, a
cancelled job's video), and the janitor (run by ``vuq beat``)."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import Retry

from tasks import runtime, telemetry
from tasks.constants import TASK_CLEANUP, TASK_JANITOR, TASK_WEBHOOK
from tasks.errors import BadMessage
from tasks.job.connections import SentinelOptions, redis_client
from tasks.outbound.callbacks import TIMEOUT_S as CALLBACK_DEADLINE_S
from tasks.pipeline.callbacks import deliver_webhook
from tasks.pipeline.cleanup import clean_up
from tasks.pipeline.janitor import queue_head, resend_webhooks, sweep
from tasks.pipeline.message import Step
from tasks.uploads import checked, enqueue

log = logging.getLogger(__name__)


@shared_task(bind=True, name=TASK_WEBHOOK, ignore_result=True, acks_late=True, max_retries=None,
             throws=(BadMessage,))
def webhook(self: Task, *args: Any, **kwargs: Any) -> None:
    """POST the job's final record to its callback_url, signed, once at a time; retried with backoff, at
    most VUQ_MAX_RETRIES + 1 attempts in all (``tasks.pipeline.callbacks``)."""
    job_id = checked(self, TASK_WEBHOOK, args, kwargs, ("job_id",)).job_id
    pipeline = runtime.pipeline()
    with telemetry.step(TASK_WEBHOOK, job_id, attempt=self.request.retries or 0):
        again_in = deliver_webhook(pipeline.store, pipeline.sources, pipeline.settings, job_id, CALLBACK_DEADLINE_S)
    if again_in is not None:
        retry = Step(TASK_WEBHOOK, job_id, queue=pipeline.settings.queue)
        pipeline.store.later(retry.to_member(self.request.id, self.request.retries + 1), again_in)
        raise Retry(f"job {job_id}: callback to be tried again", when=again_in)


@shared_task(bind=True, name=TASK_CLEANUP, ignore_result=True, acks_late=True, throws=(BadMessage,))
def cleanup(self: Task, *args: Any, **kwargs: Any) -> None:
    """After a job ended: delete the token vuq minted for it and, for a cancelled job, its partial video
    (the job's account key), once no chunk is in flight."""
    job_id = checked(self, TASK_CLEANUP, args, kwargs, ("job_id",)).job_id
    pipeline = runtime.pipeline()
    assert pipeline.keyring is not None
    with telemetry.step(TASK_CLEANUP, job_id):
        again_in = clean_up(pipeline.store, pipeline.keyring, job_id)
    if again_in is not None:
        pipeline.store.later(Step(TASK_CLEANUP, job_id, queue=pipeline.settings.queue).to_member(), again_in)


@cache
def _broker(url: str, sentinel: SentinelOptions | None) -> redis.Redis:
    return redis_client(url, sentinel)


@shared_task(bind=True, name=TASK_JANITOR, ignore_result=True, throws=(BadMessage,))
def janitor(self: Task, *args: Any, **kwargs: Any) -> list[str]:
    """Re-enqueue the next step of jobs nobody moves, forget expired history, re-send webhooks."""
    if args or kwargs:
        raise BadMessage("the janitor takes no arguments")
    pipeline = runtime.pipeline()
    settings = pipeline.settings

    def send(step: Step) -> None:
        enqueue(self, step)

    head = queue_head(_broker(settings.broker_url, settings.sentinel), settings.queue)
    rescued = sweep(pipeline.store, send, settings.stale_after_s, head, settings.queue)
    resend_webhooks(pipeline.store, send, settings.stale_after_s, settings.queue)
    for job_id in pipeline.store.revocations_due(settings.stale_after_s):  # minted tokens a dead worker left
        send(Step(TASK_CLEANUP, job_id))
    return rescued
