"""tasks.redact: secrets out of text, URLs and argument reprs."""

from __future__ import annotations

import pytest

from tasks.redact import MASK, mask_secrets, redact, safe_url

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


def test_context_around_a_masked_query_token_is_kept() -> None:
    assert redact("https://h/upload?token=abc123&x=1") == f"https://h/upload?token={MASK}&x=1"
    assert redact("Bearer abc.def") == f"Bearer {MASK}"


def test_ordinary_text_is_untouched() -> None:
    text = "job j-1 chunk 3/5 sent 52428800 bytes to video vi4k0jvEUuaTdRAEjQ4Jfrgz"
    assert redact(text) == text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://bucket.s3.example.com/v.mp4?X-Amz-Signature=abc&X-Amz-Credential=x",
         "https://bucket.s3.example.com/v.mp4"),
        ("https://user:pass@host.example/path/v.mp4?sig=1", "https://host.example/path/v.mp4"),
        ("redis://:hunter2@redis:6379/0", "redis://redis:6379/0"),
        ("https://host/a@b", "https://host/a@b"),
        ("/local/path?x", "/local/path"),
        ("https://u:p@host", "https://host"),
    ],
)
def test_safe_url_drops_query_and_user_info(url: str, expected: str) -> None:
    assert safe_url(url) == expected


def test_safe_url_hides_a_password_holding_an_at_sign() -> None:
    assert "ss" not in safe_url("redis://:p@ss@redis:6379/0")


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
