"""Accounts over real HTTP: one per API key, isolated resources, per-account rate-limit windows,
the account selector of the hooks, persistence, and the key flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulator.accounts import account_id
from emulator.client import EmulatorClient
from tests.support.emulator import Emulator, basic_auth, running_emulator

MIB = 1024 * 1024
KEYS = ("key-alpha", "key-bravo", "key-charlie")
DOCS = "https://docs.api.video/reference/"
NOT_FOUND_VIDEO = {"type": DOCS + "resource-not-found", "title": "The requested resource was not found.",
                   "name": "videoId", "status": 404}
NOT_FOUND_TOKEN = {**NOT_FOUND_VIDEO, "name": "uploadToken"}
CLI_TIMEOUT_S = 30.0


@pytest.fixture
def three(tmp_path: Path) -> Iterator[Emulator]:
    """An emulator with three accounts; its own client is the first one's."""
    with running_emulator(tmp_path / "emu", api_key=KEYS[0], api_keys=KEYS[1:]) as emu:
        yield emu


def http_for(emu: Emulator, key: str) -> httpx.Client:
    return httpx.Client(base_url=emu.url, headers={"Authorization": basic_auth(key)}, timeout=30)


def token_upload(http: httpx.Client, token: str, data: bytes, video_id: str | None = None,
                 content_range: str | None = None, video_id_first: bool = True) -> httpx.Response:
    """``POST /upload?token=`` with ``videoId`` before or after the file part."""
    boundary = "acc0unts"
    file_part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
                 f"\r\n").encode() + data + b"\r\n"
    id_part = (f'--{boundary}\r\nContent-Disposition: form-data; name="videoId"\r\n\r\n{video_id}\r\n'
               .encode() if video_id else b"")
    body = (id_part + file_part if video_id_first else file_part + id_part) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if content_range:
        headers["Content-Range"] = content_range
    return http.post("/upload", params={"token": token}, content=body, headers=headers)


def rate(response: httpx.Response) -> tuple[int, int]:
    return int(response.headers["x-ratelimit-limit"]), int(response.headers["x-ratelimit-remaining"])


def test_accounts_are_listed_in_order_with_their_counts(three: Emulator) -> None:
    ids = [account_id(key) for key in KEYS]
    assert ids[0].startswith("acct-") and len(ids[0]) == len("acct-") + 10
    assert [three.for_key(key).account for key in KEYS] == ids
    assert three.accounts() == [{"account": i, "videos": 0, "upload_tokens": 0} for i in ids]
    bravo = three.for_key(KEYS[1])
    bravo.create_upload_token()
    bravo.create_upload_token()
    with http_for(three, KEYS[2]) as charlie:
        assert charlie.post("/videos", json={"title": "c"}).status_code == 201
    assert [(a["videos"], a["upload_tokens"]) for a in three.accounts()] == [(0, 0), (0, 2), (1, 0)]
    assert all(KEY not in json.dumps(three.accounts()) for KEY in KEYS)  # ids, never keys


def test_videos_and_listings_are_isolated_both_ways(three: Emulator) -> None:
    clients = [http_for(three, key) for key in KEYS]
    try:
        own = [c.post("/videos", json={"title": f"v{i}"}).json()["videoId"] for i, c in enumerate(clients)]
        for i, client in enumerate(clients):
            listed = client.get("/videos").json()
            assert [v["videoId"] for v in listed["data"]] == [own[i]]
            assert listed["pagination"]["itemsTotal"] == 1
            for j, other in enumerate(own):
                if i == j:
                    continue
                for answer in (client.get(f"/videos/{other}"), client.get(f"/videos/{other}/status"),
                               client.patch(f"/videos/{other}", json={"title": "stolen"}),
                               client.delete(f"/videos/{other}"),
                               client.post(f"/videos/{other}/source", files={"file": ("x.mp4", b"x")})):
                    assert answer.status_code == 404 and answer.json() == NOT_FOUND_VIDEO, answer.text
        for i, video_id in enumerate(own):  # nothing above touched another account's video
            stored = three.video(video_id)
            assert stored["title"] == f"v{i}" and stored["size"] == 0
            assert stored["account"] == account_id(KEYS[i])
    finally:
        for client in clients:
            client.close()


def test_bearer_tokens_belong_to_the_keys_account(three: Emulator) -> None:
    with httpx.Client(base_url=three.url) as http:
        alpha = http.post("/auth/api-key", json={"apiKey": KEYS[0]}).json()
        bravo = http.post("/auth/api-key", json={"apiKey": KEYS[1]}).json()
        as_alpha = {"Authorization": f"Bearer {alpha['access_token']}"}
        made = http.post("/videos", json={"title": "alpha's"}, headers=as_alpha).json()["videoId"]
        refreshed = http.post("/auth/refresh", json={"refreshToken": bravo["refresh_token"]}).json()
        as_bravo = {"Authorization": f"Bearer {refreshed['access_token']}"}
        assert http.get(f"/videos/{made}", headers=as_bravo).status_code == 404
        assert http.get("/videos", headers=as_bravo).json()["data"] == []
        assert http.get(f"/videos/{made}", headers=as_alpha).status_code == 200
    assert three.video(made)["account"] == account_id(KEYS[0])


def test_upload_tokens_answer_only_their_account(three: Emulator) -> None:
    alpha, bravo, charlie = (http_for(three, key) for key in KEYS)
    with alpha, bravo, charlie:
        made = alpha.post("/upload-tokens", json={"ttl": 3600}).json()
        token = made["token"]
        assert alpha.get(f"/upload-tokens/{token}").json() == made
        for other in (bravo, charlie):
            answer = other.get(f"/upload-tokens/{token}")
            assert answer.status_code == 404 and answer.json() == NOT_FOUND_TOKEN
            assert other.get("/upload-tokens").json()["data"] == []
            refused = other.delete(f"/upload-tokens/{token}")
            assert refused.status_code == 404 and refused.json() == NOT_FOUND_TOKEN
        assert [t["token"] for t in alpha.get("/upload-tokens").json()["data"]] == [token]
        assert token_upload(alpha, token, b"still works").status_code == 201  # B's DELETE did nothing
        bravo_token = bravo.post("/upload-tokens", json={}).json()["token"]
        assert [t["token"] for t in bravo.get("/upload-tokens").json()["data"]] == [bravo_token]


def test_a_deleted_or_expired_token_is_gone_at_once(three: Emulator) -> None:
    with http_for(three, KEYS[1]) as bravo:
        token = bravo.post("/upload-tokens", json={}).json()["token"]
        first = token_upload(bravo, token, os.urandom(5 * MIB), content_range=f"bytes 0-{5 * MIB - 1}/{6 * MIB}")
        assert first.status_code == 201
        assert bravo.delete(f"/upload-tokens/{token}").status_code == 204
        last = token_upload(bravo, token, os.urandom(MIB), first.json()["videoId"],
                            f"bytes {5 * MIB}-{6 * MIB - 1}/{6 * MIB}")
        assert last.status_code == 401
        assert last.json()["type"] == DOCS + "authentication-invalid-upload-token"
        assert bravo.get(f"/upload-tokens/{token}").json() == NOT_FOUND_TOKEN
        assert bravo.delete(f"/upload-tokens/{token}").status_code == 404
        expired = bravo.post("/upload-tokens", json={"ttl": 1}).json()["token"]
        stored = json.loads((three.data_dir / "upload_tokens.json").read_text())
        assert {t["token"]: t["account"] for t in stored}[expired] == account_id(KEYS[1])
    # An expired token is inactive: 404 to GET and DELETE, left out of lists, 401 on /upload. Rather
    # than sleeping past its second, age it on disk and restart on the same data dir.
    for item in stored:
        item["created_s"] -= 10
    three.stop()
    (three.data_dir / "upload_tokens.json").write_text(json.dumps(stored))
    with running_emulator(three.data_dir, api_key=KEYS[0], api_keys=KEYS[1:]) as again, \
            http_for(again, KEYS[1]) as bravo:
        assert bravo.get(f"/upload-tokens/{expired}").json() == NOT_FOUND_TOKEN
        assert bravo.delete(f"/upload-tokens/{expired}").json() == NOT_FOUND_TOKEN
        assert bravo.get("/upload-tokens").json()["data"] == []
        assert token_upload(bravo, expired, b"x").status_code == 401
        assert again.accounts()[1]["upload_tokens"] == 0


@pytest.mark.parametrize("video_id_first", [True, False])
@pytest.mark.parametrize("content_range", [None, f"bytes 0-{5 * MIB - 1}/*", "part 1/*"])
def test_a_token_cannot_upload_into_another_accounts_video(
        three: Emulator, video_id_first: bool, content_range: str | None) -> None:
    alpha_token = three.create_upload_token()
    with http_for(three, KEYS[1]) as bravo:
        target = bravo.post("/videos", json={"title": "bravo's"}).json()["videoId"]
        answer = token_upload(bravo, alpha_token, os.urandom(5 * MIB), target, content_range, video_id_first)
        assert answer.status_code == 404 and answer.json() == NOT_FOUND_VIDEO
        assert bravo.get(f"/videos/{target}/status").json()["ingest"]["receivedBytes"] == []
    stored = three.video(target)
    assert (stored["size"], stored["chunks"], stored["complete"]) == (0, [], False)
    assert (three.data_dir / "videos" / target / "source").stat().st_size == 0
    assert three.videos(account=three.account) == []  # and no video was made in A either


def test_a_token_upload_makes_its_accounts_video(three: Emulator) -> None:
    bravo = three.for_key(KEYS[1])
    token = bravo.create_upload_token()
    with httpx.Client(base_url=three.url, headers=three.auth_header) as alpha_auth:
        # Authorization is ignored on /upload: the token decides the account.
        made = token_upload(alpha_auth, token, b"tiny").json()
    assert made["assets"] and three.video(made["videoId"])["account"] == bravo.account
    assert [v["videoId"] for v in three.videos(account=bravo.account)] == [made["videoId"]]
    assert three.videos(account=three.account) == []
    with http_for(three, KEYS[1]) as http:
        assert [v["videoId"] for v in http.get("/videos").json()["data"]] == [made["videoId"]]


def test_rate_limit_windows_are_per_account(three: Emulator) -> None:
    three.set_faults(limits={"upload": 2})
    alpha_token, bravo_token = three.create_upload_token(), three.for_key(KEYS[1]).create_upload_token()
    with httpx.Client(base_url=three.url) as http:
        assert [rate(token_upload(http, alpha_token, b"a")) for _ in range(2)] == [(2, 1), (2, 0)]
        limited = token_upload(http, alpha_token, b"a")
        assert limited.status_code == 429 and rate(limited) == (2, 0)
        passed = token_upload(http, bravo_token, b"b")
        assert passed.status_code == 201 and rate(passed) == (2, 1)
        with http_for(three, KEYS[0]) as alpha:  # A's other classes go on
            assert alpha.get("/videos").status_code == 200
            source = alpha.post(f"/videos/{alpha.post('/videos', json={'title': 't'}).json()['videoId']}/source",
                                files={"file": ("a.mp4", b"a")})
            assert source.status_code == 429  # the same account's upload window, by API key
        with http_for(three, KEYS[2]) as charlie:
            video = charlie.post("/videos", json={"title": "t"}).json()["videoId"]
            source = charlie.post(f"/videos/{video}/source", files={"file": ("c.mp4", b"c")})
            assert source.status_code == 201 and rate(source) == (2, 1)
        # The hooks show the read window of the account they select, uncounted.
        assert rate(http.get("/_emulator/videos", params={"account": three.account})) == (100_000, 99_999)
        assert rate(http.get("/_emulator/videos", params={"account": account_id(KEYS[1])})) == (
            100_000, 100_000)
    assert three.faults()["injected"]["rate_limited_by_class"]["upload"] == 2


def test_auth_requests_count_against_the_keys_account(three: Emulator) -> None:
    three.set_faults(limits={"write": 1})
    with httpx.Client(base_url=three.url) as http:
        first = http.post("/auth/api-key", json={"apiKey": KEYS[0]})
        assert first.status_code == 200 and rate(first) == (1, 0)
        assert http.post("/auth/api-key", json={"apiKey": KEYS[0]}).status_code == 429
        bravo = http.post("/auth/api-key", json={"apiKey": KEYS[1]})
        assert bravo.status_code == 200 and rate(bravo) == (1, 0)
        assert http.post("/auth/refresh", json={"refreshToken": bravo.json()["refresh_token"]}).status_code == 429
        wrong = http.post("/auth/api-key", json={"apiKey": "not-a-key"})  # the anonymous window
        assert wrong.status_code == 400 and rate(wrong) == (1, 0)
        assert http.post("/auth/api-key", json={"apiKey": "not-a-key"}).status_code == 429
        charlie = http.post("/auth/api-key", json={"apiKey": KEYS[2]})
        assert charlie.status_code == 200
    assert [e["account"] for e in three.requests_log()] == [
        account_id(KEYS[0]), account_id(KEYS[0]), account_id(KEYS[1]), account_id(KEYS[1]), None, None,
        account_id(KEYS[2])]


def test_request_log_names_the_account(three: Emulator) -> None:
    bravo = three.for_key(KEYS[1])
    token = bravo.create_upload_token()
    with httpx.Client(base_url=three.url) as http:
        http.get("/videos", headers=three.auth_header)
        token_upload(http, token, b"x")
        http.get("/videos", auth=("nobody", ""))
        token_upload(http, "to0000000000000000000000", b"x")
    log = three.requests_log()
    assert [(e["method"], e["path"], e["account"]) for e in log] == [
        ("POST", "/upload-tokens", bravo.account), ("GET", "/videos", three.account),
        ("POST", "/upload", bravo.account), ("GET", "/videos", None), ("POST", "/upload", None)]
    assert [e["n"] for e in three.requests_log(account=bravo.account)] == [log[0]["n"], log[2]["n"]]
    assert three.requests_log(account=account_id(KEYS[2])) == []


def test_reset_of_one_account_leaves_the_others(three: Emulator) -> None:
    alpha, bravo = three, three.for_key(KEYS[1])
    three.set_faults(limits={"read": 3})
    tokens = {c.account: c.create_upload_token() for c in (alpha, bravo)}
    with httpx.Client(base_url=three.url) as http:
        made = {account: token_upload(http, token, b"v").json()["videoId"] for account, token in tokens.items()}
        for client in (alpha, bravo):
            http.get("/videos", headers=client.auth_header)
        three.reset(account=alpha.account)
        assert three.videos(account=alpha.account) == [] and three.requests_log(account=alpha.account) == []
        assert [v["videoId"] for v in three.videos()] == [made[bravo.account]]
        assert len(three.requests_log(account=bravo.account)) == 3
        assert token_upload(http, tokens[alpha.account], b"v").status_code == 401
        assert token_upload(http, tokens[bravo.account], b"v").status_code == 201
        assert rate(http.get("/videos", headers=alpha.auth_header)) == (3, 2)  # A's windows restarted
        assert rate(http.get("/videos", headers=bravo.auth_header)) == (3, 1)  # B's did not
        unknown = http.post("/_emulator/reset", params={"account": "acct-0000000000"})
        assert unknown.status_code == 404 and "acct-0000000000" in unknown.json()["error"]
        assert http.get("/_emulator/videos", params={"account": "nope"}).status_code == 404
        assert http.get("/_emulator/requests", params={"account": "nope"}).status_code == 404
    assert three.faults()["requests"] > 0  # counters are global: only a full reset zeroes them
    three.reset()
    assert three.videos() == [] and three.faults()["requests"] == 0
    assert [a["upload_tokens"] for a in three.accounts()] == [0, 0, 0]


def test_restart_keeps_each_accounts_videos(tmp_path: Path) -> None:
    data_dir = tmp_path / "keep"
    with running_emulator(data_dir, api_key=KEYS[0], api_keys=KEYS[1:]) as emu:
        made = {}
        for key in KEYS:
            with http_for(emu, key) as http:
                made[key] = http.post("/videos", json={"title": key}).json()["videoId"]
        token = emu.for_key(KEYS[2]).create_upload_token()
    # The same keys in another order: accounts follow the keys, not their positions.
    with running_emulator(data_dir, api_key=KEYS[2], api_keys=KEYS[:2]) as emu:
        for key in KEYS:
            with http_for(emu, key) as http:
                assert [v["videoId"] for v in http.get("/videos").json()["data"]] == [made[key]]
            assert emu.video(made[key])["account"] == account_id(key)
        with http_for(emu, KEYS[2]) as http:
            assert http.get(f"/upload-tokens/{token}").status_code == 200
            assert token_upload(http, token, b"x", made[KEYS[2]]).status_code == 201


def test_an_old_single_account_data_dir_loads_into_the_first_account(tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    with running_emulator(data_dir, api_key="old-key") as emu, httpx.Client(base_url=emu.url) as http:
        token = emu.create_upload_token()
        first = token_upload(http, token, os.urandom(5 * MIB), content_range=f"bytes 0-{5 * MIB - 1}/*")
        video_id = first.json()["videoId"]
    # What the single-account emulator wrote: the same records without an account.
    record_path = data_dir / "videos" / video_id / "video.json"
    record = json.loads(record_path.read_text())
    del record["account"]
    record_path.write_text(json.dumps(record))
    tokens = json.loads((data_dir / "upload_tokens.json").read_text())
    for item in tokens:
        del item["account"]
    (data_dir / "upload_tokens.json").write_text(json.dumps(tokens))
    with running_emulator(data_dir, api_key=KEYS[1], api_keys=[KEYS[0]]) as emu:
        bravo = account_id(KEYS[1])
        assert emu.accounts() == [{"account": bravo, "videos": 1, "upload_tokens": 1},
                                  {"account": account_id(KEYS[0]), "videos": 0, "upload_tokens": 0}]
        with http_for(emu, KEYS[1]) as http:
            assert http.get(f"/videos/{video_id}").status_code == 200
            assert http.get(f"/upload-tokens/{token}").status_code == 200
            last = token_upload(http, token, b"end", video_id, f"bytes {5 * MIB}-{5 * MIB + 2}/{5 * MIB + 3}")
            assert last.status_code == 201 and "assets" in last.json()
        with http_for(emu, KEYS[0]) as http:
            assert http.get(f"/videos/{video_id}").status_code == 404
    assert json.loads(record_path.read_text())["account"] == bravo  # written down at load
    assert {t["account"] for t in json.loads((data_dir / "upload_tokens.json").read_text())} == {bravo}


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m emulator`` with arguments that make it exit before serving."""
    argv = [sys.executable, "-m", "emulator", "--data-dir", str(tmp_path / "cli-data"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)


@pytest.mark.parametrize(("content", "says"), [(None, "no such file"), ("  \n", "holds no key")])
def test_a_missing_or_empty_key_file_exits_2_in_one_line(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    done = run_cli(tmp_path, "--api-key", "fine", "--api-key-file", str(path))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--api-key-file" in lines[0] and str(path) in lines[0] and says in lines[0]


def test_no_key_at_all_exits_2_in_one_line(tmp_path: Path) -> None:
    done = run_cli(tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--api-key" in lines[0] and "--api-key-file" in lines[0]


def test_keys_come_from_files_and_never_from_the_command_line(tmp_path: Path) -> None:
    secret = "s3cret-key-from-a-file"
    with running_emulator(tmp_path / "emu", api_key="first-key", api_keys=[secret],
                          args=["--api-key", "flag-key"]) as emu:
        argv = emu.proc.args
        assert isinstance(argv, list) and argv.count("--api-key-file") == 2
        assert "first-key" not in argv and secret not in argv and "flag-key" in argv
        assert [a["account"] for a in emu.accounts()] == [  # in command-line order
            account_id("first-key"), account_id(secret), account_id("flag-key")]
        assert emu.api_keys == ("first-key", secret)
        with httpx.Client(base_url=emu.url, headers={"Authorization": basic_auth(secret)}) as http:
            assert http.get("/videos").status_code == 200
        key_dirs = {Path(argv[i + 1]).parent for i, a in enumerate(argv) if a == "--api-key-file"}
        assert len(key_dirs) == 1 and not next(iter(key_dirs)).exists()  # removed once it listened


def test_key_files_are_private(tmp_path: Path) -> None:
    from workers.lab.services import _key_files

    with _key_files(["one", "two"]) as args:
        paths = [Path(p) for p in args[1::2]]
        assert args[::2] == ["--api-key-file"] * 2
        assert [p.read_text() for p in paths] == ["one", "two"]
        assert {p.stat().st_mode & 0o777 for p in paths} == {0o600}
        assert paths[0].parent.stat().st_mode & 0o777 == 0o700
    assert not paths[0].parent.exists()


def test_client_for_key_is_another_account(three: Emulator) -> None:
    charlie = three.for_key(KEYS[2])
    assert isinstance(charlie, EmulatorClient) and charlie.url == three.url
    token = charlie.create_upload_token()
    with http_for(three, KEYS[2]) as http:
        assert http.get(f"/upload-tokens/{token}").status_code == 200
    with http_for(three, KEYS[0]) as http:
        assert http.get(f"/upload-tokens/{token}").status_code == 404
