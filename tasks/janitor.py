"""The janitor: finds active jobs nobody works on and enqueues their next step.

A job is stuck when no worker holds its lease and neither its heartbeat nor a
scheduled retry (``wake_at``) is recent: its worker died, or the message for its
next step was lost. The late original message, if Redis ever hands it back,
meets the fencing check and does nothing.
"""

from __future__ import annotations

import logging
import time

from tasks.jobstore import JobStore
from tasks.operations import Send, next_step
from tasks.record import JobRecord, State

log = logging.getLogger(__name__)
WATCHED_STATES = (State.UPLOADING, State.FINALIZING, State.QUEUED)


def is_stuck(job: JobRecord, now: float, stale_after_s: float) -> bool:
    if job.heartbeat_at is None:  # never picked up: its start message is still queued
        return False
    last_sign = max(job.heartbeat_at, job.wake_at or 0.0)
    return now - last_sign > stale_after_s


def sweep(store: JobStore, send: Send, stale_after_s: float, now: float | None = None) -> list[str]:
    """Re-enqueue the next step of every stuck job; returns their ids."""
    now = time.time() if now is None else now
    rescued = []
    for job in store.list(states=WATCHED_STATES, limit=None):
        if not is_stuck(job, now, stale_after_s) or store.lease_holder(job.job_id):
            continue
        step, _ = next_step(job)
        # wake_at marks the rescue, so the next sweep leaves the job alone for a while
        if store.update(job.job_id, None, {"wake_at": f"{now:.3f}"}, expect={"state": [job.state]}):
            send(step)
            rescued.append(job.job_id)
            log.warning("janitor: job %s had no heartbeat for %.0fs; enqueued %s", job.job_id,
                        now - (job.heartbeat_at or now), step.task)
    return rescued
