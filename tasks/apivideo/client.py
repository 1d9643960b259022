"""The api.video HTTP client on httpx: uploads, videos, upload tokens, authentication.

This is the boundary with api.video: httpx exceptions and error answers become
``ApiUnavailable`` (retry) or ``ApiRejected`` (fail), with messages that carry
api.video's error title and never a token or key. One ``httpx.Client`` per worker
process is injected, so connections are reused from chunk to chunk.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import httpx

from tasks.apivideo.multipart import multipart_body
from tasks.errors import ApiRejected, ApiUnavailable, Throttled, is_retryable_status
from tasks.redact import redact
from tasks.telemetry import request as traced

log = logging.getLogger(__name__)
# api.video's rate-limit classes (per account and minute): what each request counts against.
UPLOAD, WRITE, READ = "upload", "write", "read"
MAX_INLINE_WAIT_S = 1.0  # a slot this close is waited for in the worker; a later one defers the step

# api.video error slugs that mean "this part was already received": the server owns
# the offset, so a re-sent chunk that meets one of these has in fact arrived.
ALREADY_RECEIVED_SLUGS = frozenset({
    "video-content-range-by-bytes-range-overlap",
    "video-content-range-by-part-part-already-sent",
    "video-source-already-uploaded",
})
# The delegated upload token was refused: expired, deleted or never valid.
TOKEN_REJECTED_SLUGS = frozenset({"authentication-invalid-upload-token", "authentication-missing-upload-token"})


class Pacer(Protocol):
    """The fleet's shared limiter (``tasks.apivideo.limiter``): asked before each request, told each answer."""

    def acquire(self, request_class: str) -> float:
        """0 to go now, or how many seconds until this class has a slot."""

    def observe(self, request_class: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer's ``X-RateLimit-*`` headers."""


class ApiClient:
    """Calls api.video (or the emulator) at ``base_url``."""

    def __init__(self, http: httpx.Client, base_url: str, pacer: Pacer | None = None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.pacer = pacer  # every request waits for a slot of its class; every answer teaches it

    def paced(self, pacer: Pacer | None) -> ApiClient:
        """This client (its pooled connections) with requests paced by ``pacer``: one account's budget,
        asked on behalf of one job's turn."""
        return ApiClient(self.http, self.base_url, pacer)

    # -- delegated uploads ------------------------------------------------------------
    def upload_chunk(self, token: str, *, video_id: str | None, content_range: str | None,
                     file_name: str, length: int, blocks: Iterable[bytes]) -> dict[str, Any]:
        """POST one chunk to /upload?token=…; returns api.video's JSON (it holds ``videoId``)."""
        body = multipart_body({"videoId": video_id} if video_id else {}, file_name, length, blocks)
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
        if content_range:
            headers["Content-Range"] = content_range
        return self._call("POST", "/upload", UPLOAD, params={"token": token}, headers=headers,
                          content=body.parts, secrets=(token,))

    # -- API-key operations (``authorization``: an Authorization header value) ----------------
    def authenticate(self, api_key: str) -> dict[str, Any]:
        return self._call("POST", "/auth/api-key", WRITE, json={"apiKey": api_key}, secrets=(api_key,))

    def create_upload_token(self, authorization: str, ttl_s: int) -> str:
        answer = self._call("POST", "/upload-tokens", WRITE, authorization=authorization, json={"ttl": ttl_s})
        return str(answer["token"])

    def upload_token(self, authorization: str, token: str) -> dict[str, Any] | None:
        """The account's upload token ``token`` (``GET /upload-tokens/{token}``), or None when this
        account has no such active token (another account's, expired, deleted)."""
        try:
            return dict(self._call("GET", f"/upload-tokens/{token}", READ, authorization=authorization,
                                   secrets=(token,)))
        except ApiRejected as exc:
            if exc.status == 404:
                return None
            raise

    def delete_upload_token(self, authorization: str, token: str) -> None:
        """Delete an upload token (one vuq minted); one already gone is not an error."""
        try:
            self._call("DELETE", f"/upload-tokens/{token}", WRITE, authorization=authorization, secrets=(token,))
        except ApiRejected as exc:
            if exc.status != 404:
                raise

    def create_video(self, authorization: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/videos", WRITE, authorization=authorization, json=payload)

    def find_videos(self, authorization: str, metadata: dict[str, str]) -> list[dict[str, Any]]:
        params = {f"metadata[{k}]": v for k, v in metadata.items()}
        return list(self._call("GET", "/videos", READ, authorization=authorization, params=params)["data"])

    def video_status(self, authorization: str, video_id: str) -> dict[str, Any]:
        """What api.video holds of an upload (its received byte ranges)."""
        return self._call("GET", f"/videos/{video_id}/status", READ, authorization=authorization)

    def patch_video(self, authorization: str, video_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/videos/{video_id}", WRITE, authorization=authorization, json=payload)

    def delete_video(self, authorization: str, video_id: str) -> None:
        """Delete a video (a cancelled job's partial upload); one already gone is not an error."""
        try:
            self._call("DELETE", f"/videos/{video_id}", WRITE, authorization=authorization)
        except ApiRejected as exc:
            if exc.status != 404:
                raise

    # -- the one place that talks HTTP ------------------------------------------------
    def _call(self, method: str, path: str, request_class: str, *, authorization: str | None = None,
              secrets: tuple[str, ...] = (), **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if authorization:
            headers["Authorization"] = authorization
        shown = f"{method} {redact(path, secrets)}"  # a path may hold a token (/upload-tokens/{token})
        self._pace(request_class)
        route = api_route(path)  # what a trace shows: never an id or a token of the path, never the query
        with traced("api.video", method, self.base_url + route, route, request_class) as call:
            try:
                response = self.http.request(method, self.base_url + path, headers=headers, **kwargs)
            except httpx.TimeoutException as exc:
                raise ApiUnavailable(f"api.video {shown} timed out ({type(exc).__name__})", reason="timeout") from None
            except httpx.TransportError as exc:
                detail = redact(str(exc), secrets)
                raise ApiUnavailable(f"api.video {shown} failed: {type(exc).__name__}: {detail}",
                                     reason="connection") from None
            call.answered(response.status_code, len(response.content),
                          _length(response.request.headers.get("content-length")))
        if self.pacer is not None:
            self.pacer.observe(request_class, response.status_code, response.headers)
        if response.is_success:
            return response.json() if response.content else {}
        raise _error(shown, response, secrets)

    def _pace(self, request_class: str) -> None:
        """Wait a moment for a slot of the fleet's budget for ``request_class``; defer the step if it is far off."""
        if self.pacer is None:
            return
        while (wait_s := self.pacer.acquire(request_class)) > 0:
            if wait_s > MAX_INLINE_WAIT_S:
                raise Throttled(wait_s, request_class)
            time.sleep(wait_s)  # pacing one request to its slot, seconds away; not a retry


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
    return ApiRejected(status, title, slug=slug, name=str(body.get("name") or ""),
                       token_refused=slug in TOKEN_REJECTED_SLUGS)


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def api_route(path: str) -> str:
    """The route of an api.video path: ``/videos/{videoId}/status``, ``/upload-tokens/{uploadToken}``."""
    parts = path.split("/")
    if len(parts) > 2 and parts[2] and parts[1] in ("videos", "upload-tokens"):
        parts[2] = "{videoId}" if parts[1] == "videos" else "{uploadToken}"
    return "/".join(parts)


def _length(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
