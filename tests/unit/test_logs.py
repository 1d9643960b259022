"""workers.process.logs: what reaches a log, the traceback included, has its secrets masked."""

from __future__ import annotations

import io
import logging

from workers.process.logs import RedactingFormatter, install_redaction

SIGNED = "https://bucket.example/talk.mp4?X-Amz-Signature=sig-9f8e7d&X-Amz-Credential=cred-1a2b"


def _logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger, out


def test_a_traceback_is_redacted_too() -> None:
    logger, out = _logger("vuq.test.traceback")
    install_redaction(["api-key-0123456789"], logger)
    try:
        raise RuntimeError(f"fetching {SIGNED} with api-key-0123456789 failed")
    except RuntimeError:
        logger.exception("job j1: internal error")
    text = out.getvalue()
    assert "Traceback (most recent call last)" in text and "RuntimeError" in text
    for secret in ("sig-9f8e7d", "cred-1a2b", "api-key-0123456789"):
        assert secret not in text
    assert "https://bucket.example/talk.mp4?***" in text


def test_the_wrapped_formatter_still_shapes_the_line() -> None:
    logger, out = _logger("vuq.test.shape")
    install_redaction([], logger)
    logger.warning("token=to1tcmSFHeYY5KzyhOqVKMKb and Bearer abc.def")
    assert out.getvalue() == "[WARNING] token=*** and Bearer ***\n"


def test_installing_twice_wraps_once_and_takes_the_new_secrets() -> None:
    logger, out = _logger("vuq.test.twice")
    install_redaction(["first-secret"], logger)
    install_redaction(["second-secret"], logger)
    formatter = logger.handlers[0].formatter
    assert isinstance(formatter, RedactingFormatter) and not isinstance(formatter.inner, RedactingFormatter)
    logger.error("first-secret second-secret")
    assert "second-secret" not in out.getvalue()
