"""tasks.apiclient: api.video answers and httpx failures become our errors, never with a token inside."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from tasks.apiclient import ApiClient
from tasks.errors import ApiRejected, ApiUnavailable, VuqError

TOKEN = "to1a2B3c4D5e6F7g8H9i0JkL"
BASE_URL = "https://ws.api.video"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def make_client() -> Iterator[Callable[[Handler], ApiClient]]:
    """An ApiClient over httpx.MockTransport(handler); the httpx clients are closed after the test."""
    clients: list[httpx.Client] = []

    def make(handler: Handler) -> ApiClient:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        clients.append(http)
        return ApiClient(http, BASE_URL + "/")

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


def test_upload_returns_the_json(make_client: Callable[[Handler], ApiClient]) -> None:
    api = make_client(lambda request: httpx.Response(201, json={"videoId": "vi42"}))
    assert upload(api) == {"videoId": "vi42"}


def test_upload_request_carries_range_video_id_and_token(make_client: Callable[[Handler], ApiClient]) -> None:
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


def test_first_whole_file_upload_has_no_range_or_video_id(make_client: Callable[[Handler], ApiClient]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(201, json={"videoId": "vi42"})

    upload(make_client(handler), video_id=None, content_range=None)
    assert "Content-Range" not in seen[0].headers
    assert b'name="videoId"' not in seen[0].content


def test_400_becomes_api_rejected_with_the_api_video_fields(make_client: Callable[[Handler], ApiClient]) -> None:
    body = {"type": "https://docs.api.video/reference/invalid-attribute", "title": "An attribute is invalid.",
            "status": 400, "name": "title"}
    error = failure(make_client(lambda request: httpx.Response(400, json=body)))
    assert isinstance(error, ApiRejected)
    assert (error.status, error.title, error.slug, error.name) == (400, "An attribute is invalid.",
                                                                   "invalid-attribute", "title")
    assert str(error) == "api.video answered 400: An attribute is invalid. (field 'title')"
    assert error.reason == "api_rejected"


def test_401_is_rejected_even_without_a_json_body(make_client: Callable[[Handler], ApiClient]) -> None:
    error = failure(make_client(lambda request: httpx.Response(401, text="nope")))
    assert isinstance(error, ApiRejected)
    assert (error.status, error.title, error.slug) == (401, "Unauthorized", "")


@pytest.mark.parametrize("status", [403, 404, 409])
def test_other_4xx_are_rejected(make_client: Callable[[Handler], ApiClient], status: int) -> None:
    error = failure(make_client(lambda request: httpx.Response(status, json={"title": "no"})))
    assert isinstance(error, ApiRejected) and error.status == status


def test_429_is_rate_limited_with_retry_after(make_client: Callable[[Handler], ApiClient]) -> None:
    api = make_client(lambda request: httpx.Response(429, headers={"X-RateLimit-Retry-After": "7"},
                                                     json={"title": "Too many requests."}))
    error = failure(api)
    assert isinstance(error, ApiUnavailable)
    assert (error.reason, error.retry_after_s) == ("rate_limited", 7.0)


def test_429_without_retry_after(make_client: Callable[[Handler], ApiClient]) -> None:
    error = failure(make_client(lambda request: httpx.Response(429)))
    assert isinstance(error, ApiUnavailable)
    assert (error.reason, error.retry_after_s) == ("rate_limited", None)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retryable(make_client: Callable[[Handler], ApiClient], status: int) -> None:
    error = failure(make_client(lambda request: httpx.Response(status, text="<html>oops</html>")))
    assert isinstance(error, ApiUnavailable)
    assert error.reason == "server_error"
    assert str(status) in str(error)


def test_connection_error_is_retryable_and_redacted(make_client: Callable[[Handler], ApiClient]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    error = failure(make_client(handler))
    assert isinstance(error, ApiUnavailable) and error.reason == "connection"
    assert "ConnectError" in str(error)


def test_read_timeout_is_retryable(make_client: Callable[[Handler], ApiClient]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout(f"timed out reading {request.url}", request=request)

    error = failure(make_client(handler))
    assert isinstance(error, ApiUnavailable) and error.reason == "timeout"


def test_error_causes_are_not_chained(make_client: Callable[[Handler], ApiClient]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    error = failure(make_client(handler))
    assert error.__cause__ is None and error.__suppress_context__


def test_authenticate_posts_the_key(make_client: Callable[[Handler], ApiClient]) -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.read()))
        return httpx.Response(200, json={"access_token": "at", "refresh_token": "rt", "expires_in": 3600})

    assert make_client(handler).authenticate("KEY")["access_token"] == "at"
    assert seen == [{"apiKey": "KEY"}]


def test_api_key_calls_send_the_authorization_header(make_client: Callable[[Handler], ApiClient]) -> None:
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


def test_delete_upload_token_accepts_an_empty_answer(make_client: Callable[[Handler], ApiClient]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    make_client(handler).delete_upload_token("Bearer at", TOKEN)
    assert seen[0].method == "DELETE" and seen[0].url.path == f"/upload-tokens/{TOKEN}"


@pytest.mark.parametrize("failing", ["503", "timeout", "connect"])
def test_deleting_an_upload_token_never_shows_it(make_client: Callable[[Handler], ApiClient], failing: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if failing == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if failing == "connect":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(503)

    with pytest.raises(ApiUnavailable) as info:
        make_client(handler).delete_upload_token("Bearer at", TOKEN)
    assert TOKEN not in str(info.value)

