"""Completion webhooks: what they say, how they are signed, and their delivery, once at a time and not
for ever.

The body is the JSON of ``JobRecord.public()`` plus ``"event": "job.<state>"``. The header
``X-Vuq-Signature: t=<unix seconds>,v1=<hex>`` carries the time of signing and the HMAC-SHA256, under
``VUQ_WEBHOOK_SECRET``, of ``"<t>.<body>"``: the signature covers the time, so an old delivery cannot be
sent again with a fresh ``t``. A receiver calls ``verify(body, secret, header)`` (``from tasks.webhooks
import verify``), which also refuses a ``t`` more than ``tolerance_s`` away from its own clock. The same
scheme as Stripe's webhooks.

A job that ends owes its ``callback_url`` one webhook, noted in the job store's outbox with its final
state. A delivery holds the job's webhook lease for its attempt (one delivery of a job's webhook at a
time, whoever sent the message: a worker's retry, the janitor, a producer sending the task by name),
counts the attempt in the record (``callback_attempts``, the janitor's included) and gives up after
``VUQ_MAX_RETRIES`` + 1 of them. A webhook already delivered is not delivered again: a message asking
for it does nothing, unless an operator asked (``vuq webhook JOB`` sets ``callback_again`` in
the record, which only someone who can write to Redis can do). Each time the job ends anew (resumed,
then done), the count and the outcome start over.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import time
from typing import Any

import httpx
from redis.exceptions import LockError

from tasks.errors import PermanentError, RetryableError
from tasks.job.record import JobRecord, State
from tasks.job.store import JobStore
from tasks.outbound.callbacks import post_callback
from tasks.pipeline.backoff import backoff_s
from tasks.settings import Settings
from tasks.telemetry import event, joined

log = logging.getLogger(__name__)
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


WEBHOOK_LEASE_KEY = "vuq:lease:webhook:{job_id}"
LEASE_MARGIN_S = 10.0  # beyond one attempt's deadline
ENDED = {"state": [s for s in State if s.final]}


def deliver_webhook(store: JobStore, http: httpx.Client, settings: Settings, job_id: str,
                    attempt_deadline_s: float) -> float | None:
    """One delivery of the job's webhook, if it is owed and no other delivery is under way; None when
    nothing more is owed (delivered, refused, given up, or not this delivery's to make), else the seconds
    after which to try again (the outbox says so too)."""
    job = store.get(job_id)
    joined(job)  # the step's span, a child of the job's root
    url = job.spec.callback_url if job else None
    if job is None or not url or not job.state.final:  # expired, or resumed since: nothing owed now
        store.outbox_done(job_id)
        return None
    if _settled(job.callback) and not job.callback_again:
        store.outbox_done(job_id)  # delivered, refused or given up: a message asking again changes nothing
        return None
    lease = store.redis.lock(WEBHOOK_LEASE_KEY.format(job_id=job_id), timeout=attempt_deadline_s + LEASE_MARGIN_S,
                             blocking=False)
    if not lease.acquire(blocking=False):
        log.info("job %s: a delivery of its webhook is under way elsewhere", job_id)
        return None
    try:
        return _attempt(store, http, settings, job_id, url, attempt_deadline_s)
    finally:
        try:
            lease.release()
        except LockError:  # it expired first: the attempt ran past its deadline and margin
            log.warning("job %s: its webhook lease expired during the delivery", job_id)


def _attempt(store: JobStore, http: httpx.Client, settings: Settings, job_id: str, url: str,
             deadline_s: float) -> float | None:
    attempts = store.count_callback_attempt(job_id)
    cap = settings.max_retries + 1
    if attempts > cap:
        _outcome(store, job_id, f"failed: gave up after {cap} attempts")
        return None
    store.outbox_later(job_id, deadline_s + LEASE_MARGIN_S)  # under way: the janitor waits
    job = store.get(job_id)
    if job is None:
        return None
    try:
        status = deliver(http, url, job, settings.webhook_secret, int(store.now()))
    except RetryableError as exc:
        if attempts >= cap:
            _outcome(store, job_id, f"failed: {exc}")
            log.warning("job %s: callback given up after %d attempts: %s", job_id, attempts, exc)
            return None
        delay = backoff_s(attempts - 1, settings.retry_backoff_s, settings.retry_backoff_max_s)
        event("vuq.retry", reason=exc.reason, attempt=attempts, delay_s=round(delay, 3), error=str(exc))
        _outcome(store, job_id, f"retrying: {exc}")
        store.outbox_later(job_id, delay)
        return delay
    except PermanentError as exc:
        _outcome(store, job_id, f"failed: {exc}")
        log.warning("job %s: callback refused: %s", job_id, exc)
        return None
    _outcome(store, job_id, f"delivered ({status})")
    return None


def _outcome(store: JobStore, job_id: str, outcome: str) -> None:
    store.update(job_id, None, {"callback": outcome, "callback_again": ""}, expect=ENDED)
    if _settled(outcome):
        store.outbox_done(job_id)


def _settled(outcome: str | None) -> bool:
    """Delivered, refused or given up on: only an operator's ``vuq webhook`` sends it again (else retrying)."""
    return bool(outcome) and not str(outcome).startswith("retrying")
