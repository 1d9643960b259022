"""API-key authentication: ``/auth/*`` tokens, Basic ``key:`` and Bearer checks (docs/protocol.md).

Each API key is an account (:mod:`emulator.accounts`); the access and refresh
tokens issued for a key belong to that key's account. They live in memory
only: a restarted emulator forgets them and clients re-authenticate, as they
would after expiry.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Any

from emulator import errors
from emulator.accounts import Accounts
from emulator.errors import ApiError

TOKEN_BYTES = 32


class Auth:
    """The accounts' API keys and the access/refresh tokens issued for them."""

    def __init__(self, accounts: Accounts, access_token_ttl_s: int) -> None:
        self.accounts = accounts
        self.access_token_ttl_s = access_token_ttl_s
        self._access: dict[str, tuple[str, float]] = {}  # token -> (account, monotonic expiry)
        self._refresh: dict[str, str] = {}  # token -> account

    def _issue(self, account: str) -> dict[str, Any]:
        access = "eyJ" + secrets.token_urlsafe(TOKEN_BYTES)
        refresh = "def50200" + secrets.token_hex(TOKEN_BYTES)
        self._access[access] = (account, time.monotonic() + self.access_token_ttl_s)
        self._refresh[refresh] = account
        return {
            "token_type": "Bearer",
            "expires_in": self.access_token_ttl_s,
            "access_token": access,
            "refresh_token": refresh,
        }

    def login(self, api_key: object) -> dict[str, Any]:
        """``POST /auth/api-key``: tokens for a valid key's account, else 400 invalid credentials."""
        account = self.accounts.by_key(api_key)
        if account is None:
            raise ApiError(errors.AUTH_INVALID_USER_CREDENTIALS, 400, name="")
        return self._issue(account.id)

    def refresh(self, refresh_token: object) -> dict[str, Any]:
        """``POST /auth/refresh``: new tokens of the same account; the old refresh token stops working."""
        account = self.refresh_account(refresh_token)
        if account is None:
            raise ApiError(errors.AUTH_INVALID_REFRESH_TOKEN, 400, name="refreshToken")
        del self._refresh[str(refresh_token)]
        return self._issue(account)

    def refresh_account(self, refresh_token: object) -> str | None:
        """The account a live refresh token belongs to, or None."""
        return self._refresh.get(refresh_token) if isinstance(refresh_token, str) else None

    def check(self, header: str | None) -> str:
        """The account of ``Basic base64(key:)`` or a live ``Bearer`` token; else raise a 401."""
        if not header:
            raise ApiError(errors.AUTH_MISSING_HEADER, 401, name="")
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return self._check_basic(value.strip())
        if scheme == "bearer":
            return self._check_bearer(value.strip())
        raise ApiError(errors.AUTH_INVALID_HEADER, 401, name="")

    def account_of(self, header: str | None) -> str | None:
        """The account ``header`` authenticates, or None (never raises; for rate limiting)."""
        try:
            return self.check(header)
        except ApiError:
            return None

    def _check_basic(self, value: str) -> str:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ApiError(errors.AUTH_INVALID_HEADER, 401, name="") from exc
        key, sep, _ = decoded.partition(":")
        account = self.accounts.by_key(key) if sep else None
        if account is None:
            raise ApiError(errors.AUTH_INVALID_API_KEY, 401, name="")
        return account.id

    def _check_bearer(self, token: str) -> str:
        account, expiry = self._access.get(token, ("", 0.0))
        if not account or time.monotonic() >= expiry:
            self._access.pop(token, None)
            raise ApiError(errors.AUTH_INVALID_ACCESS_TOKEN, 401, name="")
        return account

    def clear(self, account: str | None = None) -> None:
        """Forget the tokens issued for ``account``, or every issued token (the reset hook)."""
        if account is None:
            self._access.clear()
            self._refresh.clear()
            return
        self._access = {t: v for t, v in self._access.items() if v[0] != account}
        self._refresh = {t: a for t, a in self._refresh.items() if a != account}
