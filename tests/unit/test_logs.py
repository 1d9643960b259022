"""workers.process.logs: what reaches a log, the traceback included, has its secrets masked."""

from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasks import telemetry
from tasks.constants import TASK_CHUNK
from tasks.telemetry.context import new_trace
from workers.process.logs import RedactingFormatter, install_redaction


@dataclass(frozen=True)
class Job:
    job_id: str
    traceparent: str | None
    created_at: float = 1.0


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


def _json_logger(name: str, secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    logger, out = _logger(name)
    logger.setLevel(logging.INFO)
    install_redaction(secrets, logger, "json")
    return logger, out


def test_json_lines_carry_time_level_logger_and_message_and_nothing_of_a_step_outside_one() -> None:
    logger, out = _json_logger("vuq.test.json", [])
    logger.warning("janitor: job %s had nobody moving it", "j1")
    entry = json.loads(out.getvalue())
    assert set(entry) == {"time", "level", "logger", "message"}
    assert (entry["level"], entry["logger"], entry["message"]) == ("WARNING", "vuq.test.json",
                                                                   "janitor: job j1 had nobody moving it")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_json_lines_inside_a_traced_step_name_its_job_chunk_trace_and_span() -> None:
    logger, out = _json_logger("vuq.test.json.step", [])
    telemetry.forget()
    exporter = InMemorySpanExporter()
    telemetry.setup((), exporter=exporter)
    try:
        job = Job("j7", new_trace("j7", sampled=True).traceparent)
        with telemetry.step(TASK_CHUNK, "j7", 4):
            logger.info("before the claim")
            telemetry.joined(job)
            logger.info("chunk %d/%d sent", 5, 9)
    finally:
        telemetry.forget()
    before, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert (before["job_id"], before["chunk"]) == ("j7", 4) and "trace_id" not in before
    span = exporter.get_finished_spans()[0].get_span_context()
    assert after["trace_id"] == f"{span.trace_id:032x}" == telemetry.of_job(job).trace_hex
    assert after["span_id"] == f"{span.span_id:016x}" and after["message"] == "chunk 5/9 sent"


def test_json_lines_are_redacted_field_by_field_the_traceback_too() -> None:
    secret = 'api-key-"quoted"\\0123456789'  # JSON would escape it: redacted before it is encoded
    logger, out = _json_logger("vuq.test.json.secret", [secret])
    try:
        raise RuntimeError(f"fetching {SIGNED} with {secret} failed")
    except RuntimeError:
        logger.exception("job j1: internal error, token=to1tcmSFHeYY5KzyhOqVKMKb")
    line = out.getvalue()
    assert line.count("\n") == 1  # one object per line, the traceback inside it
    entry = json.loads(line)
    assert "Traceback (most recent call last)" in entry["exception"] and "RuntimeError" in entry["exception"]
    for leaked in ("sig-9f8e7d", "cred-1a2b", secret, "to1tcmSFHeYY5KzyhOqVKMKb", json.dumps(secret)[1:-1]):
        assert leaked not in line
    assert "https://bucket.example/talk.mp4?***" in entry["exception"] and entry["message"].endswith("token=***")


def test_the_text_format_is_unchanged_by_default() -> None:
    logger, out = _logger("vuq.test.text.default")
    install_redaction([], logger)
    with telemetry.step(TASK_CHUNK, "j1", 0):
        logger.warning("chunk 1/3 sent")
    assert out.getvalue() == "[WARNING] chunk 1/3 sent\n"
