"""API-key authentication: ``/auth/*`` tokens, Basic ``key:`` and Bearer checks (docs/protocol.md).

Access and refresh tokens live in memory only: a restarted emulator forgets
them and clients re-authenticate, as they would after expiry.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Any

from emulator import errors
from emulator.errors import ApiError

TOKEN_BYTES = 32


class Auth:
    """The account's API key and the access/refresh tokens issued for it."""

    def __init__(self, api_key: str, access_token_ttl_s: int) -> None:
        self.api_key = api_key
        self.access_token_ttl_s = access_token_ttl_s
        self._access: dict[str, float] = {}  # token -> monotonic expiry
        self._refresh: set[str] = set()

    def _issue(self) -> dict[str, Any]:
        access = "eyJ" + secrets.token_urlsafe(TOKEN_BYTES)
        refresh = "def50200" + secrets.token_hex(TOKEN_BYTES)
        self._access[access] = time.monotonic() + self.access_token_ttl_s
        self._refresh.add(refresh)
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl_s,
            "access_token": access,
            "refresh_token": refresh,
        }

    def login(self, api_key: object) -> dict[str, Any]:
        """``POST /auth/api-key``: tokens for a valid key, else 400 invalid credentials."""
        if not isinstance(api_key, str) or not secrets.compare_digest(api_key, self.api_key):
            raise ApiError(errors.AUTH_INVALID_USER_CREDENTIALS, 400, name="")
        return self._issue()

    def refresh(self, refresh_token: object) -> dict[str, Any]:
        """``POST /auth/refresh``: new tokens; the old refresh token stops working."""
        if not isinstance(refresh_token, str) or refresh_token not in self._refresh:
            raise ApiError(errors.AUTH_INVALID_REFRESH_TOKEN, 400, name="refreshToken")
        self._refresh.discard(refresh_token)
        return self._issue()

    def check(self, header: str | None) -> None:
        """Accept ``Basic base64(key:)`` or a live ``Bearer`` token; else raise a 401."""
        if not header:
            raise ApiError(errors.AUTH_MISSING_HEADER, 401, name="")
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            self._check_basic(value.strip())
        elif scheme == "bearer":
            self._check_bearer(value.strip())
        else:
            raise ApiError(errors.AUTH_INVALID_HEADER, 401, name="")

    def _check_basic(self, value: str) -> None:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ApiError(errors.AUTH_INVALID_HEADER, 401, name="") from exc
        key, sep, _ = decoded.partition(":")
        if not sep or not secrets.compare_digest(key, self.api_key):
            raise ApiError(errors.AUTH_INVALID_API_KEY, 401, name="")

    def _check_bearer(self, token: str) -> None:
        expiry = self._access.get(token)
        if expiry is None or time.monotonic() >= expiry:
            self._access.pop(token, None)
            raise ApiError(errors.AUTH_INVALID_ACCESS_TOKEN, 401, name="")

    def clear(self) -> None:
        """Forget every issued token (the reset hook)."""
        self._access.clear()
        self._refresh.clear()
