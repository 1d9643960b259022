"""tasks.redact: secrets out of text, URLs and argument reprs. A URL keeps its scheme, host and path;
its user info and query string are masked, in free text (``redact``), alone (``mask_url``) and inside
dicts and lists (``mask_secrets``)."""

from __future__ import annotations

import pytest

from tasks.redact import MASK, mask_secrets, mask_url, redact

UPLOAD_TOKEN = "to1a2B3c4D5e6F7g8H9i0JkL"


def test_known_secrets_are_masked() -> None:
    assert redact("key is s3cr3t-key, again s3cr3t-key", ["s3cr3t-key"]) == f"key is {MASK}, again {MASK}"


def test_short_or_empty_secrets_are_not_used() -> None:
    assert redact("abc and more", ["", "abc"]) == "abc and more"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("POST https://ws.api.video/upload?token=abcdef123&x=1", "abcdef123"),
        ("url=https://h/upload?foo=1&token=abcdef123", "abcdef123"),
        ("GET /v?api_key=KEY123456", "KEY123456"),
        ("signed ?X-Amz-Signature=deadbeef", "deadbeef"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi.payload.sig"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("{'token': 'abcdef123', 'job_id': 'j'}", "abcdef123"),
        ('{"apiKey": "KEY123456"}', "KEY123456"),
        (f"upload token {UPLOAD_TOKEN} was refused", UPLOAD_TOKEN),
        (f"DELETE /upload-tokens/{UPLOAD_TOKEN}", UPLOAD_TOKEN),
    ],
)
def test_credential_shaped_values_are_masked(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert MASK in cleaned


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("POST HTTPS://WS.API.VIDEO/UPLOAD?TOKEN=ABCDEF123", "ABCDEF123"),
        ("Api_Key=KEY123456 in capitals", "KEY123456"),
        ("authorization: BEARER eyJhbGciOi.payload.sig", "eyJhbGciOi.payload.sig"),
        (f"upload token {UPLOAD_TOKEN.upper()} was refused", UPLOAD_TOKEN.upper()),
        ("café ?\u017fignature=deadbeef", "deadbeef"),  # not ASCII: the case-insensitive search (long s folds to s)
    ],
)
def test_any_letter_case_is_masked(text: str, secret: str) -> None:
    """ASCII text is screened lower-cased: every spelling the case-insensitive patterns mask is still seen."""
    assert secret not in redact(text)


def test_context_around_a_masked_credential_is_kept() -> None:
    assert redact("https://h/upload?token=abc123&x=1 failed") == f"https://h/upload?{MASK} failed"
    assert redact("Bearer abc.def") == f"Bearer {MASK}"
    assert redact("retry with token=abc123&x=1") == f"retry with token={MASK}&x=1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://bucket.s3.example.com/v.mp4?X-Amz-Signature=abc&X-Amz-Credential=x failed",
         f"GET https://bucket.s3.example.com/v.mp4?{MASK} failed"),
        ("source https://user:pa55@host.example/path/v.mp4 unreachable",
         f"source https://{MASK}@host.example/path/v.mp4 unreachable"),
        ("callback http://u:p@hooks.example:8080/in?sig=1 then gave up",
         f"callback http://{MASK}@hooks.example:8080/in?{MASK} then gave up"),
        ("'https://h/a?b=c' and \"https://h/d?e=f\"", f"'https://h/a?{MASK}' and \"https://h/d?{MASK}\""),
        ("HTTPS://HOST/P?Q=1", f"HTTPS://HOST/P?{MASK}"),
        ("https://host/plain/path.mp4 is fine", "https://host/plain/path.mp4 is fine"),
        ("https://host/a@b has an at sign in its path", "https://host/a@b has an at sign in its path"),
    ],
)
def test_urls_in_free_text_lose_user_info_and_query(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_an_at_sign_in_the_query_of_a_url_without_a_path_keeps_the_host() -> None:
    assert redact("POST https://api.example.com?email=a@b.com failed") == f"POST https://api.example.com?{MASK} failed"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://bucket.s3.example.com/v.mp4?X-Amz-Signature=abc", f"https://bucket.s3.example.com/v.mp4?{MASK}"),
        ("https://user:pass@host.example:8443/path/v.mp4?sig=1#t=5",
         f"https://{MASK}@host.example:8443/path/v.mp4?{MASK}"),
        ("http://user@host/v.mp4", f"http://{MASK}@host/v.mp4"),
        ("https://host/a/b/v.mp4", "https://host/a/b/v.mp4"),
        ("https://host/v.mp4#secret-fragment", "https://host/v.mp4"),
        ("https://host", "https://host"),
        ("/local/videos/v.mp4", "/local/videos/v.mp4"),
        ("file:///videos/v.mp4?x=1", f"file:///videos/v.mp4?{MASK}"),
        ("", ""),
    ],
)
def test_mask_url_keeps_scheme_host_and_path(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_ordinary_text_is_untouched() -> None:
    text = "job j-1 chunk 3/5 sent 52428800 bytes to video vi4k0jvEUuaTdRAEjQ4Jfrgz"
    assert redact(text) == text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@redis:6379/0", f"redis://{MASK}@redis:6379/0"),
        ("rediss://user:pw@redis:6380/1?ssl_cert_reqs=none", f"rediss://{MASK}@redis:6380/1?{MASK}"),
        ("https://u:p@host", f"https://{MASK}@host"),
    ],
)
def test_mask_url_masks_the_user_info_of_any_scheme(url: str, expected: str) -> None:
    assert mask_url(url) == expected


def test_mask_url_hides_a_password_holding_an_at_sign() -> None:
    assert "ss" not in mask_url("redis://:p@ss@redis:6379/0")


def test_mask_secrets_masks_nested_secret_keys() -> None:
    value = {"job_id": "j", "spec": {"source": "/v", "token": "abc", "nested": [{"apiKey": "k"}]},
             "api_key": "", "list": ("a", {"refresh_token": "r"})}
    assert mask_secrets(value) == {
        "job_id": "j",
        "spec": {"source": "/v", "token": MASK, "nested": [{"apiKey": MASK}]},
        "api_key": "",
        "list": ["a", {"refresh_token": MASK}],
    }


def test_mask_secrets_does_not_change_its_input() -> None:
    value = {"token": "abc"}
    mask_secrets(value)
    assert value == {"token": "abc"}


def test_mask_secrets_masks_urls_inside_dicts_and_lists() -> None:
    value = {"source": "https://u:p@bucket.example/v.mp4?X-Amz-Signature=abc",
             "callbacks": ["https://hooks.example/in?sig=zz", "/local/path"],
             "nested": {"url": ("http://h/x?token=t1",)}, "count": 3, "plain": "no url here"}
    assert mask_secrets(value) == {
        "source": f"https://{MASK}@bucket.example/v.mp4?{MASK}",
        "callbacks": [f"https://hooks.example/in?{MASK}", "/local/path"],
        "nested": {"url": [f"http://h/x?{MASK}"]},
        "count": 3,
        "plain": "no url here",
    }
