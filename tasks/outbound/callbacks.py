"""Posting to a URL a producer chose (the completion webhook's ``callback_url``), through the guarded
client: one attempt, its failures sorted into retryable (network trouble, 5xx, 429) and permanent.

The receiver is whoever the producer named, so it is held to two limits. An attempt has a
wall-clock deadline (``DEADLINE_S``) for everything, from the connection to the last byte read:
the guarded client clamps every socket operation to it, so a receiver that answers one byte a
second, or never, is cut there (httpx's own timeouts bound each read, not the exchange). And only
the status matters: at most ``MAX_ANSWER_BYTES`` of the answer are read, streamed and dropped
(undecoded: no gzip bomb), then the connection is closed, so a receiver answering 400 MiB costs a
worker 64 KiB.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from tasks.constants import KIB
from tasks.errors import PermanentError, RetryableError, is_retryable_status
from tasks.outbound.guarded_transport import deadline
from tasks.redact import mask_url
from tasks.telemetry import request as traced

DEADLINE_S = 15.0  # one attempt, connection to last byte
TIMEOUT_S = DEADLINE_S  # the name callers knew
MAX_ANSWER_BYTES = 64 * KIB  # read of an answer at most; the rest is never read


def post_callback(http: httpx.Client, url: str, body: bytes, headers: Mapping[str, str], *,
                  deadline_s: float = DEADLINE_S, max_answer_bytes: int = MAX_ANSWER_BYTES) -> int:
    """POST ``body`` once, within ``deadline_s``; its status when 2xx, else RetryableError or PermanentError
    (a callback on a refused address is a PermanentError: ``http`` is the SSRF-guarded client)."""
    target = mask_url(url)
    began = time.monotonic()
    try:
        with traced("callback", "POST", target) as call, deadline(began + deadline_s), \
                http.stream("POST", url, content=body, headers=dict(headers), timeout=deadline_s) as response:
            call.answered(response.status_code, sent=len(body))
            _read_some(response, max_answer_bytes)
    except httpx.TimeoutException:
        raise RetryableError(f"callback {target} did not answer within {deadline_s:g} s", reason="callback") from None
    except httpx.TransportError as exc:
        raise RetryableError(f"callback {target} failed: {type(exc).__name__}", reason="callback") from None
    if response.is_success:
        return response.status_code
    if is_retryable_status(response.status_code):
        raise RetryableError(f"callback {target} answered {response.status_code}", reason="callback")
    raise PermanentError(f"callback {target} answered {response.status_code}; not retried")


def _read_some(response: httpx.Response, limit: int) -> None:
    """Read at most ``limit`` bytes of the answer (so a short one leaves its connection reusable), then stop."""
    if response.is_stream_consumed:  # an answer made in memory (a test's transport): nothing left to read
        return
    read = 0
    for piece in response.iter_raw():
        read += len(piece)
        if read >= limit:
            return
