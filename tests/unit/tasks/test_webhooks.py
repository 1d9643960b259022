"""tasks.webhooks: completion webhooks signed ``t=<unix seconds>,v1=<HMAC-SHA256 of "t.body">``, so a
receiver's ``verify`` refuses an altered, unsigned, mis-signed or stale delivery; and ``deliver``,
which posts the public record once and sorts failures into retryable and permanent."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest

from tasks.errors import PermanentError, RetryableError
from tasks.job.record import TOKEN_FIELD, JobRecord
from tasks.webhooks import (
    DEFAULT_TOLERANCE_S,
    EVENT_HEADER,
    JOB_HEADER,
    SIGNATURE_HEADER,
    deliver,
    payload,
    sign,
    verify,
)

SECRET = "whsec-0123456789abcdef"
BODY = b'{"event":"job.done","job_id":"j1"}'
NOW = 1_700_000_000


def test_a_signature_verifies() -> None:
    header = sign(BODY, SECRET, NOW)
    assert header.startswith(f"t={NOW},v1=")
    assert verify(BODY, SECRET, header, now=NOW)


def test_the_signature_is_hmac_sha256_of_the_time_and_the_body() -> None:
    digest = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW) == f"t={NOW},v1={digest}"


def test_an_altered_body_is_refused() -> None:
    header = sign(BODY, SECRET, NOW)
    assert not verify(BODY.replace(b"done", b"failed"), SECRET, header, now=NOW)
    assert not verify(BODY + b" ", SECRET, header, now=NOW)


def test_a_wrong_secret_is_refused() -> None:
    assert not verify(BODY, "another-secret", sign(BODY, SECRET, NOW), now=NOW)


@pytest.mark.parametrize("header", [None, "", "garbage", "v1=abc", f"t={NOW}", f"t={NOW},v1=", "t=soon,v1=abc",
                                    f"t={NOW},v1=00", f"t={NOW};v1=abc"])
def test_a_missing_or_malformed_header_is_refused(header: str | None) -> None:
    assert not verify(BODY, SECRET, header, now=NOW)


def test_the_signature_covers_the_timestamp() -> None:
    digest = sign(BODY, SECRET, NOW).rsplit("v1=", 1)[1]
    replayed = f"t={NOW + 600},v1={digest}"  # an old delivery with a fresh time
    assert not verify(BODY, SECRET, replayed, now=NOW + 600)


@pytest.mark.parametrize("offset", [DEFAULT_TOLERANCE_S + 1, -(DEFAULT_TOLERANCE_S + 1), 10 * DEFAULT_TOLERANCE_S])
def test_a_timestamp_beyond_the_tolerance_is_refused(offset: int) -> None:
    assert not verify(BODY, SECRET, sign(BODY, SECRET, NOW), now=NOW + offset)


@pytest.mark.parametrize("offset", [0, 1, -1, DEFAULT_TOLERANCE_S, -DEFAULT_TOLERANCE_S])
def test_a_timestamp_within_the_tolerance_is_accepted(offset: int) -> None:
    assert verify(BODY, SECRET, sign(BODY, SECRET, NOW), now=NOW + offset)


def test_the_tolerance_can_be_chosen() -> None:
    header = sign(BODY, SECRET, NOW)
    assert not verify(BODY, SECRET, header, tolerance_s=5, now=NOW + 6)
    assert verify(BODY, SECRET, header, tolerance_s=5, now=NOW + 5)


def test_without_now_the_local_clock_is_used() -> None:
    assert not verify(BODY, SECRET, sign(BODY, SECRET, NOW))  # 2023: long past the tolerance


def test_any_of_several_signatures_may_match() -> None:
    good = sign(BODY, SECRET, NOW).rsplit("v1=", 1)[1]
    assert verify(BODY, SECRET, f"t={NOW}, v1={'0' * 64}, v1={good}", now=NOW)


# -- the body and its delivery -------------------------------------------------------------
def done_job() -> JobRecord:
    spec = {"source": "https://u:p@bucket.example/clip.mp4?X-Amz-Signature=abc",
            "callback_url": "https://hooks.example/in?sig=zz", "video": {"title": "Holiday"}}
    return JobRecord.from_hash({"job_id": "j1", "state": "done", "spec": json.dumps(spec), "video_id": "vi1",
                                TOKEN_FIELD: "to1a2B3c4D5e6F7g8H9i0JkL"})


def test_the_payload_is_the_public_record_with_its_event() -> None:
    body = json.loads(payload(done_job()))
    assert body["event"] == "job.done"
    assert (body["job_id"], body["video_id"], body["title"], body["file"]) == ("j1", "vi1", "Holiday", "clip.mp4")
    text = payload(done_job()).decode()
    assert "to1a2B3c4D5e6F7g8H9i0JkL" not in text and "abc" not in text and "zz" not in text


@pytest.fixture
def posted() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(posted: list[httpx.Request]) -> Iterator[httpx.Client]:
    answers = {"/ok": 204, "/busy": 503, "/limited": 429, "/gone": 410}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        posted.append(request)
        return httpx.Response(answers[request.url.path])

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        yield http


def test_a_delivery_is_signed_so_the_receiver_can_verify_it(client: httpx.Client, posted: list[httpx.Request]) -> None:
    assert deliver(client, "https://hooks.example/ok?sig=zz", done_job(), SECRET, NOW) == 204
    (request,) = posted
    assert request.headers[EVENT_HEADER] == "job.done" and request.headers[JOB_HEADER] == "j1"
    assert request.content == payload(done_job())
    assert verify(request.content, SECRET, request.headers[SIGNATURE_HEADER], now=NOW + 1)


def test_without_a_secret_a_delivery_is_unsigned(client: httpx.Client, posted: list[httpx.Request]) -> None:
    deliver(client, "https://hooks.example/ok", done_job(), None, NOW)
    assert SIGNATURE_HEADER not in posted[0].headers


@pytest.mark.parametrize(("path", "error"), [("/busy", RetryableError), ("/limited", RetryableError),
                                             ("/down", RetryableError), ("/gone", PermanentError)])
def test_failed_deliveries_are_sorted_and_never_show_the_query(client: httpx.Client, path: str,
                                                               error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        deliver(client, f"https://hooks:pw@hooks.example{path}?sig=zz", done_job(), SECRET, NOW)
    assert "zz" not in str(info.value) and "pw" not in str(info.value)
    assert "hooks.example" in str(info.value)
