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
    """Whether ``header`` signs exactly ``body`` under ``secret`` within ``tolerance_s`` of ``now``."""
    fields: dict[str, list[str]] = {}
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(body, secret, timestamp).rsplit("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))


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
