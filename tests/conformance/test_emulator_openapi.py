"""Every answer of every implemented operation validates against api.video's OpenAPI document.

Known gaps of the spec itself, handled narrowly below:
* 401 answers are not documented per operation (the spec lists 400/404/429);
  their bodies are checked against the spec's ``bad-request`` schema instead.
* A non-completing upload chunk answers ``{"videoId": …}`` only (docs/protocol.md, "Completion and answers");
  that validates because ``videoId`` is the Video schema's only required field.
* The ``pagination`` schema's *example* shows ``links`` as an object; the schema
  and the real API use an array, which is what is validated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from openapi_core import OpenAPI

from tests.conformance.conftest import HttpxOpenAPIRequest, HttpxOpenAPIResponse, load_spec_dict
from tests.support.emulator import Emulator

MIB = 1024 * 1024
UNDOCUMENTED_STATUSES = (401,)


@pytest.fixture
def http(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, headers=emulator.auth_header, timeout=30) as client:
        yield client


def conforms(openapi: OpenAPI, response: httpx.Response, status: int) -> dict:
    """Assert the status, then validate the answer against the operation's documented response."""
    assert response.status_code == status, response.text
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-retry-after"):
        assert int(response.headers[header]) >= 0
    if status in UNDOCUMENTED_STATUSES:
        error_properties = load_spec_dict()["components"]["schemas"]["bad-request"]["properties"]
        assert set(response.json()) <= set(error_properties)
    else:
        openapi.validate_response(HttpxOpenAPIRequest(response.request),
                                  HttpxOpenAPIResponse(response))
    return response.json() if response.content else {}


def test_auth_operations(openapi: OpenAPI, emulator: Emulator, http: httpx.Client) -> None:
    tokens = conforms(openapi, http.post("/auth/api-key", json={"apiKey": emulator.api_key}), 200)
    conforms(openapi, http.post("/auth/refresh", json={"refreshToken": tokens["refresh_token"]}),
             200)
    conforms(openapi, http.post("/auth/api-key", json={"apiKey": "bad"}), 400)


def test_upload_token_operations(openapi: OpenAPI, http: httpx.Client) -> None:
    token = conforms(openapi, http.post("/upload-tokens", json={"ttl": 60}), 200)["token"]
    conforms(openapi, http.post("/upload-tokens", json={}), 200)
    conforms(openapi, http.get("/upload-tokens", params={"pageSize": 1, "currentPage": 2}), 200)
    conforms(openapi, http.get(f"/upload-tokens/{token}"), 200)
    conforms(openapi, http.delete(f"/upload-tokens/{token}"), 204)
    conforms(openapi, http.get(f"/upload-tokens/{token}"), 404)


def test_upload_with_token_operations(openapi: OpenAPI, http: httpx.Client,
                                      emulator: Emulator) -> None:
    token = emulator.create_upload_token()
    total = 5 * MIB + 100
    first = http.post("/upload", params={"token": token}, files={"file": ("a.mp4", os.urandom(5 * MIB))},
                      headers={"Content-Range": f"bytes 0-{5 * MIB - 1}/{total}"})
    video_id = conforms(openapi, first, 201)["videoId"]
    last = http.post("/upload", params={"token": token}, data={"videoId": video_id},
                     files={"file": ("a.mp4", os.urandom(100))},
                     headers={"Content-Range": f"bytes {5 * MIB}-{total - 1}/{total}"})
    assert conforms(openapi, last, 201)["assets"]
    again = http.post("/upload", params={"token": token}, data={"videoId": video_id},
                      files={"file": ("a.mp4", b"x")}, headers={"Content-Range": "bytes 0-0/1"})
    conforms(openapi, again, 400)
    conforms(openapi, http.post("/upload", params={"token": "to-nope"},
                                files={"file": ("a.mp4", b"x")}), 401)


def test_video_operations(openapi: OpenAPI, http: httpx.Client) -> None:
    video = conforms(openapi, http.post("/videos", json={
        "title": "t", "tags": ["x"], "metadata": [{"key": "k", "value": "v"}],
        "language": "no"}), 201)
    video_id = video["videoId"]
    conforms(openapi, http.post("/videos", json={"description": "no title"}), 400)
    conforms(openapi, http.get("/videos", params={"title": "t", "tags[]": "x"}), 200)
    conforms(openapi, http.get("/videos", params={"pageSize": 0}), 400)
    conforms(openapi, http.get(f"/videos/{video_id}"), 200)
    conforms(openapi, http.patch(f"/videos/{video_id}", json={"title": "u", "playerId": None}), 200)
    conforms(openapi, http.patch(f"/videos/{video_id}", json={"metadata": "x"}), 400)
    conforms(openapi, http.get(f"/videos/{video_id}/status"), 200)
    part = http.post(f"/videos/{video_id}/source", files={"file": ("p.mp4", os.urandom(5 * MIB))},
                     headers={"Content-Range": "part 1/*"})
    conforms(openapi, part, 201)
    conforms(openapi, http.get(f"/videos/{video_id}/status"), 200)
    last = http.post(f"/videos/{video_id}/source", files={"file": ("p.mp4", b"end")},
                     headers={"Content-Range": "part 2/2"})
    conforms(openapi, last, 201)
    conforms(openapi, http.get(f"/videos/{video_id}/status"), 200)
    conforms(openapi, http.post(f"/videos/{video_id}/source", files={"file": ("p.mp4", b"x")}),
             400)
    conforms(openapi, http.delete(f"/videos/{video_id}"), 204)
    conforms(openapi, http.get(f"/videos/{video_id}"), 404)
    conforms(openapi, http.get("/videos", headers={"Authorization": "Basic Zm9vOg=="}), 401)
