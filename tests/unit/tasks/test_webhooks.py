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
from hypothesis import given, settings
from hypothesis import strategies as st

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


GOOD_DIGEST = sign(BODY, SECRET, NOW).rsplit("v1=", 1)[1]
MALFORMED = {
    "non-ASCII signature": f"t={NOW},v1={GOOD_DIGEST[:-1]}é",
    "non-ASCII anywhere": f"t={NOW},v1={GOOD_DIGEST},x=ü",
    "digest of 63 hex digits": f"t={NOW},v1={GOOD_DIGEST[:-1]}",
    "digest of 65 hex digits": f"t={NOW},v1={GOOD_DIGEST}0",
    "digest not hex": f"t={NOW},v1={'g' * 64}",
    "no t": f"v1={GOOD_DIGEST}",
    "no v1": f"t={NOW}",
    "t twice": f"t={NOW},t={NOW},v1={GOOD_DIGEST}",
    "t empty": f"t=,v1={GOOD_DIGEST}",
    "t with a sign": f"t=+{NOW},v1={GOOD_DIGEST}",
    "t with spaces inside": f"t= {NOW},v1={GOOD_DIGEST}",
    "t with underscores": f"t=1_700_000_000,v1={GOOD_DIGEST}",
    "t in exponent form": f"t=1.7e9,v1={GOOD_DIGEST}",
    "t with a fraction": f"t={NOW}.0,v1={GOOD_DIGEST}",
    "t in Arabic-Indic digits": f"t={''.join(chr(0x660 + int(c)) for c in str(NOW))},v1={GOOD_DIGEST}",
    "t in full-width digits": f"t={''.join(chr(0xFF10 + int(c)) for c in str(NOW))},v1={GOOD_DIGEST}",
    "t of 5000 digits": f"t={'9' * 5000},v1={GOOD_DIGEST}",
    "t of 13 digits": f"t={'1' * 13},v1={GOOD_DIGEST}",
    "t negative": f"t=-{NOW},v1={GOOD_DIGEST}",
    "a part without =": f"t={NOW},v1={GOOD_DIGEST},",
    "huge header": f"t={NOW},v1={GOOD_DIGEST}," + "v1=" + "0" * 64 + ",v1=0" * 2000,
    "NUL bytes": f"t={NOW}\x00,v1={GOOD_DIGEST}",
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_header_is_false_never_an_exception(header: str) -> None:
    assert verify(BODY, SECRET, header, now=NOW) is False


@pytest.mark.parametrize("odd", [b"t=1700000000,v1=00", 1_700_000_000, ["t", "v1"], object()])
def test_a_header_that_is_not_text_is_false(odd: object) -> None:
    assert verify(BODY, SECRET, odd, now=NOW) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(("tolerance", "now"), [(float("nan"), NOW), (float("inf"), NOW), (-1, NOW),
                                                (300, float("nan")), (300, float("inf")), (300, 1e308),
                                                ("300", NOW), (None, NOW)])
def test_an_odd_tolerance_or_clock_is_false(tolerance: object, now: object) -> None:
    header = sign(BODY, SECRET, NOW)
    assert verify(BODY, SECRET, header, tolerance_s=tolerance, now=now) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(("body", "secret"), [(BODY.decode(), SECRET), (None, SECRET), (BODY, ""), (BODY, None),
                                              (BODY, 42)])
def test_an_odd_body_or_secret_is_false(body: object, secret: object) -> None:
    assert verify(body, secret, sign(BODY, SECRET, NOW), now=NOW) is False  # type: ignore[arg-type]


def test_hex_case_and_bytes_like_bodies_are_accepted() -> None:
    assert verify(BODY, SECRET, f"t={NOW},v1={GOOD_DIGEST.upper()}", now=NOW)
    assert verify(bytearray(BODY), SECRET, sign(BODY, SECRET, NOW), now=NOW)
    assert verify(memoryview(BODY), SECRET.encode(), sign(BODY, SECRET, NOW), now=NOW)  # type: ignore[arg-type]


HEADER_PART = st.one_of(
    st.text(max_size=80),
    st.builds(lambda v: f"t={v}", st.one_of(st.integers(), st.text(max_size=30), st.floats().map(str))),
    st.builds(lambda v: f"v1={v}", st.one_of(st.text(alphabet="0123456789abcdefABCDEF", max_size=70),
                                             st.text(max_size=70))),
)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=256), header=st.one_of(st.none(), st.text(max_size=400),
                                                        st.lists(HEADER_PART, max_size=6).map(",".join)),
       tolerance=st.one_of(st.floats(), st.integers(min_value=-10, max_value=10**6)),
       now=st.one_of(st.none(), st.floats(), st.integers(min_value=-(10**20), max_value=10**20)))
def test_verify_never_raises_and_always_answers_a_bool(body: bytes, header: str | None, tolerance: float,
                                                       now: float | None) -> None:
    assert verify(body, SECRET, header, tolerance_s=tolerance, now=now) in (True, False)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=256), secret=st.text(min_size=1, max_size=40),
       timestamp=st.integers(min_value=0, max_value=10**12 - 1), drift=st.integers(min_value=-300, max_value=300))
def test_every_signed_delivery_verifies_within_the_tolerance(body: bytes, secret: str, timestamp: int,
                                                             drift: int) -> None:
    assert verify(body, secret, sign(body, secret, timestamp), now=timestamp + drift)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=256), position=st.integers(min_value=0, max_value=63), data=st.data())
def test_any_changed_digit_of_the_signature_fails(body: bytes, position: int, data: st.DataObject) -> None:
    header = sign(body, SECRET, NOW)
    digest = header.rsplit("v1=", 1)[1]
    other = data.draw(st.sampled_from([c for c in "0123456789abcdef" if c != digest[position]]))
    forged = f"t={NOW},v1={digest[:position]}{other}{digest[position + 1:]}"
    assert not verify(body, SECRET, forged, now=NOW)


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
