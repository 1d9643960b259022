"""api.video's part rules (docs/protocol.md, "Chunk rules"), each on both upload endpoints: every answer,
accepted or refused, and the status after it validate against the OpenAPI document, with the refusal's slug.

``POST /upload?token=`` names the video with ``videoId`` from the second part on (the first part makes
it); ``POST /videos/{id}/source`` names it in the path. The exact bodies are pinned in
tests/unit/emulator/test_emulator_http_parts.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI

from tests.conformance.test_emulator_openapi import conforms
from tests.support.emulator import Emulator

MIB = 1024 * 1024
PART = 5 * MIB
DOCS = "https://docs.api.video/reference/"


@dataclass
class Endpoint:
    """One video's uploads through one endpoint; the video is made by the first accepted part."""

    http: httpx.Client
    openapi: OpenAPI
    kind: str
    token: str = ""
    video_id: str | None = None

    def post(self, size: int, content_range: str) -> httpx.Response:
        files = {"file": ("live.mp4", os.urandom(size), "video/mp4")}
        headers = {"Content-Range": content_range}
        if self.kind == "source":
            if self.video_id is None:
                self.video_id = self.http.post("/videos", json={"title": "parts"}).json()["videoId"]
            return self.http.post(f"/videos/{self.video_id}/source", files=files, headers=headers)
        data = {"videoId": self.video_id} if self.video_id else {}
        return self.http.post("/upload", params={"token": self.token}, data=data, files=files, headers=headers)

    def accepted(self, size: int, content_range: str) -> dict[str, Any]:
        body = conforms(self.openapi, self.post(size, content_range), 201)
        self.video_id = self.video_id or body["videoId"]
        return body

    def refused(self, size: int, content_range: str, slug: str) -> None:
        body = conforms(self.openapi, self.post(size, content_range), 400)
        assert (body["type"], body["status"]) == (DOCS + slug, 400)

    def received(self) -> dict[str, Any]:
        status = conforms(self.openapi, self.http.get(f"/videos/{self.video_id}/status"), 200)
        return dict(status["ingest"])


@pytest.fixture(params=["token", "source"])
def endpoint(request: pytest.FixtureRequest, openapi: OpenAPI, emulator: Emulator) -> Iterator[Endpoint]:
    with httpx.Client(base_url=emulator.url, headers=emulator.auth_header, timeout=30) as http:
        yield Endpoint(http, openapi, request.param, emulator.create_upload_token())


def test_each_part_rule_conforms(endpoint: Endpoint, emulator: Emulator) -> None:
    for header, slug in (("part 0/*", "part-zero"), ("part 1/0", "total-parts-zero"),
                         ("part 10001/*", "part-too-high-allowed"), ("part 1/10001", "total-parts-too-high"),
                         ("part 3/2", "part-too-high-total")):
        endpoint.refused(1, header, "video-content-range-by-part-" + slug)
    endpoint.refused(PART - 1, "part 2/*", "video-content-range-by-part-uploaded-file-too-small")
    assert endpoint.accepted(PART, "part 2/*") == {"videoId": endpoint.video_id}
    assert endpoint.received()["receivedParts"] == {"parts": [2], "total": None}
    endpoint.refused(PART, "part 2/*", "video-content-range-by-part-part-already-sent")
    endpoint.refused(PART, "part 1/2", "video-content-range-by-part-total-parts-too-low")  # equal to part 2
    endpoint.refused(PART, f"bytes 0-{PART - 1}/*", "video-content-range-started-with-part")
    endpoint.accepted(1, "part 4/4")  # the last part may be small
    assert endpoint.received() == {"status": "uploading", "filesize": None,
                                   "receivedParts": {"parts": [2, 4], "total": 4}}
    endpoint.refused(PART, "part 3/5", "video-content-range-by-part-different-total-parts")
    endpoint.refused(1, "part 3/*", "video-content-range-by-part-uploaded-file-too-small")  # not the last
    endpoint.accepted(PART, "part 1/*")
    assert "assets" in endpoint.accepted(PART, "part 3/*")  # 1..4 are all there: complete
    assert endpoint.received() == {"status": "uploaded", "filesize": 3 * PART + 1,
                                   "receivedParts": {"parts": [1, 2, 3, 4], "total": 4}}
    endpoint.refused(1, "part 5/*", "video-source-already-uploaded")
    assert [v["videoId"] for v in emulator.videos()] == [endpoint.video_id]  # a refused first part made none


def test_bytes_then_part_conforms(endpoint: Endpoint) -> None:
    endpoint.accepted(PART, f"bytes 0-{PART - 1}/*")
    endpoint.refused(PART, "part 2/*", "video-content-range-started-with-bytes")
    endpoint.refused(1, "part 2/2", "video-content-range-started-with-bytes")
    assert endpoint.received()["receivedBytes"] == [{"from": 0, "to": PART - 1}]


def test_a_live_upload_conforms_at_each_step(endpoint: Endpoint) -> None:
    """Parts 1..3 as ``part i/*`` while the file grows, the total null after each, then ``part 4/4``."""
    for number in (1, 2, 3):
        assert endpoint.accepted(PART, f"part {number}/*") == {"videoId": endpoint.video_id}
        assert endpoint.received() == {"status": "uploading", "filesize": None,
                                       "receivedParts": {"parts": list(range(1, number + 1)), "total": None}}
    assert endpoint.accepted(1, "part 4/4")["videoId"] == endpoint.video_id
    assert endpoint.received()["receivedParts"] == {"parts": [1, 2, 3, 4], "total": 4}
