"""The pipeline's exceptions: one base class, two branches.

    VuqError
     ├── RetryableError        transient: try the same step again later
     │    ├── ApiUnavailable   connection error, timeout, 5xx, 429 from api.video
     │    ├── SourceUnavailable  the source could not be read just now
     │    └── ChunkInFlight    (pipeline) "range overlap" for a range api.video does not hold yet
     ├── PermanentError        the job fails at once, with this message in its record
     │    ├── SpecError        a bad field in the job spec (names the field)
     │    ├── SourceError      the source is missing, unreadable, outside the roots, changed
     │    ├── ApiRejected      api.video answered 4xx (its error title is kept)
     │    ├── ConfigError      the worker's own settings are wrong
     │    ├── BlockedAddress   (netpolicy) a source or callback on a refused address
     │    ├── StepKeepsDying   (pipeline) a step started again and again, never finished
     │    └── JobFailed        (failures) how a task ends when its job failed; resumable or not
     ├── Throttled             not an error: wait (the fleet's api.video budget), then go on
     │    └── Busy             another worker holds the job's lease just now: ask again shortly
     ├── LeaseLost             (pipeline) the job moved on under this step: stop quietly
     └── EnqueueError          (producer side) the job could not be enqueued; nothing was left written

Retry decisions are made on the class, never on message text. httpx and Redis
exceptions are translated at the boundary modules that talk to them, and no
message ever carries a token or an API key.
"""

from __future__ import annotations


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


class PermanentError(VuqError):
    """The job cannot succeed by retrying the same step; it fails with this message."""

    reason = "permanent"


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


class ApiRejected(PermanentError):
    """api.video refused the request with a 4xx other than 429."""

    reason = "api_rejected"

    def __init__(self, status: int, title: str, slug: str = "", name: str = "") -> None:
        field = f" (field {name!r})" if name else ""
        super().__init__(f"api.video answered {status}: {title}{field}")
        self.status = status
        self.title = title
        self.slug = slug
        self.name = name


class ConfigError(PermanentError):
    """A VUQ_* setting is missing or invalid; the message names the variable."""

    reason = "config"


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


class Busy(Throttled):
    """Another worker holds the job's lease; the step is deferred a moment, not dropped."""

    reason = "busy"

    def __init__(self, holder: str, wait_s: float) -> None:
        super().__init__(wait_s)
        self.args = (f"the job is held by {holder}; asking again in {wait_s:.1f}s",)


# HTTP answers worth another try (api.video, sources, callbacks); every other 4xx is final.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is transient: retried, never a reason to fail the job."""
    return status in RETRYABLE_STATUS or status >= 500
