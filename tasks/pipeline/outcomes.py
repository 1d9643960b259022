"""How a pipeline step ends, decided in one place for every step and every failure.

A step ends in one of four ``Outcome``s, which the Celery adapter only maps to Celery:

    Continue(step)         the step did its work: publish ``step`` (the next chunk, finalize, a webhook)
    Stop(why)              nothing more to do here: a duplicate, a job that moved on, a deferred step
    Retry(delay_s, error)  the step is in the delayed set, due in ``delay_s`` (Flower shows RETRY)
    Fail(failure, then)    the job failed and its record says so: publish ``then`` (its webhook, if
                           any) and end the task with ``failure`` (``JobFailed``, resumable or not)

``Ending.after`` turns what a step raised into one of them, on the error's class alone
(``tasks.errors``): another holder (``Busy``), the fleet's budget (``Throttled``) or a live file that
has not grown enough (``WaitingForBytes``) defers the step,
a ``RetryableError`` or a Redis outage retries it with backoff until ``VUQ_MAX_RETRIES``, a
``PermanentError`` fails the job (resumable as the error says), anything else is a bug that fails
the job resumable with its traceback logged once. Deferrals and retries wait in the delayed set on
Redis's clock; every write is fenced like the step's own, so a stale holder changes nothing.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import redis

from tasks.errors import (
    Busy,
    GaveUp,
    InternalError,
    JobFailed,
    JobFailedResumable,
    LeaseLost,
    PermanentError,
    RetryableError,
    Throttled,
    WaitingForBytes,
)
from tasks.job.connections import patiently
from tasks.job.record import ACTIVE_STATES, State, resume_command
from tasks.job.store import Expect, JobStore
from tasks.pipeline.backoff import backoff_s
from tasks.pipeline.message import Step, callback_step
from tasks.pipeline.reports import NOBODY_IN_PARTICULAR, Reporter, Whose
from tasks.redact import redact
from tasks.settings import Settings
from tasks.telemetry import event, job_ended

log = logging.getLogger(__name__)
REDIS_PATIENCE_S = 20.0  # how long a step waits for Redis to answer again (a failover takes seconds)
DEFER_JITTER_S = 1.0  # steps of many jobs waiting for a lease do not all come back in the same instant
# A step waiting for a budget slot comes back this much before it (the delayed-step pump publishes twice a
# second) and waits the rest in the worker (at most MAX_INLINE_WAIT_S): the slot is taken on time, not late.
SLOT_EARLY_S = 0.5
SLOT_JITTER_S = 0.2


@dataclass(frozen=True)
class Attempt:
    """Which execution of a step this is: its task id (kept across retries, so Flower shows one
    task retried) and how many times it was retried before."""

    task_id: str | None = None
    retries: int = 0


@dataclass(frozen=True)
class Continue:
    step: Step


@dataclass(frozen=True)
class Stop:
    why: str


@dataclass(frozen=True)
class Retry:
    delay_s: float
    error: RetryableError


@dataclass(frozen=True)
class Fail:
    failure: JobFailed
    then: Step | None = None


Outcome = Continue | Stop | Retry | Fail


def failure_for(job_id: str, error: PermanentError) -> JobFailed:
    """The exception a task ends with when ``error`` failed the job ``job_id``: its reason first
    (Flower's exception column shows the start of the message), then how to continue, if a resume can."""
    if not error.resumable:
        return JobFailed(f"{error}; not resumable (job {job_id})")
    return JobFailedResumable(f"{error}; resume: {resume_command(job_id, error.needs)}")


class Ending:
    """Ends steps: defers, retries and fails them in the job store, fenced by the step's expectation."""

    def __init__(self, store: JobStore, settings: Settings, reporter: Reporter,
                 revoke: Callable[[str], object] | None = None) -> None:
        self.store, self.settings, self.reporter, self.revoke = store, settings, reporter, revoke

    def after(self, step: Step, holder: str, expect: Expect, attempt: Attempt, exc: BaseException) -> Outcome:
        """The outcome of a step that raised ``exc``."""
        if isinstance(exc, LeaseLost):
            event("vuq.lease.lost")
            log.info("%s", exc)
            return Stop(str(exc))
        if isinstance(exc, Busy):  # another worker holds the job: ask again shortly (its lease is not ours)
            self.store.later(step.to_member(attempt.task_id, attempt.retries),
                             exc.wait_s + random.uniform(0, DEFER_JITTER_S))
            log.info("job %s: %s; asking again shortly", step.job_id, exc)
            return Stop(str(exc))
        if isinstance(exc, WaitingForBytes):  # a live job's file: look again shortly, holding nothing
            self._schedule(step, holder, expect, attempt, exc.wait_s, None)
            log.debug("%s", exc)
            return Stop(str(exc))
        if isinstance(exc, Throttled):  # the fleet's api.video budget: wait for it, not a retry
            delay = max(0.0, exc.wait_s - SLOT_EARLY_S) + random.uniform(0, SLOT_JITTER_S)
            event("vuq.deferred", reason="budget", request_class=exc.request_class, delay_s=round(delay, 3))
            self._schedule(step, holder, expect, attempt, delay, None)
            log.info("job %s: %s; step deferred", step.job_id, exc)
            return Stop(str(exc))
        if isinstance(exc, redis.RedisError):
            # Redis (the job store) is away: a restart, a failover, a partition. The record is as the
            # last fenced write left it; retry once Redis answers again, or leave the job to the
            # janitor. An outage never fails a job.
            log.warning("job %s: Redis unavailable (%s); the step will be tried again", step.job_id,
                        type(exc).__name__)
            exc = RetryableError(f"Redis unavailable: {type(exc).__name__}", reason="redis")
        if isinstance(exc, RetryableError):
            return self.retry(step, holder, expect, attempt, exc)
        if not isinstance(exc, PermanentError):  # a bug: the traceback is logged once
            message = redact(f"internal error: {type(exc).__name__}: {exc}", self.settings.secrets())
            log.error("job %s: %s", step.job_id, message, exc_info=exc)
            exc = InternalError(message)
        return self.fail(step.job_id, holder, expect, exc)

    def retry(self, step: Step, holder: str, expect: Expect, attempt: Attempt, error: RetryableError) -> Outcome:
        """Schedule the step again after a backoff, or fail the job once retries are used up."""
        settings = self.settings
        if attempt.retries >= settings.max_retries:
            return self.fail(step.job_id, holder, expect, GaveUp(attempt.retries + 1, error))
        delay = backoff_s(attempt.retries, settings.retry_backoff_s, settings.retry_backoff_max_s,
                          error.retry_after_s)
        event("vuq.retry", reason=error.reason, attempt=attempt.retries + 1, delay_s=round(delay, 3), error=str(error))
        if not self._schedule(step, holder, expect, attempt, delay, error.reason):
            return Stop("not rescheduled")
        job = self.store.get(step.job_id)
        self.reporter.retry(step.job_id, error.reason, Whose(*job.whose) if job else NOBODY_IN_PARTICULAR)
        log.warning("job %s: %s; retry %d/%d in %.1fs", step.job_id, error, attempt.retries + 1,
                    settings.max_retries, delay)
        return Retry(delay, error)

    def fail(self, job_id: str, holder: str, expect: Expect, error: PermanentError) -> Outcome:
        """Record the failure, fenced like the step's own writes (a stale holder cannot fail a job
        another worker moves); the record and its cursor stay, so the job can be resumed."""
        changes = {"state": State.FAILED, "error": str(error), "error_reason": error.reason,
                   "error_retryable": error.resumable, "error_needs": error.needs or ""}
        fence = {"state": [s for s in ACTIVE_STATES if s in expect.get("state", ACTIVE_STATES)],
                 **{k: v for k, v in expect.items() if k != "state"}}
        written = self.store.update(job_id, holder, changes, expect=fence, release=True, reclaim=True)
        if not written:  # the job moved on under another worker: this step's failure is not the job's
            log.info("job %s: not marked failed (%s): %s", job_id, written.why, error)
            return Stop(written.why)
        job = self.store.get(job_id)
        if job is not None:
            job_ended(job, State.FAILED, written.at)
        self.reporter.state(job_id, State.FAILED, Whose(*job.whose) if job else NOBODY_IN_PARTICULAR)
        hint = f"resumable: {resume_command(job_id, error.needs)}" if error.resumable else "not resumable"
        log.warning("job %s: failed: %s (%s)", job_id, error, hint)
        self._revoke(job_id)
        return Fail(failure_for(job_id, error), callback_step(job) if job else None)

    def _revoke(self, job_id: str) -> None:
        """A token vuq minted for the job is owed its deletion now that the job ended (failed)."""
        if self.revoke is None:
            return
        try:
            self.revoke(job_id)
        except Exception as exc:  # the failure is recorded: a revocation left owed is the janitor's
            log.info("job %s: its minted token is left to the janitor (%s)", job_id, type(exc).__name__)

    def _schedule(self, step: Step, holder: str, expect: Expect, attempt: Attempt, delay_s: float,
                  retry_reason: str | None) -> bool:
        """The step into the delayed set and our lease released, in one fenced write; a retry counts."""
        retries = attempt.retries + (1 if retry_reason else 0)
        try:
            member = step.to_member(attempt.task_id, retries)
            written = patiently(lambda: self.store.schedule(step.job_id, holder, member, delay_s, expect,
                                                            retry_reason=retry_reason), REDIS_PATIENCE_S)
        except redis.RedisError as exc:
            log.warning("job %s: Redis still unavailable (%s); the janitor will continue the job", step.job_id,
                        type(exc).__name__)
            return False
        if not written:
            log.info("job %s: not rescheduled (%s)", step.job_id, written.why)
        return bool(written)
