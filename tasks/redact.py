"""Keeping secrets out of text: log lines, exception messages, argument reprs."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
# Query parameters and headers that carry credentials, whatever their value.
_PATTERNS = (
    re.compile(r"(?i)((?:^|[?&\s'\"])(?:token|api_?key|apiKey|refreshToken|signature|sig|x-amz-[a-z-]+)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:'|\")(?:token|api_key|apiKey|refreshToken|access_token|refresh_token)(?:'|\")\s*:\s*)(?:'[^']*'|\"[^\"]*\")"),
    re.compile(r"(?i)(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\bto[A-Za-z0-9]{22})\b"),  # api.video upload token shape: "to" + 22 characters
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every credential-shaped value masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS[:3]:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return _PATTERNS[3].sub(MASK, text)


def safe_url(url: str) -> str:
    """A URL fit for logs: no query string (presigned URLs carry signatures), no user info."""
    head, _, _ = url.partition("?")
    scheme, sep, rest = head.partition("://")
    netloc, slash, path = rest.partition("/")
    if sep and "@" in netloc:
        rest = netloc.rsplit("@", 1)[1] + slash + path
    return f"{scheme}{sep}{rest}" if sep else head


SECRET_KEYS = frozenset({"token", "api_key", "apiKey", "refreshToken", "access_token", "refresh_token"})


def mask_secrets(value: object) -> object:
    """A copy of ``value`` (dicts and lists, recursively) with secret-named keys masked."""
    if isinstance(value, dict):
        return {k: MASK if k in SECRET_KEYS and v else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    return value
