"""How a task ends when its job failed: an exception whose type says whether ``vuq resume`` can
help, and whose message says why, in one line (Flower's exception column, the worker log).

    JobFailed             the job failed; resuming it would meet the same error
     └── JobFailedResumable  the job failed; `vuq resume` (maybe with a new token) continues it
"""

from __future__ import annotations

from tasks.errors import PermanentError, VuqError
from tasks.job.record import resume_command


class JobFailed(PermanentError):
    """The job failed and a resume cannot help: the source, spec or request must change."""

    reason = "job_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __reduce__(self) -> tuple[type[JobFailed], tuple[str]]:
        return type(self), (str(self),)


class JobFailedResumable(JobFailed):
    """The job failed and `vuq resume` continues it from its cursor once the cause is fixed."""


def failure_for(job_id: str, error: VuqError, resumable: bool, needs: str | None = None) -> JobFailed:
    """The exception a task ends with when ``error`` failed the job ``job_id``."""
    if not resumable:  # the reason first: Flower's exception column shows the start of the message
        return JobFailed(f"{error}; not resumable (job {job_id})")
    return JobFailedResumable(f"{error}; resume: {resume_command(job_id, needs)}")
