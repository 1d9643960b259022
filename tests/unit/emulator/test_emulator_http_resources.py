"""Videos, upload tokens, pagination and filters, token expiry, persistence, source uploads."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from tests.support.emulator import Emulator, running_emulator

MIB = 1024 * 1024
EXPIRY_DEADLINE_S = 10.0


def make_videos(client: httpx.Client) -> list[str]:
    specs = [("Alpha talk", ["a", "b"], "cats"), ("Beta talk", ["b"], "dogs"),
             ("Gamma", ["a", "b", "c"], "cats")]
    ids = []
    for title, tags, kind in specs:
        body = {"title": title, "tags": tags, "metadata": [{"key": "kind", "value": kind}],
                "description": f"about {kind}"}
        response = client.post("/videos", json=body)
        assert response.status_code == 201
        ids.append(response.json()["videoId"])
    return ids


def titles(client: httpx.Client, **params: object) -> list[str]:
    response = client.get("/videos", params=params)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return [v["title"] for v in response.json()["data"]]


def test_filters_and_sorting(client: httpx.Client) -> None:
    make_videos(client)
    assert titles(client, title="talk") == ["Alpha talk", "Beta talk"]
    assert titles(client, **{"tags[]": ["a", "b"]}) == ["Alpha talk", "Gamma"]
    assert titles(client, **{"metadata[kind]": "dogs"}) == ["Beta talk"]
    assert titles(client, description="cats") == ["Alpha talk", "Gamma"]
    assert titles(client, sortBy="title", sortOrder="desc") == ["Gamma", "Beta talk", "Alpha talk"]


def test_pagination_links(client: httpx.Client) -> None:
    make_videos(client)
    body = client.get("/videos", params={"currentPage": 2, "pageSize": 1}).json()
    page = body["pagination"]
    assert (page["currentPage"], page["pageSize"], page["pagesTotal"], page["itemsTotal"],
            page["currentPageItems"]) == (2, 1, 3, 3, 1)
    rels = {link["rel"]: link["uri"] for link in page["links"]}
    assert list(rels) == ["self", "first", "previous", "next", "last"]
    assert rels["next"] == "/videos?currentPage=3&pageSize=1"
    first = client.get("/videos", params={"pageSize": 2}).json()["pagination"]["links"]
    assert [link["rel"] for link in first] == ["self", "first", "next", "last"]


def test_video_crud_and_patch_semantics(client: httpx.Client) -> None:
    video = client.post("/videos", json={"title": "t", "tags": ["x"], "playerId": "pl1"}).json()
    vid = video["videoId"]
    assert video["public"] is True and video["mp4Support"] is True and video["playerId"] == "pl1"
    patched = client.patch(f"/videos/{vid}", json={"description": "d", "tags": ["y", "z"],
                                                   "metadata": [{"key": "k", "value": "v"}],
                                                   "playerId": None}).json()
    assert patched["title"] == "t" and patched["description"] == "d"
    assert patched["tags"] == ["y", "z"] and patched["metadata"] == [{"key": "k", "value": "v"}]
    assert "playerId" not in patched
    assert client.get(f"/videos/{vid}").json()["tags"] == ["y", "z"]
    status = client.get(f"/videos/{vid}/status").json()
    assert status["ingest"]["status"] == "uploading" and status["encoding"]["playable"] is False
    assert client.delete(f"/videos/{vid}").status_code == 204
    assert client.get(f"/videos/{vid}").status_code == 404


def test_upload_tokens_list_get_delete(emulator: Emulator, client: httpx.Client) -> None:
    forever = client.post("/upload-tokens", json={})
    assert forever.status_code == 200 and forever.json()["ttl"] == 0
    assert "expiresAt" not in forever.json()
    timed = client.post("/upload-tokens", json={"ttl": 3600}).json()
    assert timed["expiresAt"]
    listed = client.get("/upload-tokens", params={"sortBy": "ttl", "sortOrder": "desc"}).json()
    assert [t["ttl"] for t in listed["data"]] == [3600, 0]
    assert client.get(f"/upload-tokens/{timed['token']}").json() == timed
    assert client.delete(f"/upload-tokens/{timed['token']}").status_code == 204
    assert client.get(f"/upload-tokens/{timed['token']}").status_code == 404


def test_token_expiry(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token(ttl=1)
    deadline = time.monotonic() + EXPIRY_DEADLINE_S
    status = 201
    while status != 401 and time.monotonic() < deadline:
        status = client.post("/upload", params={"token": token},
                             files={"file": ("a.mp4", b"abc")}).status_code
        assert status in (201, 401)
        time.sleep(0.05)  # pacing of the poll, not synchronisation
    assert status == 401
    assert client.get(f"/upload-tokens/{token}").status_code == 404


def test_parts_on_source_endpoint(emulator: Emulator, client: httpx.Client) -> None:
    vid = client.post("/videos", json={"title": "parts"}).json()["videoId"]
    pieces = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    order = [(2, "part 2/*"), (1, "part 1/*"), (3, "part 3/3")]
    for number, header in order:
        response = client.post(f"/videos/{vid}/source", headers={"Content-Range": header},
                               files={"file": ("p.mp4", pieces[number - 1])})
        assert response.status_code == 201, response.text
    assert response.json()["title"] == "parts"
    stored = emulator.video(vid)
    assert stored["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert [(c["from"], c["arrived"]) for c in stored["chunks"]] == [
        (0, 2), (5 * MIB, 1), (10 * MIB, 3)]
    status = client.get(f"/videos/{vid}/status").json()["ingest"]
    assert status["receivedParts"] == {"parts": [1, 2, 3], "total": 3}


def test_byte_ranges_on_source_endpoint(emulator: Emulator, client: httpx.Client) -> None:
    vid = client.post("/videos", json={"title": "ranges"}).json()["videoId"]
    pieces = [os.urandom(5 * MIB), os.urandom(777)]
    total = sum(len(p) for p in pieces)
    for header, piece in ((f"bytes {5 * MIB}-{total - 1}/{total}", pieces[1]),
                          (f"bytes 0-{5 * MIB - 1}/*", pieces[0])):
        response = client.post(f"/videos/{vid}/source", headers={"Content-Range": header},
                               files={"file": ("r.mp4", piece)})
        assert response.status_code == 201, response.text
    assert response.json()["videoId"] == vid and "assets" in response.json()
    assert emulator.video(vid)["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    again = client.post(f"/videos/{vid}/source", headers={"Content-Range": f"bytes 0-{5 * MIB - 1}/*"},
                        files={"file": ("r.mp4", pieces[0])})
    assert again.json()["type"].endswith("/video-source-already-uploaded")


def test_persistence_across_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "persist"
    payload = os.urandom(6 * MIB)
    with running_emulator(data_dir) as emu, httpx.Client(base_url=emu.url) as http:
        token = emu.create_upload_token()
        first = http.post("/upload", params={"token": token}, files={"f": ("a.mp4", payload[:5 * MIB])},
                          headers={"Content-Range": f"bytes 0-{5 * MIB - 1}/{len(payload)}"})
        vid = first.json()["videoId"]
    with running_emulator(data_dir) as emu, httpx.Client(base_url=emu.url) as http:
        assert emu.video(vid)["size"] == 5 * MIB
        last = http.post("/upload", params={"token": token}, data={"videoId": vid},
                         files={"f": ("a.mp4", payload[5 * MIB:])},
                         headers={"Content-Range": f"bytes {5 * MIB}-{len(payload) - 1}/*"})
        assert last.status_code == 201 and last.json()["videoId"] == vid
        assert emu.video(vid)["sha256"] == hashlib.sha256(payload).hexdigest()
    with running_emulator(data_dir) as emu:
        assert emu.video(vid)["complete"] is True
        emu.reset()
        assert emu.videos() == []
