"""The producer API: ``enqueue_upload`` writes the job record and enqueues ``vuq.upload.start``;
``resume_upload``, ``cancel_upload`` and ``retry_failed_uploads`` are the operator actions (``vuq resume``,
``vuq cancel``, ``vuq retry-failed``) for programs.

The message carries only the job id; the token stays in the job record. ``job_id`` is an
idempotency key as people know them: the same id with the same spec returns that job and
sends nothing more; with another spec it is a ``SpecError`` naming the id. With Sentinel, the
record is written to a replica too before the producer is answered (asynchronous replication
would otherwise let a failover lose it). If Redis (or the broker) cannot be reached, an
``EnqueueError`` says so and nothing is left written. A producer that dies between the record
and the message leaves a queued job the janitor starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import cache
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from tasks.apivideo.accounts import DEFAULT_ACCOUNT
from tasks.errors import EnqueueError, SpecError
from tasks.job.connections import SentinelOptions, broker_transport_options, unreachable
from tasks.job.spec import UploadSpec, new_job_id, parse_spec
from tasks.job.store import REPLICATION_WAIT_MS, Created, job_store
from tasks.pipeline.message import Step, start_step
from tasks.pipeline.operations import RetryOutcome, cancel, finish, redeliver, resume, retry_failed
from tasks.pipeline.wire import celery_messages
from tasks.settings import Settings, get_settings
from tasks.telemetry import job_started

log = logging.getLogger(__name__)
BULK_BATCH = 1000  # jobs a bulk enqueue writes in one round trip
WRITERS = 2  # batches of a bulk enqueue being written at once


def enqueue_upload(source: str, *, token: str | None = None, video: dict[str, Any] | None = None,
                   chunk_size: int | str | None = None, job_id: str | None = None,
                   callback_url: str | None = None, account: str | None = None, tenant: str | None = None,
                   priority: str | None = None, live: bool = False, finish_when_idle_s: int | None = None,
                   settings: Settings | None = None) -> str:
    """Enqueue one upload and return its job id at once. ``live``: the file is still being written; it
    goes up as it grows until ``finish_upload`` (or ``finish_when_idle_s`` seconds without growth).

    Raises ``SpecError`` (a ValueError naming the field) for a bad spec, or for a ``job_id``
    already used with another spec, and ``EnqueueError`` when Redis cannot be reached.
    """
    settings = settings or get_settings()
    spec = prepared({"source": source, "token": token, "video": video or {}, "chunk_size": chunk_size,
                     "job_id": job_id, "callback_url": callback_url, "account": account, "tenant": tenant,
                     "priority": priority, "live": live or None, "finish_when_idle_s": finish_when_idle_s},
                    settings)
    job_id = str(spec.job_id)
    store = job_store(settings)
    try:
        created = store.create(spec, queue=settings.queue, replicas=1 if settings.sentinel else 0,
                               **job_started(job_id))
    except redis.RedisError as exc:
        raise EnqueueError(unreachable(settings.redis_url, exc)) from None
    if created.created and settings.sentinel and not created.replicated:
        log.warning("job %s: no replica confirmed it within a second (a failover now could lose it)", job_id)
    if not created.created:
        _same_job(spec, created)
        return job_id  # the same request again: the same job, no second message
    try:
        send_step(replace(_start(spec), handoff_at=created.at), settings)
    except EnqueueError:
        store.forget(job_id)  # nothing half-written: the producer may simply try again
        raise
    return job_id


def enqueue_many(specs: Iterable[Mapping[str, Any]], settings: Settings | None = None,
                 batch: int = BULK_BATCH) -> list[str | SpecError]:
    """Enqueue many uploads (each a spec as ``send_task`` takes it) and return, in order, each one's job
    id or the ``SpecError`` that refused it (nothing of a refused spec is written). Records and start
    messages go in pipelined batches of ``batch``; ``job_id`` is an idempotency key as for
    ``enqueue_upload``. ``EnqueueError`` when Redis cannot be reached (the batches before it stay)."""
    settings = settings or get_settings()
    results: list[str | SpecError] = []
    with _Batches(settings, results) as batches:
        pending: list[tuple[int, UploadSpec]] = []
        for raw in specs:
            try:
                pending.append((len(results), prepared(raw, settings)))
                results.append(str(pending[-1][1].job_id))
            except SpecError as exc:
                results.append(exc)
            if len(pending) >= batch:
                batches.send(pending)
                pending = []
        batches.send(pending)
    return results


def prepared(raw: Mapping[str, Any], settings: Settings) -> UploadSpec:
    """A producer's spec, validated, with its job id; an account the producer's keyring (its
    ``VUQ_ACCOUNTS_FILE``) does not hold is refused here rather than at the job's start."""
    if isinstance(raw, Mapping) and raw.get("job_id") is None:
        raw = {**raw, "job_id": new_job_id()}
    spec = parse_spec(raw, settings.net_policy)
    named = spec.account not in (None, DEFAULT_ACCOUNT)  # whether the workers hold `default` is theirs to say
    if named and settings.accounts and settings.account(str(spec.account)) is None:
        known = ", ".join(repr(a.name) for a in settings.keyring)
        raise SpecError("account", f"unknown account {spec.account!r} (the keyring holds: {known})")
    return spec


class _Batches:
    """Bulk enqueue's batches, written by ``WRITERS`` threads while the next ones are prepared: one
    batch's script runs in Redis while another's arguments are packed. At most ``WRITERS`` batches are
    in flight; the first error stops the rest (the batches written before it stay)."""

    def __init__(self, settings: Settings, results: list[str | SpecError]) -> None:
        self.settings, self.results = settings, results
        self.pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="vuq-enqueue")
        self.writing: list[Future[None]] = []
        self.bundled = settings.redis_url == settings.broker_url  # records and messages in one script call
        try:  # the hand-off time is Redis's clock, as for a single enqueue
            self.skew = job_store(settings).now() - time.time()
        except redis.RedisError as exc:
            raise EnqueueError(unreachable(settings.redis_url, exc)) from None

    def __enter__(self) -> _Batches:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            if kind is None:
                self._wait(0)
        finally:
            self.pool.shutdown(wait=True)

    def send(self, pending: list[tuple[int, UploadSpec]]) -> None:
        if not pending:
            return
        handoff = time.time() + self.skew
        messages = (celery_messages([_start(spec) for _, spec in pending], self.settings.queue, handoff)
                    if self.bundled else [""] * len(pending))
        jobs = [(index, spec, message) for (index, spec), message in zip(pending, messages, strict=True)]
        self._wait(WRITERS - 1)
        self.writing.append(self.pool.submit(_enqueue_batch, jobs, self.results, self.settings))

    def _wait(self, in_flight: int) -> None:
        """Until at most ``in_flight`` batches are being written (the oldest first)."""
        while len(self.writing) > in_flight:
            self.writing.pop(0).result()


def _enqueue_batch(jobs: list[tuple[int, UploadSpec, str]], results: list[str | SpecError],
                   settings: Settings) -> None:
    """One round trip for the records and start messages of ``jobs`` (the broker is the job store's Redis),
    else a round trip for each record and one publication each."""
    store = job_store(settings)
    try:
        if settings.redis_url == settings.broker_url:
            created = store.create_many([(spec, message) for _, spec, message in jobs], settings.queue,
                                        [job_started(str(spec.job_id)) for _, spec, _ in jobs],
                                        queue=settings.queue)
            if settings.sentinel:  # a replica holds the batch before the producer is answered
                store.redis.execute_command("WAIT", 1, REPLICATION_WAIT_MS)
        else:
            created = [store.create(spec, queue=settings.queue, **job_started(str(spec.job_id))) for _, spec, _ in jobs]
            for (_, spec, _), outcome in zip(jobs, created, strict=True):
                if outcome.created:
                    send_step(replace(_start(spec), handoff_at=outcome.at), settings)
    except redis.RedisError as exc:
        raise EnqueueError(unreachable(settings.redis_url, exc)) from None
    for (index, spec, _), outcome in zip(jobs, created, strict=True):
        if not outcome.created:
            try:
                _same_job(spec, outcome)
            except SpecError as exc:
                results[index] = exc


def _start(spec: UploadSpec) -> Step:
    return start_step(spec)


def _same_job(spec: UploadSpec, created: Created) -> None:
    """An id already in use is the same job only with the same spec."""
    if created.conflicts(spec.fingerprint()):
        raise SpecError("job_id", f"{spec.job_id!r} already names a job with a different spec ({created.state}); "
                                  "use another job_id, or the same spec to get that job")


def resume_upload(job_id: str, token: str | None = None, settings: Settings | None = None) -> Step:
    """Continue a failed job from its last acknowledged chunk (``token``: a new upload token).
    Returns the step it continues with (its ``task`` and ``chunk``); ``OperationError`` (the message
    says why) when the job is not failed or needs a new token."""
    settings = settings or get_settings()
    return resume(job_store(settings), job_id, lambda s: send_step(s, settings), token)


def finish_upload(job_id: str, size: int | None = None, settings: Settings | None = None) -> str:
    """End a live job: its file is complete at ``size`` bytes (None: the file's size as the workers see
    it now). Its last part goes at once, then its metadata. Returns what happens, in one line;
    ``OperationError`` (naming the job and the reason) when the job is not live, already ended, or the
    size is not more than what was sent. A failed live job (idle past its timeout) is resumed."""
    settings = settings or get_settings()
    return finish(job_store(settings), job_id, lambda s: send_step(s, settings), size)


def cancel_upload(job_id: str, keep_video: bool = False, settings: Settings | None = None) -> str:
    """Stop a queued or uploading job at its next chunk; a worker with the API key deletes the partial
    video unless ``keep_video``. Returns what happens to the video; ``OperationError`` if it cannot."""
    settings = settings or get_settings()
    return cancel(job_store(settings), job_id, lambda s: send_step(s, settings), keep_video)


def retry_failed_uploads(include_permanent: bool = False, settings: Settings | None = None) -> RetryOutcome:
    """Resume every failed job whose error may go away (``include_permanent``: every one that does not
    need a new token); what was resumed and what was skipped, by reason."""
    settings = settings or get_settings()
    return retry_failed(job_store(settings), lambda s: send_step(s, settings), include_permanent)


def redeliver_webhook(job_id: str, settings: Settings | None = None) -> None:
    """Deliver an ended job's completion webhook again (``vuq webhook JOB``); ``OperationError`` if it has
    none or has not ended."""
    settings = settings or get_settings()
    redeliver(job_store(settings), job_id, lambda s: send_step(s, settings))


def send_step(step: Step, settings: Settings | None = None) -> None:
    """Enqueue one pipeline step by task name (operator commands, resume), labelled for Flower
    and carrying its hand-off time for the janitor."""
    settings = settings or get_settings()
    if step.handoff_at is None:
        step = replace(step, handoff_at=job_store(settings).now())
    try:
        _producer(settings.broker_url, settings.sentinel).send_task(
            step.task, queue=settings.queue, retry=True, retry_policy={"max_retries": 2}, **step.message())
    except (OperationalError, redis.RedisError, OSError) as exc:
        raise EnqueueError(unreachable(settings.broker_url, exc, "the broker (Redis)")) from None


@cache
def _producer(broker_url: str, sentinel: SentinelOptions | None = None) -> Celery:
    app = Celery("vuq-producer", broker=broker_url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=False, broker_connection_max_retries=2,
                    task_serializer="json", accept_content=["json"],
                    broker_transport_options=broker_transport_options(sentinel))
    return app
