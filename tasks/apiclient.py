"""The api.video HTTP client on httpx: uploads, videos, upload tokens, authentication.

This is the boundary with api.video: httpx exceptions and error answers become
``ApiUnavailable`` (retry) or ``ApiRejected`` (fail), with messages that carry
api.video's error title and never a token or key. One ``httpx.Client`` per worker
process is injected, so connections are reused from chunk to chunk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from tasks.errors import ApiRejected, ApiUnavailable
from tasks.multipart import multipart_body
from tasks.redact import redact
from tasks.retry import is_retryable_status

log = logging.getLogger(__name__)

# api.video error slugs that mean "this part was already received": the server owns
# the offset, so a re-sent chunk that meets one of these has in fact arrived.
ALREADY_RECEIVED_SLUGS = frozenset({
    "video-content-range-by-bytes-range-overlap",
    "video-content-range-by-part-part-already-sent",
    "video-source-already-uploaded",
})


class ApiClient:
    """Calls api.video (or the emulator) at ``base_url``."""

    def __init__(self, http: httpx.Client, base_url: str,
                 on_upload_answer: Callable[[int, httpx.Headers], None] | None = None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.on_upload_answer = on_upload_answer  # the rate limiter learns from every upload answer

    # -- delegated uploads ------------------------------------------------------------
    def upload_chunk(self, token: str, *, video_id: str | None, content_range: str | None,
                     file_name: str, length: int, blocks: Iterable[bytes]) -> dict[str, Any]:
        """POST one chunk to /upload?token=…; returns api.video's JSON (it holds ``videoId``)."""
        body = multipart_body({"videoId": video_id} if video_id else {}, file_name, length, blocks)
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
        if content_range:
            headers["Content-Range"] = content_range
        return self._call("POST", "/upload", params={"token": token}, headers=headers,
                          content=body.parts, secrets=(token,))

    # -- API-key operations (``auth`` is an Authorization header value) ----------------
    def authenticate(self, api_key: str) -> dict[str, Any]:
        return self._call("POST", "/auth/api-key", json={"apiKey": api_key}, secrets=(api_key,))

    def create_upload_token(self, auth: str, ttl_s: int) -> str:
        return str(self._call("POST", "/upload-tokens", auth=auth, json={"ttl": ttl_s})["token"])

    def delete_upload_token(self, auth: str, token: str) -> None:
        self._call("DELETE", f"/upload-tokens/{token}", auth=auth, secrets=(token,))

    def create_video(self, auth: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/videos", auth=auth, json=payload)

    def find_videos(self, auth: str, metadata: dict[str, str]) -> list[dict[str, Any]]:
        params = {f"metadata[{k}]": v for k, v in metadata.items()}
        return list(self._call("GET", "/videos", auth=auth, params=params)["data"])

    def video_status(self, auth: str, video_id: str) -> dict[str, Any]:
        return self._call("GET", f"/videos/{video_id}/status", auth=auth)

    def patch_video(self, auth: str, video_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/videos/{video_id}", auth=auth, json=payload)

    # -- the one place that talks HTTP ------------------------------------------------
    def _call(self, method: str, path: str, *, auth: str | None = None,
              secrets: tuple[str, ...] = (), **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if auth:
            headers["Authorization"] = auth
        shown = f"{method} {redact(path, secrets)}"  # a path may hold a token (/upload-tokens/{token})
        try:
            response = self.http.request(method, self.base_url + path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiUnavailable(f"api.video {shown} timed out ({type(exc).__name__})", reason="timeout") from None
        except httpx.TransportError as exc:
            detail = redact(str(exc), secrets)
            raise ApiUnavailable(f"api.video {shown} failed: {type(exc).__name__}: {detail}",
                                 reason="connection") from None
        if path == "/upload" and self.on_upload_answer is not None:
            self.on_upload_answer(response.status_code, response.headers)
        if response.is_success:
            return response.json() if response.content else {}
        raise _error(shown, response, secrets)


def _error(shown: str, response: httpx.Response, secrets: tuple[str, ...]) -> ApiRejected | ApiUnavailable:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    title = redact(str(body.get("title") or response.reason_phrase or "error"), secrets)
    if status == 429:
        return ApiUnavailable(f"api.video {shown} answered 429: {title}", reason="rate_limited",
                              retry_after_s=_seconds(response.headers.get("X-RateLimit-Retry-After", "")))
    if is_retryable_status(status):
        return ApiUnavailable(f"api.video {shown} answered {status}: {title}", reason="server_error")
    slug = str(body.get("type") or "").rsplit("/", 1)[-1]
    return ApiRejected(status, title, slug=slug, name=str(body.get("name") or ""))


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
