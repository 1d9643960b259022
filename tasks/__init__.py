"""vuq's upload pipeline, as producers and operators use it.

``enqueue_upload`` enqueues one upload and returns its job id, ``enqueue_many`` many at once;
``finish_upload`` ends a live one; ``resume_upload``, ``cancel_upload`` and ``retry_failed_uploads`` are
the operator actions; ``send_step``
publishes one pipeline step by name.
Other services send ``vuq.upload.start`` by name (README, "The contract"). Importing ``tasks`` reads
no environment and connects nowhere.

The rooms of this package, bottom up (README, "Code map"): the base (``constants``, ``errors``,
``redact``); the two edges, ``apivideo`` and ``outbound``; the job (``job``); ``settings``; the
Celery-free pipeline (``pipeline``); and this door: the Celery tasks (``uploads``, ``upkeep``), the
producer (``producer``), webhook signatures (``webhooks``) and per-process wiring (``runtime``).
"""

from tasks.errors import EnqueueError, SpecError
from tasks.pipeline.operations import OperationError, RetryOutcome
from tasks.producer import (
    cancel_upload,
    enqueue_many,
    enqueue_upload,
    finish_upload,
    redeliver_webhook,
    resume_upload,
    retry_failed_uploads,
    send_step,
)
from tasks.settings import Settings

__all__ = ["EnqueueError", "OperationError", "RetryOutcome", "Settings", "SpecError", "cancel_upload",
           "enqueue_many", "enqueue_upload", "finish_upload",
           "redeliver_webhook", "resume_upload", "retry_failed_uploads", "send_step"]
