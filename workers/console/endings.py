"""How the ``vuq`` command line ends: one line on stderr and an exit status, never a traceback.

Exit status 2: configuration or usage (a bad VUQ_* value, a bad option, a spec field, a
source the CLI can see is wrong). Exit status 1: the command could not do its work (Redis
unreachable, no such job, an operator action that does not apply to the job, a job that
ended failed). ``vuq --debug …`` shows the traceback.
"""

from __future__ import annotations

import redis
from kombu.exceptions import OperationalError

from tasks import OperationError
from tasks.errors import ConfigError, EnqueueError, SpecError
from tasks.job import unreachable
from tasks.redact import redact
from tasks.settings import Settings

USAGE_STATUS = 2
FAILURE_STATUS = 1


class CommandError(Exception):
    """The command could not do what was asked; the message says why (exit status 1)."""

    status = FAILURE_STATUS


class UsageError(CommandError):
    """The command was asked something it cannot take; the message says what instead (exit status 2)."""

    status = USAGE_STATUS


def ending(exc: BaseException, settings: Settings | None) -> tuple[int, str]:
    """The exit status and the one line for an exception that ended a command."""
    secrets = settings.secrets() if settings else []
    if isinstance(exc, SpecError | ConfigError):
        return USAGE_STATUS, str(exc)
    if isinstance(exc, CommandError):
        return exc.status, str(exc)
    if isinstance(exc, EnqueueError | OperationError):  # an operator action that does not apply: it says why
        return FAILURE_STATUS, str(exc)
    if isinstance(exc, redis.RedisError | OperationalError | ConnectionError):
        url = settings.redis_url if settings else ""
        return FAILURE_STATUS, redact(unreachable(url, exc) if url else str(exc), secrets)
    text = redact(f"{type(exc).__name__}: {exc}", secrets)
    return FAILURE_STATUS, f"unexpected error: {text} (run with --debug for the traceback)"
