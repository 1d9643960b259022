"""The upload pipeline without Celery: steps, their outcomes, leases, deferred steps, the janitor,
operator actions.

Rule of this room: it imports every room below it (``tasks.job``, ``tasks.apivideo``,
``tasks.outbound``, ``tasks.settings`` and the base), never Celery, kombu or ``workers``: the Celery
tasks at the door of ``tasks`` are thin adapters over ``Pipeline.run`` and its ``Outcome``.
"""

from tasks.pipeline.deferred import DelayedStepPump, publish_due
from tasks.pipeline.janitor import queue_head, resend_webhooks, sweep
from tasks.pipeline.leases import LeaseKeeper, new_holder
from tasks.pipeline.message import Send, Sent, Step, callback_step, step_for
from tasks.pipeline.operations import OperationError, RetryOutcome, cancel, next_step, resume, retry_failed
from tasks.pipeline.outcomes import Attempt, Continue, Fail, Outcome, Retry, Stop
from tasks.pipeline.reports import NOBODY_IN_PARTICULAR, NULL_REPORTER, Reporter, Whose
from tasks.pipeline.upload import Pipeline, expectation

__all__ = [
    "NOBODY_IN_PARTICULAR", "NULL_REPORTER", "Attempt", "Continue", "DelayedStepPump", "Fail", "LeaseKeeper",
    "OperationError", "Outcome", "Pipeline", "Reporter", "Retry", "RetryOutcome", "Send", "Sent", "Step", "Stop",
    "Whose", "callback_step", "cancel", "expectation", "new_holder", "next_step", "publish_due", "queue_head",
    "resend_webhooks", "resume", "retry_failed", "step_for", "sweep",
]
