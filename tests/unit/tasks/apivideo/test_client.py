"""tasks.apivideo.client: api.video answers and httpx failures become our errors, never with a token or key
inside; each request is paced by its rate-limit class (a near slot waited for, a far one deferred as
``Throttled``) and every answer's headers are shown to the pacer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, Protocol

import httpx
import pytest

from tasks.apivideo import client as apiclient
from tasks.apivideo.client import READ, UPLOAD, WRITE, ApiClient
from tasks.errors import ApiRejected, ApiUnavailable, Throttled, VuqError
from tests.unit.tasks.fakes import RecordingPacer

TOKEN = "to1a2B3c4D5e6F7g8H9i0JkL"
BASE_URL = "https://ws.api.video"
API_KEY = "apikey-0123456789abcdefXYZ"
Handler = Callable[[httpx.Request], httpx.Response]


class MakeClient(Protocol):
    def __call__(self, handler: Handler, pacer: RecordingPacer | None = None) -> ApiClient: ...


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """An ApiClient over httpx.MockTransport(handler); the httpx clients are closed after the test."""
    clients: list[httpx.Client] = []

    def make(handler: Handler, pacer: RecordingPacer | None = None) -> ApiClient:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        clients.append(http)
        return ApiClient(http, BASE_URL + "/", pacer=pacer)

    yield make
    for http in clients:
        http.close()


def upload(api: ApiClient, video_id: str | None = "vi42", content_range: str | None = "bytes 0-3/8") -> object:
    return api.upload_chunk(TOKEN, video_id=video_id, content_range=content_range, file_name="v.mp4",
                            length=4, blocks=[b"ab", b"cd"])


def failure(api: ApiClient) -> VuqError:
    with pytest.raises(VuqError) as info:
        upload(api)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value.args)
    return info.value


def test_upload_returns_the_json(make_client: MakeClient) -> None:
    api = make_client(lambda request: httpx.Response(201, json={"videoId": "vi42"}))
    assert upload(api) == {"videoId": "vi42"}


def test_upload_request_carries_range_video_id_and_token(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(201, json={"videoId": "vi42"})

    upload(make_client(handler))
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/upload"
    assert request.url.params["token"] == TOKEN
    assert request.headers["Content-Range"] == "bytes 0-3/8"
    assert int(request.headers["Content-Length"]) == len(request.content)
    boundary = request.headers["Content-Type"].split("boundary=")[1]
    assert f'--{boundary}\r\nContent-Disposition: form-data; name="videoId"\r\n\r\nvi42\r\n'.encode() in request.content
    assert b'filename="v.mp4"' in request.content
    assert b"\r\n\r\nabcd\r\n--" + boundary.encode() + b"--" in request.content


def test_first_whole_file_upload_has_no_range_or_video_id(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(201, json={"videoId": "vi42"})

    upload(make_client(handler), video_id=None, content_range=None)
    assert "Content-Range" not in seen[0].headers
    assert b'name="videoId"' not in seen[0].content


def test_400_becomes_api_rejected_with_the_api_video_fields(make_client: MakeClient) -> None:
    body = {"type": "https://docs.api.video/reference/invalid-attribute", "title": "An attribute is invalid.",
            "status": 400, "name": "title"}
    error = failure(make_client(lambda request: httpx.Response(400, json=body)))
    assert isinstance(error, ApiRejected)
    assert (error.status, error.title, error.slug, error.name) == (400, "An attribute is invalid.",
                                                                   "invalid-attribute", "title")
    assert str(error) == "api.video answered 400: An attribute is invalid. (field 'title')"
    assert error.reason == "api_rejected"


def test_401_is_rejected_even_without_a_json_body(make_client: MakeClient) -> None:
    error = failure(make_client(lambda request: httpx.Response(401, text="nope")))
    assert isinstance(error, ApiRejected)
    assert (error.status, error.title, error.slug) == (401, "Unauthorized", "")


@pytest.mark.parametrize("status", [403, 404, 409])
def test_other_4xx_are_rejected(make_client: MakeClient, status: int) -> None:
    error = failure(make_client(lambda request: httpx.Response(status, json={"title": "no"})))
    assert isinstance(error, ApiRejected) and error.status == status


def test_429_is_rate_limited_with_retry_after(make_client: MakeClient) -> None:
    api = make_client(lambda request: httpx.Response(429, headers={"X-RateLimit-Retry-After": "7"},
                                                     json={"title": "Too many requests."}))
    error = failure(api)
    assert isinstance(error, ApiUnavailable)
    assert (error.reason, error.retry_after_s) == ("rate_limited", 7.0)


def test_429_without_retry_after(make_client: MakeClient) -> None:
    error = failure(make_client(lambda request: httpx.Response(429)))
    assert isinstance(error, ApiUnavailable)
    assert (error.reason, error.retry_after_s) == ("rate_limited", None)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retryable(make_client: MakeClient, status: int) -> None:
    error = failure(make_client(lambda request: httpx.Response(status, text="<html>oops</html>")))
    assert isinstance(error, ApiUnavailable)
    assert error.reason == "server_error"
    assert str(status) in str(error)


def test_connection_error_is_retryable_and_redacted(make_client: MakeClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    error = failure(make_client(handler))
    assert isinstance(error, ApiUnavailable) and error.reason == "connection"
    assert "ConnectError" in str(error)


def test_read_timeout_is_retryable(make_client: MakeClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout(f"timed out reading {request.url}", request=request)

    error = failure(make_client(handler))
    assert isinstance(error, ApiUnavailable) and error.reason == "timeout"


def test_error_causes_are_not_chained(make_client: MakeClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    error = failure(make_client(handler))
    assert error.__cause__ is None and error.__suppress_context__


def test_authenticate_posts_the_key(make_client: MakeClient) -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.read()))
        return httpx.Response(200, json={"access_token": "at", "refresh_token": "rt", "expires_in": 3600})

    assert make_client(handler).authenticate("KEY")["access_token"] == "at"
    assert seen == [{"apiKey": "KEY"}]


def test_api_key_calls_send_the_authorization_header(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"data": [{"videoId": "vi1"}]})
        return httpx.Response(200, json={"videoId": "vi1"})

    api = make_client(handler)
    assert api.patch_video("Bearer at", "vi1", {"title": "t"}) == {"videoId": "vi1"}
    assert api.find_videos("Bearer at", {"vuq-job-id": "j1"}) == [{"videoId": "vi1"}]
    assert all(r.headers["Authorization"] == "Bearer at" for r in seen)
    assert seen[0].method == "PATCH" and seen[0].url.path == "/videos/vi1"
    assert seen[1].url.params["metadata[vuq-job-id]"] == "j1"


# -- the request classes and the pacer -----------------------------------------------------
def _answer(request: httpx.Request) -> httpx.Response:
    """A generic success for every api.video route these tests call."""
    if request.method == "DELETE":
        return httpx.Response(204)
    return httpx.Response(200, json={"videoId": "vi1", "token": TOKEN, "data": [], "access_token": "at",
                                     "ingest": {"status": "uploading"}})


CALLS: list[tuple[str, Callable[[ApiClient], object], str, str, str]] = [
    ("upload_chunk", upload, "POST", "/upload", UPLOAD),
    ("authenticate", lambda api: api.authenticate(API_KEY), "POST", "/auth/api-key", WRITE),
    ("create_upload_token", lambda api: api.create_upload_token("Bearer at", 60), "POST", "/upload-tokens", WRITE),
    ("create_video", lambda api: api.create_video("Bearer at", {"title": "t"}), "POST", "/videos", WRITE),
    ("patch_video", lambda api: api.patch_video("Bearer at", "vi1", {"title": "t"}), "PATCH", "/videos/vi1", WRITE),
    ("delete_video", lambda api: api.delete_video("Bearer at", "vi1"), "DELETE", "/videos/vi1", WRITE),
    ("find_videos", lambda api: api.find_videos("Bearer at", {"k": "v"}), "GET", "/videos", READ),
    ("video_status", lambda api: api.video_status("Bearer at", "vi1"), "GET", "/videos/vi1/status", READ),
]


@pytest.mark.parametrize(("name", "call", "method", "path", "request_class"), CALLS, ids=[c[0] for c in CALLS])
def test_each_request_is_paced_and_observed_in_its_class(make_client: MakeClient, name: str,
                                                         call: Callable[[ApiClient], object], method: str,
                                                         path: str, request_class: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(request)

    pacer = RecordingPacer()
    call(make_client(handler, pacer))
    assert [(r.method, r.url.path) for r in seen] == [(method, path)]
    assert pacer.acquired == [request_class]
    assert [(k, status) for k, status, _ in pacer.observed] == [(request_class, 204 if method == "DELETE" else 200)]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """tasks.apivideo.client's waits for a slot, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(apiclient, "time", SimpleNamespace(sleep=waited.append))
    return waited


def test_a_slot_at_most_a_second_off_is_waited_for_inline(make_client: MakeClient, sleeps: list[float]) -> None:
    seen: list[httpx.Request] = []
    pacer = RecordingPacer(waits=[0.5, 1.0])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(request)

    make_client(handler, pacer).video_status("Bearer at", "vi1")
    assert sleeps == [0.5, 1.0]
    assert pacer.acquired == [READ, READ, READ]  # asked again after each wait, until a slot was taken
    assert len(seen) == 1


def test_a_slot_further_off_defers_the_step_without_a_request(make_client: MakeClient, sleeps: list[float]) -> None:
    seen: list[httpx.Request] = []
    pacer = RecordingPacer(waits=[2.5])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(request)

    with pytest.raises(Throttled) as info:
        upload(make_client(handler, pacer))
    assert info.value.wait_s == 2.5 and "upload" in str(info.value)
    assert seen == [] and sleeps == [] and pacer.observed == []


def test_a_near_slot_then_a_far_one_defers(make_client: MakeClient, sleeps: list[float]) -> None:
    pacer = RecordingPacer(waits=[0.5, 30.0])
    with pytest.raises(Throttled) as info:
        make_client(_answer, pacer).create_video("Bearer at", {})
    assert sleeps == [0.5] and info.value.wait_s == 30.0


@pytest.mark.parametrize("status", [201, 400, 429, 503])
def test_the_pacer_sees_every_answer_s_rate_limit_headers(make_client: MakeClient, status: int) -> None:
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Retry-After": "12"}
    pacer = RecordingPacer()
    api = make_client(lambda request: httpx.Response(status, headers=headers, json={"videoId": "vi1"}), pacer)
    if status < 300:
        upload(api)
    else:
        failure(api)
    ((request_class, seen_status, seen_headers),) = pacer.observed
    assert (request_class, seen_status) == (UPLOAD, status)
    expected = {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-retry-after": "12"}
    assert expected.items() <= {k.lower(): v for k, v in seen_headers.items()}.items()


def test_a_transport_failure_is_not_observed(make_client: MakeClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    pacer = RecordingPacer()
    failure(make_client(handler, pacer))
    assert pacer.acquired == [UPLOAD] and pacer.observed == []


# -- the API-key operations ----------------------------------------------------------------
def test_delete_video_accepts_204(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    make_client(handler).delete_video("Bearer at", "vi1")
    assert [(r.method, r.url.path, r.headers["Authorization"]) for r in seen] == [("DELETE", "/videos/vi1",
                                                                                   "Bearer at")]


def test_deleting_a_video_already_gone_is_not_an_error(make_client: MakeClient) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"type": "https://docs.api.video/reference/resource-not-found",
                                         "title": "Not found"})

    make_client(handler).delete_video("Bearer at", "vi1")  # no exception
    assert [(r.method, r.url.path) for r in seen] == [("DELETE", "/videos/vi1")]


@pytest.mark.parametrize(("status", "error"), [(403, ApiRejected), (400, ApiRejected), (503, ApiUnavailable)])
def test_other_delete_failures_are_raised(make_client: MakeClient, status: int, error: type[VuqError]) -> None:
    with pytest.raises(error):
        make_client(lambda request: httpx.Response(status, json={"title": "no"})).delete_video("Bearer at", "vi1")


def test_video_status_reads_the_received_ranges(make_client: MakeClient) -> None:
    status = {"ingest": {"status": "uploading", "receivedBytes": [{"from": 0, "to": 99, "total": 300}]}}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=status)

    assert make_client(handler).video_status("Bearer at", "vi1") == status
    assert (seen[0].method, seen[0].url.path, seen[0].headers["Authorization"]) == ("GET", "/videos/vi1/status",
                                                                                    "Bearer at")


def test_create_upload_token_and_create_video_send_their_payloads(make_client: MakeClient) -> None:
    bodies: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append((request.url.path, json.loads(request.read())))
        return httpx.Response(200, json={"token": TOKEN, "videoId": "vi9"})

    api = make_client(handler)
    assert api.create_upload_token("Bearer at", 604800) == TOKEN
    assert api.create_video("Bearer at", {"title": "t"})["videoId"] == "vi9"
    assert bodies == [("/upload-tokens", {"ttl": 604800}), ("/videos", {"title": "t"})]


# -- no secret in any message --------------------------------------------------------------
def _failing(mode: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = f"{request.url} {request.content!r}"  # what a careless server or library might repeat
        if mode == "timeout":
            raise httpx.ReadTimeout(f"timed out: {echoed}", request=request)
        if mode == "connect":
            raise httpx.ConnectError(f"refused: {echoed}", request=request)
        return httpx.Response(int(mode), json={"title": f"bad request {echoed}"})

    return handler


@pytest.mark.parametrize("mode", ["timeout", "connect", "400", "401", "429", "503"])
def test_no_upload_token_in_any_error(make_client: MakeClient, mode: str) -> None:
    with pytest.raises(VuqError) as info:
        upload(make_client(_failing(mode)))
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.args)


@pytest.mark.parametrize("mode", ["timeout", "connect", "400", "401", "429", "503"])
def test_no_api_key_in_any_error(make_client: MakeClient, mode: str) -> None:
    with pytest.raises(VuqError) as info:
        make_client(_failing(mode)).authenticate(API_KEY)
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value.args)
