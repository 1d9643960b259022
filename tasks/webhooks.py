"""Completion webhooks, the contract a receiver relies on: the final job record (no secrets), signed so
a receiver can tell a genuine, fresh delivery from an altered, unsigned or replayed one.

The body is the JSON of ``JobRecord.public()`` plus ``"event": "job.<state>"``. The header
``X-Vuq-Signature: t=<unix seconds>,v1=<hex>`` carries the time of signing and the
HMAC-SHA256, under ``VUQ_WEBHOOK_SECRET``, of ``"<t>.<body>"``: the signature covers the time,
so an old delivery cannot be sent again with a fresh ``t``. A receiver calls
``verify(body, secret, header)``, which also refuses a ``t`` more than ``tolerance_s`` away from
its own clock. The same scheme as Stripe's webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from typing import Any

import httpx

from tasks.job.record import JobRecord
from tasks.outbound.callbacks import post_callback

SIGNATURE_HEADER = "X-Vuq-Signature"
EVENT_HEADER = "X-Vuq-Event"
JOB_HEADER = "X-Vuq-Job-Id"
DEFAULT_TOLERANCE_S = 300


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``X-Vuq-Signature`` value for ``body`` signed at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(body: bytes, secret: str, header: str | None, tolerance_s: float = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """Whether ``header`` signs exactly ``body`` under ``secret`` within ``tolerance_s`` of ``now``.

    Never raises: anything malformed is False (a missing or repeated ``t``, a ``t`` that is not a plain
    integer of at most 12 digits, a ``v1`` that is not 64 hex digits, non-ASCII text, a header over
    ``MAX_HEADER_CHARS``, a body that is not bytes, a tolerance or clock that is not a finite number).
    Several ``v1`` values may be given (a secret being rotated): one match is enough.
    """
    try:
        return _verify(body, secret, header, tolerance_s, now)
    except (TypeError, ValueError, OverflowError, UnicodeError):  # a caller's odd types: refused, not raised
        return False


MAX_HEADER_CHARS = 4096
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_DIGEST = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)


def _verify(body: bytes, secret: str, header: str | None, tolerance_s: float, now: float | None) -> bool:
    if not isinstance(header, str) or len(header) > MAX_HEADER_CHARS or not header.isascii():
        return False
    if not isinstance(body, bytes | bytearray | memoryview) or not isinstance(secret, str | bytes) or not secret:
        return False
    clock = time.time() if now is None else now
    if not all(isinstance(n, int | float) and math.isfinite(n) for n in (tolerance_s, clock)) or tolerance_s < 0:
        return False
    timestamps, digests = [], []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            digests.append(value)
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        return False
    timestamp = int(timestamps[0])
    if abs(clock - timestamp) > tolerance_s:
        return False
    key: bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
    expected = hmac.new(key, f"{timestamp}.".encode() + bytes(body), hashlib.sha256).hexdigest()
    matches = [hmac.compare_digest(expected, d.lower()) for d in digests if _DIGEST.fullmatch(d)]
    return any(matches)


def payload(job: JobRecord) -> bytes:
    data: dict[str, Any] = {"event": f"job.{job.state}", **job.public()}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def deliver(http: httpx.Client, url: str, job: JobRecord, secret: str | None, timestamp: int) -> int:
    """POST the record once, signed at ``timestamp``; RetryableError for network trouble, 5xx and 429,
    PermanentError otherwise (``tasks.outbound.callbacks``)."""
    body = payload(job)
    headers = {"Content-Type": "application/json", EVENT_HEADER: f"job.{job.state}", JOB_HEADER: job.job_id}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret, timestamp)
    return post_callback(http, url, body, headers)
