"""Posting to a URL a producer chose (the completion webhook's ``callback_url``), through the guarded
client: one attempt, its failures sorted into retryable (network trouble, 5xx, 429) and permanent."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from tasks.errors import PermanentError, RetryableError, is_retryable_status
from tasks.redact import mask_url

TIMEOUT_S = 15.0


def post_callback(http: httpx.Client, url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """POST ``body`` once; its status when 2xx, else RetryableError or PermanentError (a callback on a
    refused address is a PermanentError: ``http`` is the SSRF-guarded client)."""
    target = mask_url(url)
    try:
        response = http.post(url, content=body, headers=dict(headers), timeout=TIMEOUT_S)
    except httpx.TransportError as exc:
        raise RetryableError(f"callback {target} failed: {type(exc).__name__}", reason="callback") from None
    if response.is_success:
        return response.status_code
    if is_retryable_status(response.status_code):
        raise RetryableError(f"callback {target} answered {response.status_code}", reason="callback")
    raise PermanentError(f"callback {target} answered {response.status_code}; not retried")
