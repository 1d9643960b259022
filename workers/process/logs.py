"""Logging hygiene: secrets never reach a log line, tracebacks included, and httpx does not log
request URLs.

Redaction happens in the formatter, on the finished text: the message, its arguments and
the traceback Celery or ``log.exception`` attaches are all in it by then (a filter runs
before the traceback is formatted and would miss it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tasks.redact import redact


class RedactingFormatter(logging.Formatter):
    """Wraps a handler's formatter and masks known secrets and credential shapes in its output."""

    def __init__(self, inner: logging.Formatter | None, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record), self.secrets)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.inner.formatTime(record, datefmt)


def install_redaction(secrets: Iterable[str] = (), logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of every handler of the root logger and of ``logger`` (Celery's task
    logger has handlers of its own), and keep httpx's per-request INFO lines out."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    secrets = list(secrets)
    handlers = [*logging.getLogger().handlers, *(logger.handlers if logger is not None else [])]
    for handler in handlers:
        current = handler.formatter
        if isinstance(current, RedactingFormatter):
            current.secrets = [s for s in secrets if s]
        else:
            handler.setFormatter(RedactingFormatter(current, secrets))
