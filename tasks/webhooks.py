"""Completion webhooks: the final job record (no secrets), signed with HMAC-SHA256.

The body is the JSON of ``JobRecord.public()`` plus ``"event": "job.<state>"``. The
header ``X-Vuq-Signature: sha256=<hex>`` is HMAC-SHA256 of the exact body bytes
under ``VUQ_WEBHOOK_SECRET``; a receiver recomputes it and compares in constant
time. ``X-Vuq-Timestamp`` (seconds) is included in the signed string's header set
for freshness checks but the signature covers the body only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from tasks.errors import PermanentError, RetryableError
from tasks.record import JobRecord
from tasks.redact import safe_url
from tasks.retry import is_retryable_status

SIGNATURE_HEADER = "X-Vuq-Signature"
EVENT_HEADER = "X-Vuq-Event"
JOB_HEADER = "X-Vuq-Job-Id"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str) -> bool:
    """What a receiver does (documented in the README; used by the tests)."""
    return hmac.compare_digest(sign(body, secret), signature)


def payload(job: JobRecord) -> bytes:
    data: dict[str, Any] = {"event": f"job.{job.state}", **job.public()}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def deliver(http: httpx.Client, url: str, job: JobRecord, secret: str | None) -> int:
    """POST the record once; RetryableError for network trouble, 5xx and 429, PermanentError otherwise."""
    body = payload(job)
    headers = {"Content-Type": "application/json", EVENT_HEADER: f"job.{job.state}", JOB_HEADER: job.job_id,
               "X-Vuq-Timestamp": str(int(time.time()))}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    target = safe_url(url)
    try:
        response = http.post(url, content=body, headers=headers, timeout=15.0)
    except httpx.TransportError as exc:
        raise RetryableError(f"callback {target} failed: {type(exc).__name__}", reason="callback") from None
    if response.is_success:
        return response.status_code
    if is_retryable_status(response.status_code):
        raise RetryableError(f"callback {target} answered {response.status_code}", reason="callback")
    raise PermanentError(f"callback {target} answered {response.status_code}; not retried")
