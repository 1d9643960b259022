"""Fakes shared by the tasks/ unit tests: a small api.video behind httpx.MockTransport, a pacer that
records what it was asked, and a job store whose lease renewals can be counted or made to fail.

``FakeApiVideo`` keeps just enough of api.video to drive the pipeline: delegated uploads (byte
ranges, numbered parts, videoId, range overlap, a part sent twice, already-initiated, refused upload
tokens), videos (create, find by metadata, status with ``receivedBytes`` or ``receivedParts``, patch,
delete), upload tokens (mint, read, delete) and API-key authentication.
Failures are injected with ``fail()`` (answered instead of, or after, the real handling: an
answer lost on the way back), and ``hooks`` run before each answer (a slow server, a look at the
store mid-request).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from tasks.job.store import Expect, JobStore

API_KEY = "apikey-Fake0123456789abcdefXYZ"
UPLOAD_TOKEN = "to1a2B3c4D5e6F7g8H9i0JkL"  # api.video's upload-token shape: "to" + 22 characters
BASE_URL = "https://ws.api.video"
OVERLAP = "video-content-range-by-bytes-range-overlap"
TOKEN_INVALID = "authentication-invalid-upload-token"
PART_SENT = "video-content-range-by-part-part-already-sent"
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_PART = re.compile(r"part (\d+)/(\d+|\*)")


def problem(status: int, slug: str, title: str = "error", headers: Mapping[str, str] | None = None) -> httpx.Response:
    """An api.video error answer (a problem+json body whose ``type`` ends in the slug)."""
    body = {"type": f"https://docs.api.video/reference/{slug}", "title": title, "status": status}
    return httpx.Response(status, json=body, headers=dict(headers or {}))


@dataclass
class Upload:
    """One POST /upload as the fake saw it."""

    token: str
    video_id: str | None  # the videoId form field, if any
    content_range: str | None
    file_name: str
    length: int


@dataclass
class FakeVideo:
    video_id: str
    title: str
    metadata: list[dict[str, str]]
    total: int | None = None
    mode: str = ""  # "", "bytes", "part" or "single"
    received: list[tuple[int, int]] = field(default_factory=list)  # inclusive byte ranges
    in_flight: list[tuple[int, int]] = field(default_factory=list)  # arriving through another request
    content: bytearray = field(default_factory=bytearray)
    patches: list[dict[str, Any]] = field(default_factory=list)
    parts: dict[int, bytes] = field(default_factory=dict)  # a part upload's parts, by number
    total_parts: int | None = None

    def spans(self) -> list[tuple[int, int]]:
        merged: list[tuple[int, int]] = []
        for first, last in sorted(self.received):
            if merged and first <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        return merged

    @property
    def complete(self) -> bool:
        if self.mode == "part":
            return self.total_parts is not None and set(self.parts) == set(range(1, self.total_parts + 1))
        return self.total is not None and self.spans() == [(0, self.total - 1)]

    @property
    def bytes(self) -> bytes:
        """What api.video holds: the parts in order, or the ranges written."""
        if self.mode == "part":
            return b"".join(self.parts[n] for n in sorted(self.parts))
        return bytes(self.content)


@dataclass
class Fault:
    method: str
    path: str
    response: Callable[[], httpx.Response]
    after: bool  # handle the request first, then answer this (the real answer is lost)
    times: int


class FakeApiVideo:
    """api.video in memory. ``transport`` goes into an ``httpx.Client`` for ``ApiClient``."""

    def __init__(self, api_key: str = API_KEY, upload_tokens: tuple[str, ...] = (UPLOAD_TOKEN,)) -> None:
        self.api_key = api_key
        self.upload_tokens = set(upload_tokens)
        self.access_tokens: set[str] = set()
        self.videos: dict[str, FakeVideo] = {}
        self.requests: list[httpx.Request] = []
        self.uploads: list[Upload] = []
        self.faults: list[Fault] = []
        self.hooks: list[Callable[[httpx.Request], object]] = []
        self._lock = threading.Lock()
        self._serial = 0

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- what the tests look at -------------------------------------------------------
    def calls(self, method: str, path: str) -> list[httpx.Request]:
        """The requests made to exactly ``method path``."""
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def routes(self) -> list[str]:
        """``METHOD /path`` of every request, in order."""
        return [f"{r.method} {r.url.path}" for r in self.requests]

    def fail(self, method: str, path: str, status: int, slug: str = "error", *, after: bool = False,
             times: int = 1, headers: Mapping[str, str] | None = None) -> None:
        """Answer the next ``times`` requests to ``method path`` with this error."""
        self.faults.append(Fault(method, path, lambda: problem(status, slug, headers=headers), after, times))

    def add_video(self, title: str = "", metadata: list[dict[str, str]] | None = None) -> FakeVideo:
        with self._lock:
            self._serial += 1
            video = FakeVideo(f"vi{self._serial:022d}", title, list(metadata or []))
            self.videos[video.video_id] = video
            return video

    # -- the server -------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        for hook in self.hooks:
            hook(request)
        fault = self._fault(request)
        if fault is not None and not fault.after:
            return fault.response()
        response = self._route(request)
        return fault.response() if fault is not None else response

    def _fault(self, request: httpx.Request) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == request.method and fault.path == request.url.path:
                fault.times -= 1
                return fault
        return None

    def _route(self, request: httpx.Request) -> httpx.Response:
        method, parts = request.method, request.url.path.strip("/").split("/")
        if (method, parts) == ("POST", ["auth", "api-key"]):
            return self._authenticate(request)
        if (method, parts) == ("POST", ["upload"]):
            return self._upload(request)
        if not self._authorized(request):
            return problem(401, "authentication-invalid-access-token", "The access token is invalid or expired.")
        if (method, parts) == ("POST", ["upload-tokens"]):
            with self._lock:
                self._serial += 1
                token = f"to{self._serial:022d}"
            self.upload_tokens.add(token)
            return httpx.Response(200, json={"token": token, "ttl": json.loads(request.content)["ttl"]})
        if parts[0] == "upload-tokens" and len(parts) == 2:
            if parts[1] not in self.upload_tokens:
                return problem(404, "resource-not-found", "The requested resource was not found.")
            if method == "DELETE":
                self.upload_tokens.discard(parts[1])
                return httpx.Response(204)
            return httpx.Response(200, json={"token": parts[1], "ttl": 0})
        if parts[0] != "videos":
            return problem(404, "unrecognized-request-url")
        if (method, parts) == ("POST", ["videos"]):
            payload = json.loads(request.content)
            created = self.add_video(payload.get("title", ""), payload.get("metadata"))
            return httpx.Response(201, json={"videoId": created.video_id, "title": created.title,
                                             "metadata": created.metadata})
        if (method, parts) == ("GET", ["videos"]):
            wanted = {k[len("metadata["):-1]: v for k, v in request.url.params.items() if k.startswith("metadata[")}
            found = [{"videoId": v.video_id, "metadata": v.metadata} for v in self.videos.values()
                     if all({"key": k, "value": val} in v.metadata for k, val in wanted.items())]
            return httpx.Response(200, json={"data": found, "pagination": {"itemsTotal": len(found)}})
        video = self.videos.get(parts[1]) if len(parts) > 1 else None
        if video is None:
            return problem(404, "resource-not-found", "The requested resource was not found.")
        if method == "GET" and parts[2:] == ["status"]:
            ingest: dict[str, Any] = {"status": "uploaded" if video.complete else "uploading"}
            if video.mode == "part":
                ingest["receivedParts"] = {"parts": sorted(video.parts), "total": video.total_parts}
            else:
                ingest["receivedBytes"] = [{"from": a, "to": b, "total": video.total} for a, b in video.spans()]
            return httpx.Response(200, json={"ingest": ingest, "encoding": {"playable": video.complete}})
        if method == "PATCH" and len(parts) == 2:
            video.patches.append(json.loads(request.content))
            return httpx.Response(200, json={"videoId": video.video_id})
        if method == "DELETE" and len(parts) == 2:
            del self.videos[video.video_id]
            return httpx.Response(204)
        return problem(405, "method-not-allowed")

    def _authenticate(self, request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("apiKey") != self.api_key:
            return problem(400, "authentication-invalid-user-credentials", "The user credentials were incorrect.")
        with self._lock:
            self._serial += 1
            token = f"at{self._serial}"
        self.access_tokens.add(token)
        return httpx.Response(200, json={"access_token": token, "refresh_token": "rt", "token_type": "Bearer",
                                         "expires_in": 3600})

    def _authorized(self, request: httpx.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and token in self.access_tokens

    def _upload(self, request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("token", "")
        if token not in self.upload_tokens:
            return problem(401, TOKEN_INVALID, "The upload token is invalid or expired.")
        fields, file_name, data = _multipart(request)
        content_range = request.headers.get("Content-Range")
        self.uploads.append(Upload(token, fields.get("videoId"), content_range, file_name, len(data)))
        video: FakeVideo | None = (self.videos.get(fields["videoId"]) if fields.get("videoId")
                                   else self.add_video(file_name))
        if video is None:
            return problem(404, "resource-not-found")
        if video.complete:
            return problem(400, "video-source-already-uploaded", "The source of the video is already uploaded.")
        if content_range is not None and content_range.startswith("part "):
            return self._part(video, content_range, data)
        if content_range is None:
            if video.mode:
                return problem(400, "video-content-range-already-initiated", "already initiated")
            first, last, total = 0, len(data) - 1, len(data)
            video.mode = "single"
        else:
            match = _RANGE.fullmatch(content_range)
            assert match, content_range
            first, last, total = (int(g) for g in match.groups())
            if video.mode == "single":
                return problem(400, "video-content-range-already-initiated", "already initiated")
            if any(a <= last and first <= b for a, b in [*video.received, *video.in_flight]):
                return problem(400, OVERLAP, "The range overlaps with a previous one you already sent.")
            assert len(data) == last - first + 1, (len(data), content_range)
            video.mode = "bytes"
        video.total = total
        if len(video.content) < total:
            video.content.extend(bytes(total - len(video.content)))
        video.content[first:last + 1] = data
        video.received.append((first, last))
        return httpx.Response(201, json={"videoId": video.video_id})


    def _part(self, video: FakeVideo, content_range: str, data: bytes) -> httpx.Response:
        match = _PART.fullmatch(content_range)
        assert match, content_range
        number, total = int(match.group(1)), match.group(2)
        if video.mode not in ("", "part"):
            return problem(400, "video-content-range-started-with-bytes", "started with bytes")
        if number in video.parts:
            return problem(400, PART_SENT, "The part number has already been sent.")
        if total != "*":
            video.total_parts = int(total)
        video.mode = "part"
        video.parts[number] = data
        return httpx.Response(201, json={"videoId": video.video_id})


def _multipart(request: httpx.Request) -> tuple[dict[str, str], str, bytes]:
    """The text fields, the file name and the file bytes of a multipart/form-data request."""
    boundary = request.headers["Content-Type"].split("boundary=", 1)[1].encode()
    fields: dict[str, str] = {}
    file_name, data = "", b""
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        body = body.removesuffix(b"\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        if filename:
            file_name, data = filename.group(1).decode(), body
        elif name:
            fields[name.group(1).decode()] = body.decode()
    return fields, file_name, data


class RecordingPacer:
    """A ``Pacer`` that answers ``acquire`` from a script of waits (then 0) and records every call."""

    def __init__(self, waits: list[float] | None = None) -> None:
        self.waits = list(waits or [])
        self.acquired: list[str] = []
        self.observed: list[tuple[str, int, dict[str, str]]] = []

    def acquire(self, request_class: str) -> float:
        self.acquired.append(request_class)
        return self.waits.pop(0) if self.waits else 0.0

    def observe(self, request_class: str, status: int, headers: Mapping[str, str]) -> None:
        self.observed.append((request_class, status, dict(headers)))


CLOCK_JOB = "clock"  # a job a test holds only to see the lease keeper's rounds go by


class CountingStore(JobStore):
    """A JobStore that counts lease renewals and can fail the next ``fail_renewals`` of them.
    Renewals of ``CLOCK_JOB`` are only counted (``clock_renewals``): they show the keeper's rounds."""

    def __init__(self, client: redis.Redis, fail_renewals: int = 0) -> None:
        super().__init__(client)
        self.fail_renewals = fail_renewals
        self.renewals: list[int] = []  # each answer, in order (a failed call is not in it)
        self.clock_renewals = 0
        self.failures = 0

    def renew(self, job_id: str, holder: str, ttl_s: float, expect: Expect | None = None,
              streamed: int | None = None) -> int:
        if self.fail_renewals > 0:
            self.fail_renewals -= 1
            self.failures += 1
            raise redis.ConnectionError("Redis went away (injected)")
        result = super().renew(job_id, holder, ttl_s, expect, streamed)
        if job_id == CLOCK_JOB:
            self.clock_renewals += 1
        else:
            self.renewals.append(result)
        return result


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it holds; fail the test if it does not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        pause.wait(0.01)  # a polling interval, not a synchronisation: the condition decides
