"""Keeping secrets out of text: log lines, exception messages, argument reprs, public views.

Secrets by shape, not by field: a token, an API key, a bearer or basic credential, and
the query string and user info of a URL (a presigned URL's signature is a credential)
are masked wherever they travel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Query parameters and headers that carry credentials, whatever their value.
_PATTERNS = (
    re.compile(r"(?i)((?:^|[?&\s'\"])(?:token|api_?key|apiKey|refreshToken|signature|sig|x-amz-[a-z-]+)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:'|\")(?:token|api_key|apiKey|refreshToken|access_token|refresh_token)(?:'|\")\s*:\s*)(?:'[^']*'|\"[^\"]*\")"),
    re.compile(r"(?i)(\b(?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+"),
)
_UPLOAD_TOKEN = re.compile(r"(?i)(\bto[A-Za-z0-9]{22})\b")  # api.video upload token shape: "to" + 22 characters
# Every pattern above needs one of these: text without any (most of it) is returned at once. ASCII text
# (nearly all of it) is screened lower-cased, case-sensitively: the same answer, three times as fast as
# the case-insensitive search (which stays for the rest: Unicode case folding matches U+017F, the long s, to "s").
_SUSPECT_TEXT = r"https?://|token|api_?key|refresh|signature|sig=|x-amz-|bearer|basic|\bto[a-z0-9]{22}\b"  # lower case
_SUSPECT = re.compile("(?i)" + _SUSPECT_TEXT)
_SUSPECT_LOWER = re.compile(_SUSPECT_TEXT)
# An http(s) URL in free text: user info and query string are masked, the rest stays.
_URL = re.compile(r"(?i)\b(https?://)(?:[^\s/@'\"<>?#]*@)?([^\s?#'\"<>]*)(\?[^\s#'\"<>]*)?")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every credential-shaped value masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    if not (_SUSPECT_LOWER.search(text.lower()) if text.isascii() else _SUSPECT.search(text)):
        return text
    text = _URL.sub(_masked_url_match, text)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return _UPLOAD_TOKEN.sub(MASK, text)


def _masked_url_match(match: re.Match[str]) -> str:
    scheme, rest, query = match.group(1), match.group(2), match.group(3)
    authority = re.split(r"[/?#]", match.group(0)[len(scheme):], maxsplit=1)[0]
    userinfo = f"{MASK}@" if "@" in authority else ""
    return f"{scheme}{userinfo}{rest}" + (f"?{MASK}" if query else "")


def mask_url(url: str) -> str:
    """A URL fit to show anywhere (records, logs, error messages): scheme, host and path kept, user
    info and query string masked (``https://***@host/v.mp4?***``), the fragment dropped; any scheme
    (a ``redis://`` password is user info). A local path is returned as it is."""
    parts = urlsplit(url)
    if not parts.scheme or "://" not in url:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, MASK if parts.query else "", ""))


SECRET_KEYS = frozenset({"token", "api_key", "apiKey", "refreshToken", "access_token", "refresh_token"})


def mask_secrets(value: object) -> object:
    """A copy of ``value`` (dicts and lists, recursively) with secret-named keys masked and
    every URL's user info and query masked."""
    if isinstance(value, dict):
        return {k: MASK if k in SECRET_KEYS and v else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact(value)
    return value
