"""Progressive (part) uploads over real HTTP, one test per rule, each on both upload endpoints:
``POST /upload?token=`` (with ``videoId``) and ``POST /videos/{id}/source``.

Expected error bodies are written out in full here, with api.video's titles and details
(docs/protocol.md's error table), so a changed slug, title, name or detail fails.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.emulator import Emulator

MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part that is not the last
DOCS = "https://docs.api.video/reference/"
ENDPOINTS = ("token", "source")
STALL_TIMEOUT_S = 30.0


def problem(slug: str, title: str, name: str = "Content-Range") -> dict[str, object]:
    """api.video's error body for a refused part (400)."""
    return {"type": DOCS + slug, "title": title, "name": name, "status": 400}


TOO_SMALL = problem(
    "video-content-range-by-part-uploaded-file-too-small",
    "The uploaded file is too small.", name="file")
PART_TOO_HIGH_ALLOWED = problem(
    "video-content-range-by-part-part-too-high-allowed",
    'The "part" value in the "Content-Range" header is higher than the maximum number of parts '
    "allowed for a video.")
TOTAL_TOO_HIGH = problem(
    "video-content-range-by-part-total-parts-too-high",
    'The "total_parts" value in the "Content-Range" header is higher than the maximum number of '
    "parts allowed for a video.")
PART_ZERO = problem(
    "video-content-range-by-part-part-zero",
    'The "part" value in the "Content-Range" header must be greater than 0.')
TOTAL_ZERO = problem(
    "video-content-range-by-part-total-parts-zero",
    'The "total_parts" value in the "Content-Range" header must be greater than 0.')
ALREADY_SENT_TITLE = ('The "part" value in the "Content-Range" header collides with a previous one you '
                      "already sent for this video.")
STARTED_WITH_PART = problem(
    "video-content-range-started-with-part",
    'This "Content-Range" upload has been started with "part", you cannot continue it with "bytes".')
STARTED_WITH_BYTES = problem(
    "video-content-range-started-with-bytes",
    'This "Content-Range" upload has been started with "bytes", you cannot continue it with "part"')
ALREADY_INITIATED = problem(
    "video-content-range-already-initiated",
    'This video source has already been initiated with a "Content-Range" upload.')
DIFFERENT_TOTAL_TITLE = ('The "total_parts" value in the "Content-Range" header must be the same than the '
                         "one you already set for this video.")
PART_TOO_HIGH_TOTAL = problem(
    "video-content-range-by-part-part-too-high-total",
    'The "part" value in the "Content-Range" header is higher than the "total_parts" value you set '
    "for this video.")
TOTAL_TOO_LOW = problem(
    "video-content-range-by-part-total-parts-too-low",
    'The "total_parts" value in the "Content-Range" header is lower than or equal to a part number '
    "you already sent for this video.")


def already_sent(number: int) -> dict[str, Any]:
    return {"type": DOCS + "video-content-range-by-part-part-already-sent", "title": ALREADY_SENT_TITLE,
            "name": "Content-Range", "status": 400, "detail": f"The part number {number} has already been sent."}


def different_total(total: int) -> dict[str, Any]:
    return {"type": DOCS + "video-content-range-by-part-different-total-parts", "title": DIFFERENT_TOTAL_TITLE,
            "name": "Content-Range", "status": 400,
            "detail": f'The "total_parts" you already set for this video is {total}.'}


@dataclass
class Sender:
    """Sends parts into one video through one of the two upload endpoints."""

    http: httpx.Client
    kind: str
    token: str
    video_id: str = ""

    def part(self, data: bytes, content_range: str | None) -> httpx.Response:
        headers = {"Content-Range": content_range} if content_range else {}
        files = {"file": ("clip.mp4", data, "video/mp4")}
        if self.kind == "token":
            return self.http.post("/upload", params={"token": self.token}, data={"videoId": self.video_id},
                                  files=files, headers=headers)
        return self.http.post(f"/videos/{self.video_id}/source", files=files, headers=headers)

    def sent(self, data: bytes, content_range: str) -> httpx.Response:
        """A part that must be accepted (201)."""
        answer = self.part(data, content_range)
        assert answer.status_code == 201, answer.text
        return answer

    def refused(self, data: bytes, content_range: str | None, body: dict[str, Any]) -> None:
        answer = self.part(data, content_range)
        assert (answer.status_code, answer.json()) == (400, body)

    def ingest(self) -> dict[str, Any]:
        answer = self.http.get(f"/videos/{self.video_id}/status")
        assert answer.status_code == 200
        return dict(answer.json()["ingest"])

    def new_video(self) -> Sender:
        """The same endpoint on a new, empty container."""
        made = self.http.post("/videos", json={"title": "parts"})
        return Sender(self.http, self.kind, self.token, made.json()["videoId"])


@pytest.fixture(params=ENDPOINTS)
def send(request: pytest.FixtureRequest, emulator: Emulator, client: httpx.Client) -> Iterator[Sender]:
    """A sender on a new container, by upload token (``videoId`` field) or by ``/source``."""
    yield Sender(client, request.param, emulator.create_upload_token()).new_video()


def sha(*pieces: bytes) -> str:
    return hashlib.sha256(b"".join(pieces)).hexdigest()


def test_every_part_but_the_last_is_at_least_5_mib(send: Sender, emulator: Emulator) -> None:
    short = os.urandom(PART - 1)
    send.refused(short, "part 1/*", TOO_SMALL)
    send.refused(short, "part 1/2", TOO_SMALL)
    assert "receivedParts" not in send.ingest()  # a refused part is not received
    last = os.urandom(10)
    assert send.sent(last, "part 2/2").json() == {"videoId": send.video_id}  # the last may be small
    first = os.urandom(PART)
    done = send.sent(first, "part 1/*").json()
    assert done["videoId"] == send.video_id and "assets" in done
    assert emulator.video(send.video_id)["sha256"] == sha(first, last)
    only = send.new_video()
    assert "assets" in only.sent(b"tiny", "part 1/1").json()  # the only part is the last one
    assert only.ingest()["receivedParts"] == {"parts": [1], "total": 1}


@pytest.mark.parametrize(("header", "body"), [("part 0/*", PART_ZERO), ("part 0/3", PART_ZERO),
                                              ("part 1/0", TOTAL_ZERO), ("part 4/3", PART_TOO_HIGH_TOTAL)])
def test_part_zero_total_zero_and_a_part_above_its_total_are_refused(send: Sender, header: str,
                                                                      body: dict[str, Any]) -> None:
    send.refused(os.urandom(PART), header, body)
    assert "receivedParts" not in send.ingest()
    send.sent(os.urandom(PART), "part 1/*")
    send.refused(os.urandom(PART), header.replace("1/", "2/"), body)  # the same once the upload started
    assert send.ingest()["receivedParts"] == {"parts": [1], "total": None}


def test_at_most_10000_parts(send: Sender) -> None:
    send.refused(b"x", "part 10001/*", PART_TOO_HIGH_ALLOWED)
    send.refused(b"x", "part 1/10001", TOTAL_TOO_HIGH)
    send.sent(b"x", "part 10000/10000")
    assert send.ingest()["receivedParts"] == {"parts": [10000], "total": 10000}


def test_a_part_number_sent_twice_is_refused(send: Sender, emulator: Emulator) -> None:
    first = os.urandom(PART)
    send.sent(first, "part 1/*")
    send.refused(os.urandom(PART), "part 1/*", already_sent(1))
    send.refused(os.urandom(PART), "part 1/2", already_sent(1))
    send.sent(b"z" * 7, "part 3/3")
    send.refused(b"y" * 7, "part 3/3", already_sent(3))
    send.refused(os.urandom(PART), "part 1/4", already_sent(1))  # whatever total it carries
    assert send.ingest()["receivedParts"] == {"parts": [1, 3], "total": 3}
    second = os.urandom(PART)
    send.sent(second, "part 2/*")
    assert emulator.video(send.video_id)["sha256"] == sha(first, second, b"z" * 7)  # the first copies


def test_part_then_bytes_is_refused(send: Sender) -> None:
    send.sent(os.urandom(PART), "part 1/*")
    send.refused(os.urandom(PART), f"bytes {PART}-{2 * PART - 1}/*", STARTED_WITH_PART)
    send.refused(b"end", f"bytes {PART}-{PART + 2}/{PART + 3}", STARTED_WITH_PART)
    send.refused(b"whole", None, ALREADY_INITIATED)
    assert send.ingest()["receivedParts"] == {"parts": [1], "total": None}


def test_bytes_then_part_is_refused(send: Sender) -> None:
    send.sent(os.urandom(PART), f"bytes 0-{PART - 1}/*")
    send.refused(os.urandom(PART), "part 2/*", STARTED_WITH_BYTES)
    send.refused(b"end", "part 2/2", STARTED_WITH_BYTES)
    ingest = send.ingest()
    assert "receivedParts" not in ingest and ingest["receivedBytes"] == [{"from": 0, "to": PART - 1}]


def test_total_parts_once_given_never_changes(send: Sender, emulator: Emulator) -> None:
    pieces = [os.urandom(PART), os.urandom(PART), os.urandom(33)]
    send.sent(pieces[0], "part 1/3")
    send.refused(pieces[1], "part 2/4", different_total(3))
    send.refused(pieces[1], "part 2/2", different_total(3))
    send.refused(pieces[1], "part 4/*", PART_TOO_HIGH_TOTAL)
    send.sent(pieces[1], "part 2/*")  # leaving the total out is fine
    assert send.ingest()["receivedParts"] == {"parts": [1, 2], "total": 3}
    send.refused(pieces[2], "part 3/4", different_total(3))
    send.sent(pieces[2], "part 3/3")
    assert emulator.video(send.video_id)["sha256"] == sha(*pieces)


def test_a_total_below_or_equal_to_a_part_already_sent_is_refused(send: Sender) -> None:
    send.sent(os.urandom(PART), "part 3/*")
    send.refused(os.urandom(PART), "part 1/2", TOTAL_TOO_LOW)
    send.refused(os.urandom(PART), "part 1/3", TOTAL_TOO_LOW)
    send.refused(os.urandom(PART), "part 2/3", TOTAL_TOO_LOW)
    assert send.ingest()["receivedParts"] == {"parts": [3], "total": None}
    send.sent(b"end", "part 4/4")  # above every part sent: a total
    assert send.ingest()["receivedParts"] == {"parts": [3, 4], "total": 4}


def test_status_lists_received_parts_and_out_of_order_parts_assemble(send: Sender, emulator: Emulator) -> None:
    pieces = {1: os.urandom(PART), 2: os.urandom(PART), 3: os.urandom(PART), 4: os.urandom(PART // 2 + 7)}
    assert send.ingest()["status"] == "uploading"
    for number, header, parts, total in ((3, "part 3/*", [3], None), (4, "part 4/4", [3, 4], 4),
                                         (1, "part 1/*", [1, 3, 4], 4)):
        assert send.sent(pieces[number], header).json() == {"videoId": send.video_id}
        ingest = send.ingest()
        assert ingest["receivedParts"] == {"parts": parts, "total": total}
        assert (ingest["status"], ingest["filesize"]) == ("uploading", None)
    completing = send.sent(pieces[2], "part 2/*").json()  # not the last number, yet it completes
    assert completing["videoId"] == send.video_id and completing["assets"]["hls"]
    ingest = send.ingest()
    size = sum(len(p) for p in pieces.values())
    assert ingest == {"status": "uploaded", "filesize": size, "receivedParts": {"parts": [1, 2, 3, 4], "total": 4}}
    stored = emulator.video(send.video_id)
    assert stored["complete"] and stored["size"] == size
    assert stored["sha256"] == sha(*(pieces[n] for n in sorted(pieces)))
    assert [(c["part"], c["from"], c["arrived"]) for c in stored["chunks"]] == [
        (1, 0, 3), (2, PART, 4), (3, 2 * PART, 1), (4, 3 * PART, 2)]
    assert not any((emulator.data_dir / "videos" / send.video_id / "parts").iterdir())
    send.refused(b"again", "part 5/*", {
        "type": DOCS + "video-source-already-uploaded", "title": "The source of the video is already uploaded.",
        "name": "file", "status": 400, "problems": [{
            "type": DOCS + "video-source-already-uploaded",
            "title": "The source of the video is already uploaded.", "name": "file"}]})


@pytest.mark.parametrize("kind", ["token-first-part", "token", "source"])
def test_a_live_upload_part_by_part_then_the_last(kind: str, emulator: Emulator, client: httpx.Client) -> None:
    """As a live uploader sends them: ``part i/*`` as the file grows, each listed in ``receivedParts`` with
    a null total, then the last, small, as ``part N/N``. ``token-first-part``: the first part names no
    video and makes it; the later ones carry its ``videoId``."""
    token = emulator.create_upload_token()
    pieces = [os.urandom(PART) for _ in range(3)] + [b"!"]  # the held-back byte goes last
    if kind == "token-first-part":
        made = client.post("/upload", params={"token": token}, headers={"Content-Range": "part 1/*"},
                           files={"file": ("live.mp4", pieces[0])})
        assert (made.status_code, set(made.json())) == (201, {"videoId"})
        send = Sender(client, "token", token, made.json()["videoId"])
    else:
        send = Sender(client, kind, token).new_video()
        assert send.sent(pieces[0], "part 1/*").json() == {"videoId": send.video_id}
    for number in (2, 3, None):
        assert send.ingest() == {"status": "uploading", "filesize": None,
                                 "receivedParts": {"parts": list(range(1, number or 4)), "total": None}}
        if number is not None:
            assert send.sent(pieces[number - 1], f"part {number}/*").json() == {"videoId": send.video_id}
    done = send.sent(pieces[3], "part 4/4").json()
    assert done["videoId"] == send.video_id and "assets" in done
    size = 3 * PART + 1
    assert send.ingest() == {"status": "uploaded", "filesize": size,
                             "receivedParts": {"parts": [1, 2, 3, 4], "total": 4}}
    stored = emulator.video(send.video_id)
    assert (stored["complete"], stored["size"], stored["sha256"]) == (True, size, sha(*pieces))
    assert [(c["part"], c["arrived"]) for c in stored["chunks"]] == [(n, n) for n in range(1, 5)]
    assert len(emulator.videos()) == 1


def test_token_parts_without_a_container(emulator: Emulator, client: httpx.Client) -> None:
    """By token alone: the first part makes the video, later parts name it in ``videoId``."""
    token = emulator.create_upload_token()
    pieces = [os.urandom(PART), os.urandom(PART), os.urandom(12345)]
    first = client.post("/upload", params={"token": token}, headers={"Content-Range": "part 2/*"},
                        files={"file": ("movie.mp4", pieces[1])})
    assert first.status_code == 201 and set(first.json()) == {"videoId"}
    sender = Sender(client, "token", token, first.json()["videoId"])
    sender.sent(pieces[2], "part 3/3")
    done = sender.sent(pieces[0], "part 1/*").json()
    assert done["title"] == "movie.mp4"
    assert emulator.video(sender.video_id)["sha256"] == sha(*pieces)
    assert len(emulator.videos()) == 1


class StalledUpload:
    """An upload whose body stops after its first ``head`` file bytes until :meth:`finish`."""

    def __init__(self, http: httpx.Client, url: str, data: bytes, head: int, fields: dict[str, str],
                 headers: dict[str, str]) -> None:
        boundary = "st4lled"
        prefix = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                          for k, v in fields.items())
        prefix += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.mp4"\r\n\r\n'.encode()
        self.go = threading.Event()
        self.answer: httpx.Response | None = None

        def body() -> Iterator[bytes]:
            yield prefix + data[:head]
            self.go.wait(STALL_TIMEOUT_S)
            yield data[head:] + f"\r\n--{boundary}--\r\n".encode()

        headers = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}

        def send() -> None:
            self.answer = http.post(url, content=body(), headers=headers)

        self.thread = threading.Thread(target=send, daemon=True)
        self.thread.start()

    def finish(self) -> httpx.Response:
        self.go.set()
        self.thread.join(STALL_TIMEOUT_S)
        assert self.answer is not None
        return self.answer


def wait_for_file(paths: Callable[[], list[Path]]) -> None:
    """Until one of ``paths()`` holds bytes: the stalled body is being stored, so it was admitted."""
    deadline = time.monotonic() + STALL_TIMEOUT_S
    while not any(p.exists() and p.stat().st_size > 0 for p in paths()):
        assert time.monotonic() < deadline, "the stalled upload never reached the emulator"
        time.sleep(0.02)  # pacing of the poll, not synchronisation


def test_a_part_in_flight_refuses_bytes_on_source(emulator: Emulator, client: httpx.Client) -> None:
    sender = Sender(client, "source", "").new_video()
    data = os.urandom(PART)
    with httpx.Client(base_url=emulator.url, headers=emulator.auth_header, timeout=STALL_TIMEOUT_S) as other:
        stalled = StalledUpload(other, f"/videos/{sender.video_id}/source", data, MIB, {},
                                {"Content-Range": "part 1/*"})
        wait_for_file(lambda: list((emulator.data_dir / "incoming").glob("*")))
        sender.refused(os.urandom(PART), f"bytes 0-{PART - 1}/*", STARTED_WITH_PART)
        sender.refused(os.urandom(PART), "part 1/*", already_sent(1))  # in flight counts as sent
        assert stalled.finish().status_code == 201
    assert sender.ingest()["receivedParts"] == {"parts": [1], "total": None}


def test_bytes_in_flight_refuse_a_part_on_upload(emulator: Emulator, client: httpx.Client) -> None:
    sender = Sender(client, "token", emulator.create_upload_token()).new_video()
    data = os.urandom(PART)
    with httpx.Client(base_url=emulator.url, timeout=STALL_TIMEOUT_S) as other:
        stalled = StalledUpload(other, f"/upload?token={sender.token}", data, MIB, {"videoId": sender.video_id},
                                {"Content-Range": f"bytes 0-{PART - 1}/*"})
        wait_for_file(lambda: [emulator.data_dir / "videos" / sender.video_id / "source"])
        sender.refused(os.urandom(PART), "part 1/*", STARTED_WITH_BYTES)
        assert stalled.finish().status_code == 201
    assert sender.ingest()["receivedBytes"] == [{"from": 0, "to": PART - 1}]
    assert emulator.video(sender.video_id)["chunks"] == [{"from": 0, "to": PART - 1, "arrived": 1}]
