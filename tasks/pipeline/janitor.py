"""The janitor: finds active jobs nobody works on and enqueues their next step; forgets what
retention let go; re-sends completion webhooks no worker delivered.

It tells "waiting in a long queue" from "lost" by hand-off times. Every step vuq publishes
carries the time its record noted the hand-off (Redis's clock), and the queue is first in,
first out: while the oldest message still waiting was handed off before (or about when) a
job's step was, that step may be waiting too and is left alone, however long the backlog.
A step handed off well before the oldest waiting message (or with the queue empty) that no
worker picked up was lost: a broker restart without AOF, a producer that died between the
record and the message, a worker killed between taking a message and starting it. A job a
worker picked up and nobody holds now (its worker died, its message redelivered later or
never) is stuck once its heartbeat is older than ``stale_after_s``. A scheduled step
(``wake_at``) is left alone until it is overdue by as long. Reads only the active jobs.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace

import redis

from tasks.constants import HANDOFF_HEADER, TASK_WEBHOOK
from tasks.job.record import JobRecord
from tasks.job.store import NOW, JobStore
from tasks.pipeline.message import Send, Step
from tasks.pipeline.operations import next_step
from tasks.telemetry import rescued as traced_rescue

log = logging.getLogger(__name__)
QUEUE_HEAD_PEEK = 20  # messages looked at from the oldest end for one that carries a hand-off time
UNKNOWN = math.nan  # the queue's oldest messages carry no hand-off time: nothing can be told


def queue_head(broker: redis.Redis, queue: str) -> float | None:
    """The hand-off time of the oldest waiting message vuq sent (None: the queue is empty;
    UNKNOWN: the oldest ones came from elsewhere). kombu pushes on the left, pops on the right."""
    waiting = broker.lrange(queue, -QUEUE_HEAD_PEEK, -1)
    if not waiting:
        return None
    for raw in reversed(waiting):
        try:
            sent_at = json.loads(raw).get("headers", {}).get(HANDOFF_HEADER)
        except (ValueError, AttributeError):
            continue
        if sent_at is not None:
            return float(sent_at)
    return UNKNOWN


def needs_rescue(job: JobRecord, now: float, stale_after_s: float, head: float | None) -> bool:
    """Whether nobody will move ``job`` unless the janitor sends its next step (its lease is free)."""
    if job.wake_at is not None and now < job.wake_at + stale_after_s:
        return False  # a deferred or retried step is scheduled; the pump publishes it when due
    handoff = job.handoff_at or job.created_at
    if job.heartbeat_at is not None and job.heartbeat_at >= handoff:
        return now - job.heartbeat_at > stale_after_s  # picked up, and its worker went away
    queue_moved_past = head is None or head > handoff + stale_after_s
    return queue_moved_past and now - handoff > stale_after_s


def sweep(store: JobStore, send: Send, stale_after_s: float, head: float | None, queue: str | None = None
          ) -> list[str]:
    """Re-enqueue the next step of every job of ``queue`` (None: every job) nobody will move;
    returns their ids. Jobs of other queues belong to their own deployment's janitor."""
    store.prune_expired()
    now = store.now()
    jobs = [j for j in store.active() if queue is None or j.queue in (None, queue)]
    rescued = []
    for job, held in zip(jobs, store.leases([j.job_id for j in jobs]), strict=True):
        if held or not needs_rescue(job, now, stale_after_s, head):
            continue
        step, _ = next_step(job)
        # a compare-and-set on the hand-off: a second janitor, or the job moving meanwhile, wins
        written = store.update(job.job_id, None, {"handoff_at": NOW, "wake_at": ""}, exclusive=True,
                               expect={"state": [job.state], "handoff_at": [job.handoff_at or ""],
                                       "next_chunk": [job.next_chunk]})
        if written:
            send(replace(step, handoff_at=written.at))
            rescued.append(job.job_id)
            idle_s = now - max(job.heartbeat_at or 0, job.handoff_at or job.created_at)
            traced_rescue(job, step.task, idle_s)
            log.warning("janitor: job %s had nobody moving it (last sign %.0fs ago); enqueued %s", job.job_id,
                        idle_s, step.task)
    return rescued


def resend_webhooks(store: JobStore, send: Send, stale_after_s: float, queue: str | None = None) -> list[str]:
    """Completion webhooks owed for longer than ``stale_after_s`` with no delivery under way
    (of ``queue``'s jobs; a job whose record is gone owes nothing)."""
    due = store.outbox_due(older_than_s=stale_after_s)
    records = {job.job_id: job for job in store.records(due)}
    for job_id in set(due) - set(records):
        store.outbox_done(job_id)
    owed = [j for j in due if j in records and (queue is None or records[j].queue in (None, queue))]
    for job_id in owed:
        store.outbox_later(job_id, 0.0)
        send(Step(TASK_WEBHOOK, job_id))
        traced_rescue(records[job_id], TASK_WEBHOOK)
        log.warning("janitor: job %s's completion webhook was not delivered; sent again", job_id)
    return owed
