"""The error catalogue over real HTTP: each bad request gets api.video's slug, status and name."""

from __future__ import annotations

import httpx

from tests.support.emulator import Emulator

MIB = 1024 * 1024
DOCS = "https://docs.api.video/reference/"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-retry-after")


def check(response: httpx.Response, status: int, slug: str, name: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == DOCS + slug and body["status"] == status and body["title"]
    if name is not None:
        assert body["name"] == name
    assert all(h in response.headers for h in RATE_HEADERS)
    assert "retry-after" not in response.headers


def upload(client: httpx.Client, token: str, data: bytes, content_range: str | None = None,
           video_id: str | None = None) -> httpx.Response:
    headers = {"Content-Range": content_range} if content_range else {}
    fields = {"videoId": video_id} if video_id else {}
    return client.post("/upload", params={"token": token}, headers=headers, data=fields,
                       files={"file": ("clip.mp4", data, "video/mp4")})


def test_auth_errors(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        check(http.get("/videos"), 401, "authentication-missing-authorization-header")
        check(http.get("/videos", auth=("wrong", "")), 401, "authentication-invalid-api-key")
        check(http.get("/videos", headers={"Authorization": "Bearer nope"}), 401,
              "authentication-invalid-access-token")
        check(http.get("/videos", headers={"Authorization": "Token x"}), 401,
              "authentication-invalid-authorization-header-value")
        check(http.post("/auth/api-key", json={"apiKey": "wrong"}), 400,
              "authentication-invalid-user-credentials")
        check(http.post("/auth/refresh", json={"refreshToken": "nope"}), 400,
              "authentication-invalid-refresh-token")
        check(http.post("/auth/api-key", content=b"{not json"), 400, "invalid-payload")


def test_refresh_rotates_and_bearer_works(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        tokens = http.post("/auth/api-key", json={"apiKey": emulator.api_key}).json()
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert http.get("/videos", headers=bearer).status_code == 200
        fresh = http.post("/auth/refresh", json={"refreshToken": tokens["refresh_token"]})
        assert fresh.status_code == 200
        again = http.post("/auth/refresh", json={"refreshToken": tokens["refresh_token"]})
        check(again, 400, "authentication-invalid-refresh-token")


def test_route_errors(client: httpx.Client) -> None:
    check(client.get("/nowhere"), 404, "unrecognized-request-url")
    check(client.put("/videos"), 405, "method-not-allowed")
    check(client.get("/videos/vi0000000000000000000000"), 404, "resource-not-found", "videoId")
    check(client.get("/videos/vi0000000000000000000000/status"), 404, "resource-not-found")
    check(client.post("/videos", content=b"[1,"), 400, "invalid-payload")
    check(client.post("/videos", json={}), 400, "attribute-required", "title")
    video = client.post("/videos", json={"title": "t"}).json()["videoId"]
    check(client.patch(f"/videos/{video}", json={"tags": "x"}), 400, "invalid-attribute", "tags")
    check(client.patch(f"/videos/{video}", json={"public": "yes"}), 400, "invalid-attribute",
          "public")
    check(client.get("/videos", params={"pageSize": 1000}), 400, "invalid-query-parameter",
          "pageSize")


def test_upload_token_errors(emulator: Emulator, client: httpx.Client) -> None:
    check(client.post("/upload", files={"file": ("a", b"x")}), 401,
          "authentication-missing-upload-token")
    check(upload(client, "to0000000000000000000000", b"x"), 401,
          "authentication-invalid-upload-token")
    token = emulator.create_upload_token()
    assert client.delete(f"/upload-tokens/{token}").status_code == 204
    check(upload(client, token, b"x"), 401, "authentication-invalid-upload-token")
    check(client.get(f"/upload-tokens/{token}"), 404, "resource-not-found")


def test_chunk_errors(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    small = b"s" * 1000
    check(upload(client, token, small, "bytes 0-999/*"), 400,
          "video-content-range-by-bytes-range-too-small", "Content-Range")
    check(upload(client, token, small, "bytes=0-999/1000"), 400, "video-content-range-malformed")
    check(upload(client, token, small, "bytes 0-1999/2000"), 400,
          "video-content-range-by-bytes-range-mismatch")
    check(upload(client, token, b"", "bytes 0-0/1"), 400, "uploaded-file-empty")
    check(upload(client, token, small, "part 1/*"), 400,
          "video-content-range-by-part-uploaded-file-too-small")
    check(upload(client, token, small, video_id="vi0000000000000000000000"), 404,
          "resource-not-found", "videoId")
    no_file = client.post("/upload", params={"token": token}, data={"a": "b"},
                          files={"x": ("", b"")})
    assert no_file.status_code == 400
    check(client.post("/upload", params={"token": token}, data={"videoId": ""}), 400,
          "uploaded-file-no-file")
    two = client.post("/upload", params={"token": token},
                      files=[("a", ("a.mp4", b"1")), ("b", ("b.mp4", b"2"))])
    check(two, 400, "uploaded-file-multiple-files")
    assert emulator.videos() == []  # no rejected chunk made a video


def test_range_rules_over_http(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    chunk = b"a" * (5 * MIB)
    total = 5 * MIB + 10
    first = upload(client, token, chunk, f"bytes 0-{5 * MIB - 1}/{total}")
    assert first.status_code == 201 and set(first.json()) == {"videoId"}
    video = first.json()["videoId"]
    check(upload(client, token, chunk, f"bytes 0-{5 * MIB - 1}/{total}", video), 400,
          "video-content-range-by-bytes-range-overlap")
    check(upload(client, token, b"b" * 10, f"bytes {5 * MIB}-{5 * MIB + 9}/{total + 1}", video),
          400, "video-content-range-by-bytes-different-total-bytes")
    check(upload(client, token, b"b" * 10, "part 2/2", video), 400,
          "video-content-range-started-with-bytes")
    last = upload(client, token, b"b" * 10, f"bytes {5 * MIB}-{total - 1}/{total}", video)
    assert last.status_code == 201 and last.json()["title"] == "clip.mp4"
    check(upload(client, token, b"c" * 10, f"bytes {5 * MIB}-{total - 1}/{total}", video), 400,
          "video-source-already-uploaded")
    status = client.get(f"/videos/{video}/status").json()
    assert status["ingest"]["status"] == "uploaded" and status["encoding"]["playable"]
    assert status["ingest"]["filesize"] == total


def test_missing_video_id_creates_a_new_video(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    one = upload(client, token, b"a" * (5 * MIB), f"bytes 0-{5 * MIB - 1}/{10 * MIB}")
    two = upload(client, token, b"a" * (5 * MIB), f"bytes {5 * MIB}-{10 * MIB - 1}/{10 * MIB}")
    assert one.json()["videoId"] != two.json()["videoId"]
    assert sorted(v["complete"] for v in emulator.videos()) == [False, False]


def test_video_id_after_file_and_any_field_name(emulator: Emulator, client: httpx.Client) -> None:
    token = emulator.create_upload_token()
    data = bytes(range(256)) * (5 * 4096)  # 5 MiB
    first = upload(client, token, data, f"bytes 0-{len(data) - 1}/{2 * len(data)}")
    video = first.json()["videoId"]
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"whatever\"; "
            f"filename=\"w.bin\"\r\n\r\n").encode() + data + (
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"videoId\"\r\n\r\n"
            f"{video}\r\n--{boundary}--\r\n").encode()
    second = client.post("/upload", params={"token": token}, content=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Range": f"bytes {len(data)}-{2 * len(data) - 1}/{2 * len(data)}"})
    assert second.status_code == 201, second.text
    assert second.json()["videoId"] == video and "assets" in second.json()
    stored = emulator.video(video)
    assert stored["complete"] and stored["size"] == 2 * len(data)
    assert [(c["from"], c["arrived"]) for c in stored["chunks"]] == [(0, 1), (len(data), 2)]
