"""Logging hygiene: secrets never reach a log line, and httpx does not log request URLs."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tasks.redact import redact


class RedactingFilter(logging.Filter):
    """Masks known secrets and credential-shaped values in every record's final text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logged as it is, not dropped
            return True
        cleaned = redact(message, self.secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def install_redaction(secrets: Iterable[str] = ()) -> None:
    """Put the filter on every root handler (and keep httpx's per-request INFO lines out)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    flt = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
