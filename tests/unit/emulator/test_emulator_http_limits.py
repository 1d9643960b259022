"""Per-class rate limits over HTTP: headers per class, 429 per class, the limits hook, the log."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.emulator import Emulator, running_emulator

TOO_MANY = {"type": "https://docs.api.video/reference/too-many-requests",
            "title": "Too many requests.", "status": 429}


def rate(response: httpx.Response) -> tuple[int, int]:
    """(limit, remaining) of an answer; checks the retry-after header on the way."""
    assert 1 <= int(response.headers["x-ratelimit-retry-after"]) <= 60
    assert "retry-after" not in response.headers
    return int(response.headers["x-ratelimit-limit"]), int(response.headers["x-ratelimit-remaining"])


def upload(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/upload", params={"token": token}, files={"file": ("a.mp4", b"x")})


def test_production_limits_reported_per_class(tmp_path: Path) -> None:
    with running_emulator(tmp_path / "emu", args=["--limits", "production"]) as emu, httpx.Client(
            base_url=emu.url, headers=emu.auth_header) as http:
        assert emu.faults()["limits"] == {"upload": 100, "write": 200, "read": 500}
        token = http.post("/upload-tokens", json={"ttl": 0})
        assert rate(token) == (200, 199)
        assert rate(http.get("/videos")) == (500, 499)
        assert rate(http.head("/videos")) == (500, 498)
        uploaded = upload(http, token.json()["token"])
        assert uploaded.status_code == 201 and rate(uploaded) == (100, 99)
        video_id = uploaded.json()["videoId"]
        assert rate(http.patch(f"/videos/{video_id}", json={"title": "t"})) == (200, 198)
        assert rate(http.get(f"/videos/{video_id}")) == (500, 497)
        with httpx.Client(base_url=emu.url) as hooks:  # hooks show the read window, uncounted
            assert rate(hooks.get("/_emulator/faults")) == (500, 497)


def test_write_limit_gives_429_while_uploads_pass(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()  # write 1
    emulator.set_faults(limits={"write": 3})
    video_id = client.post("/videos", json={"title": "v"}).json()["videoId"]  # write 2
    assert client.patch(f"/videos/{video_id}", json={"title": "w"}).status_code == 200  # write 3
    limited = client.patch(f"/videos/{video_id}", json={"title": "x"})
    assert limited.status_code == 429
    assert limited.json() == TOO_MANY
    assert rate(limited) == (3, 0)
    passed = upload(client, token)
    assert passed.status_code == 201 and rate(passed) == (100_000, 99_999)
    assert client.get(f"/videos/{video_id}").json()["title"] == "w"
    injected = emulator.faults()["injected"]
    assert injected["rate_limited"] == 1
    assert injected["rate_limited_by_class"] == {"upload": 0, "write": 1, "read": 0}
    assert [(e["method"], e["class"], e["status"]) for e in emulator.requests_log()][-3:] == [
        ("PATCH", "write", 429), ("POST", "upload", 201), ("GET", "read", 200)]


def test_put_limits_is_a_partial_update_kept_by_reset(emulator: Emulator, client: httpx.Client) -> None:
    body = emulator.set_faults(limits={"read": 7})
    assert body["limits"] == {"upload": 100_000, "write": 100_000, "read": 7}
    assert emulator.set_faults(limits={"upload": 5, "write": 9})["limits"] == {
        "upload": 5, "write": 9, "read": 7}
    assert rate(client.get("/videos")) == (7, 6)
    assert emulator.set_faults(rate_limit_per_minute=2)["limits"]["upload"] == 2  # the override wins
    assert emulator.set_faults(rate_limit_per_minute=0)["limits"]["upload"] == 5
    emulator.reset()
    after = emulator.faults()
    assert after["limits"] == {"upload": 5, "write": 9, "read": 7}
    assert after["injected"]["rate_limited_by_class"] == {"upload": 0, "write": 0, "read": 0}
    assert rate(client.get("/videos")) == (7, 6)  # reset restarts the windows


@pytest.mark.parametrize("bad", [
    {"write": 0}, {"read": -3}, {"upload": 2.5}, {"upload": "10"}, {"reads": 5}, [5], None,
])
def test_invalid_limits_are_rejected(emulator: Emulator, bad: object) -> None:
    before = emulator.faults()["limits"]
    with httpx.Client(base_url=emulator.url) as hooks:
        answer = hooks.put("/_emulator/faults", json={"limits": bad})
    assert answer.status_code == 400
    assert "limit" in answer.json()["error"]
    assert emulator.faults()["limits"] == before


def test_request_log_carries_the_class(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    upload(client, token)
    video_id = client.post("/videos", json={"title": "two-step"}).json()["videoId"]
    client.post(f"/videos/{video_id}/source", files={"file": ("b.mp4", b"y")})
    client.get(f"/videos/{video_id}/status")
    client.delete(f"/videos/{video_id}")
    client.post("/auth/api-key", json={"apiKey": emulator.api_key})
    assert [(e["method"], e["class"]) for e in emulator.requests_log()] == [
        ("POST", "write"), ("POST", "upload"), ("POST", "write"), ("POST", "upload"),
        ("GET", "read"), ("DELETE", "write"), ("POST", "write")]
