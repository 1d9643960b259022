"""The producer API: ``enqueue_upload`` writes the job record and enqueues ``vuq.upload.start``.

The message carries only the job id; the token stays in the job record. The same
``job_id`` enqueued twice makes one job. If Redis cannot be reached, an
``EnqueueError`` says so and nothing is written.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from tasks.constants import TASK_START
from tasks.errors import EnqueueError
from tasks.jobstore import JobStore
from tasks.pipeline import Step
from tasks.record import State
from tasks.redact import safe_url
from tasks.redisconn import redis_client
from tasks.settings import Settings, get_settings
from tasks.spec import new_job_id, parse_spec


def enqueue_upload(source: str, *, token: str | None = None, video: dict[str, Any] | None = None,
                   chunk_size: int | str | None = None, job_id: str | None = None,
                   callback_url: str | None = None, settings: Settings | None = None) -> str:
    """Enqueue one upload and return its job id at once.

    Raises ``SpecError`` (a ValueError naming the field) for a bad spec and
    ``EnqueueError`` when Redis cannot be reached.
    """
    settings = settings or get_settings()
    spec = parse_spec({"source": source, "token": token, "video": video or {}, "chunk_size": chunk_size,
                       "job_id": job_id, "callback_url": callback_url})
    job_id = spec.job_id or new_job_id()
    store = job_store(settings.redis_url)
    try:
        created = store.create(job_id, {**spec.public(), "job_id": job_id}, spec.token)
        existing = None if created else store.get(job_id)
    except redis.RedisError as exc:
        raise EnqueueError(f"cannot reach Redis at {safe_url(settings.redis_url)}: {exc}") from None
    if created or (existing and existing.state == State.QUEUED and existing.heartbeat_at is None):
        _send_start(settings, job_id, store, created)
    return job_id


def _send_start(settings: Settings, job_id: str, store: JobStore, created: bool) -> None:
    try:
        send_step(Step(TASK_START, job_id), settings)
    except EnqueueError:
        if created:
            store.forget(job_id)
        raise


def send_step(step: Step, settings: Settings | None = None) -> None:
    """Enqueue one pipeline step by task name (operator commands, the janitor, resume)."""
    settings = settings or get_settings()
    try:
        _producer(settings.broker_url).send_task(step.task, kwargs=step.kwargs(), queue=settings.queue,
                                                 retry=True, retry_policy={"max_retries": 2})
    except (OperationalError, redis.RedisError, OSError) as exc:
        raise EnqueueError(f"cannot reach the broker at {safe_url(settings.broker_url)}: {exc}") from None


@cache
def job_store(redis_url: str) -> JobStore:
    """One store (and Redis connection pool) per URL for the process, not one per enqueue."""
    return JobStore(redis_client(redis_url))


@cache
def _producer(broker_url: str) -> Celery:
    app = Celery("vuq-producer", broker=broker_url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=False, broker_connection_max_retries=2,
                    task_serializer="json", accept_content=["json"])
    return app
