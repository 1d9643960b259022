"""Fault injection over HTTP: 5xx bodies, cut connections, 429 with rate-limit headers, log."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.support.emulator import Emulator, running_emulator

MIB = 1024 * 1024


def test_errors_are_api_shaped_and_counted(emulator: Emulator, client: httpx.Client) -> None:
    emulator.set_faults(seed=1, error_rate=1.0)
    response = client.get("/videos")
    assert response.status_code in (500, 503)
    assert response.json()["status"] == response.status_code
    assert response.json()["type"].startswith("https://docs.api.video/reference/")
    assert "retry-after" not in response.headers
    assert emulator.faults()["injected"]["error"] == 1
    assert emulator.videos() == []  # hooks are never faulted


def test_reset_cuts_the_connection_mid_body(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    emulator.set_faults(seed=2, reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        client.post("/upload", params={"token": token},
                    files={"file": ("a.mp4", os.urandom(8 * MIB))},
                    headers={"Content-Range": f"bytes 0-{8 * MIB - 1}/{8 * MIB}"})
    emulator.set_faults(reset_rate=0.0)
    assert emulator.faults()["injected"]["reset"] == 1
    assert emulator.videos() == []
    assert client.get("/videos").status_code == 200


def test_upload_rate_limit(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    emulator.set_faults(rate_limit_per_minute=2)
    answers = [client.post("/upload", params={"token": token}, files={"f": ("a.mp4", b"x")})
               for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    limited = answers[2]
    assert limited.json() == {"type": "https://docs.api.video/reference/too-many-requests",
                              "title": "Too many requests.", "status": 429}
    assert limited.headers["x-ratelimit-limit"] == "2"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(limited.headers["x-ratelimit-retry-after"]) <= 60
    assert "retry-after" not in limited.headers
    assert client.get("/videos").status_code == 200  # other classes are not limited by it
    assert emulator.faults()["injected"]["rate_limited"] == 1


def test_same_seed_same_faults_over_http(tmp_path: Path) -> None:
    def run(name: str) -> list[int]:
        flags = ["--seed", "11", "--error-rate", "0.5"]
        with running_emulator(tmp_path / name, args=flags) as emu, httpx.Client(
                base_url=emu.url, headers=emu.auth_header) as http:
            return [http.get("/videos").status_code for _ in range(20)]

    first = run("one")
    assert first == run("two") and {200} < set(first)


def test_request_log_has_no_tokens(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    client.post("/upload", params={"token": token}, files={"f": ("a.mp4", b"x")},
                headers={"Content-Range": "bytes 0-0/1"})
    log = emulator.requests_log()
    assert [e["path"] for e in log] == ["/upload-tokens", "/upload"]
    entry = log[-1]
    assert entry["status"] == 201 and entry["content_range"] == "bytes 0-0/1"
    assert re.fullmatch(r"vi\w{22}", entry["video_id"])
    assert entry["finished"] >= entry["started"]
    assert token not in repr(log)


def test_latency_flag_parses(tmp_path: Path) -> None:
    with running_emulator(tmp_path / "lat", args=["--latency-ms", "1,2"]) as emu:
        assert emu.faults()["latency_ms"] == [1.0, 2.0]


def test_an_ingest_rate_reads_upload_bodies_no_faster(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    emulator.set_faults(ingest_mib_per_s=8)
    try:
        began = time.monotonic()
        answer = client.post("/upload", params={"token": token}, files={"file": ("a.mp4", os.urandom(4 * MIB))})
        took = time.monotonic() - began
    finally:
        emulator.set_faults(ingest_mib_per_s=0)
    assert answer.status_code == 201 and took >= 0.45  # 4 MiB at 8 MiB/s: half a second at least
    with pytest.raises(httpx.HTTPStatusError):
        emulator.set_faults(ingest_mib_per_s=-1)
