"""Tasks around the upload: completion webhooks, cleaning up after a job ended (its minted token, a
cancelled job's video), and the janitor (run by ``vuq beat``)."""

from __future__ import annotations

import logging
from functools import cache

import redis
from celery import Task, shared_task
from celery.exceptions import Retry

from tasks import runtime
from tasks.constants import TASK_CLEANUP, TASK_JANITOR, TASK_WEBHOOK
from tasks.errors import PermanentError, RetryableError
from tasks.job.connections import SentinelOptions, redis_client
from tasks.job.record import State
from tasks.pipeline.backoff import backoff_s
from tasks.pipeline.cleanup import clean_up
from tasks.pipeline.janitor import queue_head, resend_webhooks, sweep
from tasks.pipeline.message import Step
from tasks.uploads import enqueue
from tasks.webhooks import deliver

log = logging.getLogger(__name__)
CLEANUP_WAIT_S = 2.0


@shared_task(bind=True, name=TASK_WEBHOOK, ignore_result=True, acks_late=True, max_retries=None)
def webhook(self: Task, job_id: str) -> None:
    """POST the job's final record to its callback_url, signed; retried with backoff, bounded. The
    job's outbox entry (written with its final state) is cleared once delivered or refused."""
    pipeline = runtime.pipeline()
    store, settings = pipeline.store, pipeline.settings
    job = store.get(job_id)
    url = job.spec.callback_url if job else None
    if job is None or not url or not job.state.final:  # expired, or resumed since: nothing owed now
        store.outbox_done(job_id)
        return
    store.outbox_later(job_id, 0.0)  # a delivery is under way
    try:
        status = deliver(pipeline.sources, url, job, settings.webhook_secret, int(store.now()))
    except RetryableError as exc:
        if self.request.retries >= settings.max_retries:
            _callback(job_id, f"failed: {exc}")
            log.warning("job %s: callback given up: %s", job_id, exc)
            return
        delay = backoff_s(self.request.retries, settings.retry_backoff_s, settings.retry_backoff_max_s)
        _callback(job_id, f"retrying: {exc}")
        store.outbox_later(job_id, delay)
        store.later(Step(TASK_WEBHOOK, job_id, queue=settings.queue).to_member(self.request.id,
                                                                               self.request.retries + 1), delay)
        raise Retry(str(exc), exc=exc, when=delay) from None
    except PermanentError as exc:
        _callback(job_id, f"failed: {exc}")
        log.warning("job %s: callback refused: %s", job_id, exc)
        return
    _callback(job_id, f"delivered ({status})")


def _callback(job_id: str, outcome: str) -> None:
    store = runtime.pipeline().store
    store.update(job_id, None, {"callback": outcome}, expect={"state": [s for s in State if s.final]})
    if not outcome.startswith("retrying"):
        store.outbox_done(job_id)


@shared_task(bind=True, name=TASK_CLEANUP, ignore_result=True, acks_late=True)
def cleanup(self: Task, job_id: str) -> None:
    """After a job ended: delete the token vuq minted for it and, for a cancelled job, its partial video
    (the job's account key), once no chunk is in flight."""
    pipeline = runtime.pipeline()
    assert pipeline.keyring is not None
    again_in = clean_up(pipeline.store, pipeline.keyring, job_id)
    if again_in is not None:
        pipeline.store.later(Step(TASK_CLEANUP, job_id, queue=pipeline.settings.queue).to_member(), again_in)


@cache
def _broker(url: str, sentinel: SentinelOptions | None) -> redis.Redis:
    return redis_client(url, sentinel)


@shared_task(bind=True, name=TASK_JANITOR, ignore_result=True)
def janitor(self: Task) -> list[str]:
    """Re-enqueue the next step of jobs nobody moves, forget expired history, re-send webhooks."""
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
