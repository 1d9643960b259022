"""The pipeline's exceptions: one base class, five branches, and what each means for a job.

    VuqError
     ├── RetryableError          transient: the same step is tried again later (backoff, bounded)
     │    ├── ApiUnavailable     connection error, timeout, 5xx, 429 from api.video
     │    ├── SourceUnavailable  the source could not be read just now
     │    │    └── SourceStalled  the source was too slow: past its deadline or below its minimum pace
     │    ├── StepTimedOut       the step ran past its soft time limit
     │    └── RangeArriving      "range overlap" for a range api.video does not hold yet
     ├── PermanentError          the job fails at once, with this message in its record
     │    ├── SpecError          a bad field in the job spec (names the field)
     │    ├── SourceError        the source is missing, unreadable, outside the roots, changed
     │    │    └── LiveSizeError  a live file shrank, or its finish gave a size it does not have [resumable]
     │    ├── LiveIdle           a live file neither grew nor was finished for its timeout   [resumable]
     │    ├── ApiRejected        api.video answered 4xx (its error title is kept)
     │    ├── ConfigError        the worker's own settings are wrong                    [resumable]
     │    ├── TokenNeeded        no upload token, and no key to mint one          [resumable, with a token]
     │    ├── BlockedAddress     (tasks.outbound) a source or callback on a refused address
     │    ├── StepKeepsDying     a step started again and again, never finished          [resumable]
     │    ├── GaveUp             a retryable error outlasted VUQ_MAX_RETRIES               [resumable]
     │    ├── InternalError      a bug: an exception vuq did not expect                   [resumable]
     │    └── JobFailed          how a task ends when its job failed (Flower's exception column)
     │         └── JobFailedResumable
     ├── Throttled               not an error: wait (the fleet's api.video budget), then go on
     │    └── Busy               another worker holds the job's lease just now: ask again shortly
     ├── WaitingForBytes         a live job's file has not grown enough for its next part: look again soon
     ├── LeaseLost               the job moved on under this step: stop quietly
     ├── BadMessage              a task message with arguments vuq never writes: refused, touches nothing
     └── EnqueueError            (producer side) the job could not be enqueued; nothing was left written

A ``PermanentError`` says itself whether ``vuq resume`` can help (``resumable``) and what a resume
needs first (``needs``: a new upload token), so the decision is made once, where the error is
made: retry decisions are made on the class, never on message text. httpx and Redis exceptions
are translated at the boundary modules that talk to them, and no message ever carries a token or
an API key.
"""

from __future__ import annotations

from tasks.constants import NEEDS_TOKEN


class VuqError(Exception):
    """Base of every error the pipeline raises on purpose."""

    reason = "error"


class RetryableError(VuqError):
    """A transient failure: the step may succeed if tried again later."""

    def __init__(self, message: str, *, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class ApiUnavailable(RetryableError):
    """api.video could not answer this time (network, timeout, 5xx, 429)."""


class SourceUnavailable(RetryableError):
    """The source could not be read this time (an http source's network error or 5xx)."""


class SourceStalled(SourceUnavailable):
    """The source sent too little too slowly (``VUQ_SOURCE_*``): nothing for a whole window, less than
    the minimum pace over one, or not the whole chunk within its deadline. The step gives its slot
    back and is retried with backoff, like any source that could not be read just now."""

    reason = "source_stalled"

    def __init__(self, message: str) -> None:
        super().__init__(message, reason=self.reason)


class StepTimedOut(RetryableError):
    """The step ran past its soft time limit (the task runner interrupted it)."""

    def __init__(self) -> None:
        super().__init__("the step ran past its soft time limit", reason="time_limit")


class RangeArriving(RetryableError):
    """api.video answered "already received" for a range it does not hold yet: another request is
    still delivering it. Retried shortly; the cursor does not move until api.video holds it."""

    reason = "in_flight"

    def __init__(self, job_id: str, index: int) -> None:
        super().__init__(f"job {job_id}: chunk {index + 1} is still arriving through another request",
                         reason=self.reason)


class PermanentError(VuqError):
    """The job cannot succeed by retrying the same step; it fails with this message. ``resumable``:
    whether ``vuq resume`` can continue it once the cause is fixed; ``needs``: what it needs first."""

    reason = "permanent"
    resumable = False
    needs: str | None = None


class SpecError(PermanentError, ValueError):
    """A job spec field is missing, of the wrong type or out of range."""

    reason = "bad_spec"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class SourceError(PermanentError):
    """The source cannot be uploaded as it is."""

    reason = "bad_source"


class SourceMissing(SourceError):
    """The source file does not exist (a live job's file may not exist yet: it waits for it)."""


class LiveSizeError(SourceError):
    """A live job's file shrank, or does not have the size its finish gave: nothing sent is lost, and a
    resume (after ``vuq finish JOB --size`` with the right size, or with the file put right) goes on."""

    reason = "live_size"
    resumable = True


class LiveIdle(PermanentError):
    """A live job's file neither grew nor was finished for ``VUQ_LIVE_IDLE_TIMEOUT_S``."""

    reason = "live_idle"
    resumable = True


class ApiRejected(PermanentError):
    """api.video refused the request with a 4xx other than 429. A refused upload token or API key
    is resumable (with a new token, or once the workers' key is fixed); other refusals are not."""

    reason = "api_rejected"

    def __init__(self, status: int, title: str, slug: str = "", name: str = "", *, token_refused: bool = False
                 ) -> None:
        field = f" (field {name!r})" if name else ""
        super().__init__(f"api.video answered {status}: {title}{field}")
        self.status = status
        self.title = title
        self.slug = slug
        self.name = name
        self.token_refused = token_refused
        # a rejected API key answers 401, or 400 authentication-invalid-user-credentials on /auth/api-key
        self.resumable = token_refused or status in (401, 403) or slug.startswith("authentication-")
        self.needs = NEEDS_TOKEN if token_refused else None


class ConfigError(PermanentError):
    """A VUQ_* setting is missing or invalid; the message names the variable."""

    reason = "config"
    resumable = True


class TokenNeeded(PermanentError):
    """The job has no upload token, and its account holds no key to mint one: a resume with a token can help."""

    reason = "token_needed"
    resumable = True
    needs = NEEDS_TOKEN


class StepKeepsDying(PermanentError):
    """The same step was started again and again and never finished: its worker died each time
    (out of memory, killed). The job fails, resumable, instead of looping."""

    reason = "worker_lost"
    resumable = True

    def __init__(self, starts: int) -> None:
        super().__init__(f"this step was started {starts} times and never finished: its worker died each time "
                         "(out of memory? killed?); look at the workers, then resume")


class GaveUp(PermanentError):
    """A retryable error came back on every try: the job fails, resumable, with its reason."""

    resumable = True

    def __init__(self, attempts: int, error: RetryableError) -> None:
        super().__init__(f"gave up after {attempts} attempts: {error}")
        self.reason = error.reason


class InternalError(PermanentError):
    """An exception vuq did not expect (a bug): the job fails resumable; the traceback is logged once."""

    reason = "internal"
    resumable = True


class JobFailed(PermanentError):
    """How a task ends when its job failed and a resume cannot help: the source, spec or request
    must change. The message says why, in one line (Flower's exception column, the worker log)."""

    reason = "job_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[type[JobFailed], tuple[str]]:
        return type(self), (str(self),)


class JobFailedResumable(JobFailed):
    """The job failed and `vuq resume` continues it from its cursor once the cause is fixed."""


class BadMessage(VuqError, ValueError):
    """A task message whose arguments vuq never writes (a wrong type, an id outside the documented pattern,
    an unknown task or field): refused before it touches anything, kept apart by message id."""

    reason = "bad_message"


class EnqueueError(VuqError):
    """The producer could not enqueue the job (Redis unreachable); nothing was half-written."""

    reason = "enqueue"


class Throttled(VuqError):
    """The account's api.video budget for a request class is used up for now; the step is
    deferred, not retried."""

    reason = "throttled"

    def __init__(self, wait_s: float, request_class: str = "upload") -> None:
        super().__init__(f"api.video {request_class} rate limit reached; next slot in {wait_s:.1f}s")
        self.wait_s = wait_s
        self.request_class = request_class


class Busy(Throttled):
    """Another worker holds the job's lease; the step is deferred a moment, not dropped."""

    reason = "busy"

    def __init__(self, holder: str, wait_s: float) -> None:
        super().__init__(wait_s)
        self.args = (f"the job is held by {holder}; asking again in {wait_s:.1f}s",)


class WaitingForBytes(VuqError):
    """A live job's next part is not there yet (its file has not grown past it, or not to its finished
    size): the step waits in the delayed set on Redis's clock, holding no worker, then looks again."""

    reason = "live_waiting"

    def __init__(self, job_id: str, size: int, wait_s: float) -> None:
        super().__init__(f"job {job_id}: live, its file has {size} bytes; looking again in {wait_s:.1f}s")
        self.wait_s = wait_s


class LeaseLost(VuqError):
    """Another worker took the job over, or it was cancelled, while this step ran; stop quietly."""


# HTTP answers worth another try (api.video, sources, callbacks); every other 4xx is final.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is transient: retried, never a reason to fail the job."""
    return status in RETRYABLE_STATUS or status >= 500
