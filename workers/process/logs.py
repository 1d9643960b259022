"""Logging hygiene: secrets never reach a log line, tracebacks included, and httpx does not log
request URLs.

Redaction happens in the formatter, on the finished text: the message, its arguments and
the traceback Celery or ``log.exception`` attaches are all in it by then (a filter runs
before the traceback is formatted and would miss it).

``VUQ_LOG_FORMAT=json`` makes each record one JSON object on one line (``JsonFormatter``): the time,
level, logger and message, and, inside a step, its job id and chunk and the trace and span ids of its
span (when it is traced), so a log search lands on the trace and back. Each text is redacted before it
is encoded (a secret with a quote in it is found as it was written, not as JSON escapes it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from tasks.redact import redact
from tasks.telemetry import log_fields


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


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, then those there are of ``job_id``, ``chunk`` (0-based, as in messages), ``trace_id``,
    ``span_id`` and ``exception`` (the traceback). Every text is redacted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": self._clean(record.getMessage()),
            **log_fields(),
        }
        if record.exc_info:
            entry["exception"] = self._clean(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self._clean(record.exc_text)
        if record.stack_info:
            entry["stack"] = self._clean(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)


def install_redaction(secrets: Iterable[str] = (), logger: logging.Logger | None = None,
                      log_format: str = "text") -> None:
    """Wrap the formatter of every handler of the root logger and of ``logger`` (Celery's task
    logger has handlers of its own), and keep httpx's per-request INFO lines out. ``log_format``
    ``json`` (``VUQ_LOG_FORMAT``) puts a ``JsonFormatter`` on those handlers instead."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    secrets = list(secrets)
    handlers = [*logging.getLogger().handlers, *(logger.handlers if logger is not None else [])]
    for handler in handlers:
        current = handler.formatter
        if log_format == "json":
            if isinstance(current, JsonFormatter):
                current.secrets = [s for s in secrets if s]
            else:
                handler.setFormatter(JsonFormatter(secrets))
        elif isinstance(current, RedactingFormatter):
            current.secrets = [s for s in secrets if s]
        else:
            handler.setFormatter(RedactingFormatter(current, secrets))
