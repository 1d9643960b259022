"""API-key access tokens, cached in Redis for every worker: one authentication per expiry.

The cache key is derived from a hash of the API key (never the key itself). A
short Redis lock makes one worker refresh while the others wait for its result;
a 401 drops the cached token and authenticates again once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from tasks.apiclient import ApiClient
from tasks.constants import (
    ACCESS_TOKEN_KEY,
    ACCESS_TOKEN_LOCK_KEY,
    ACCESS_TOKEN_LOCK_TTL_S,
    ACCESS_TOKEN_REFRESH_MARGIN_S,
)
from tasks.errors import ApiRejected, ConfigError

T = TypeVar("T")
_WAIT_FOR_PEER_S = 10.0
_POLL_S = 0.05


class AccessTokens:
    """Authorization header values for API-key calls."""

    def __init__(self, client: redis.Redis, api: ApiClient, api_key: str | None) -> None:
        self.redis = client
        self.api = api
        self.api_key = api_key
        key_id = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
        self.cache_key = ACCESS_TOKEN_KEY.format(key_id=key_id)
        self.lock_key = ACCESS_TOKEN_LOCK_KEY.format(key_id=key_id)

    @property
    def available(self) -> bool:
        return bool(self.api_key)

    def call(self, operation: Callable[[str], T]) -> T:
        """Run ``operation(authorization)``; on a 401, refresh the token and run it once more."""
        try:
            return operation(self.header())
        except ApiRejected as exc:
            if exc.status != 401:
                raise
            self.redis.delete(self.cache_key)
            return operation(self.header())

    def header(self) -> str:
        token = self._cached()
        if token:
            return f"Bearer {token}"
        if self.redis.set(self.lock_key, "1", nx=True, ex=ACCESS_TOKEN_LOCK_TTL_S):
            try:
                return f"Bearer {self._authenticate()}"
            finally:
                self.redis.delete(self.lock_key)
        deadline = time.monotonic() + _WAIT_FOR_PEER_S
        while time.monotonic() < deadline:
            time.sleep(_POLL_S)  # another worker is authenticating; its token lands in Redis
            token = self._cached()
            if token:
                return f"Bearer {token}"
        return f"Bearer {self._authenticate()}"

    def _cached(self) -> str | None:
        token, expires_at = self.redis.hmget(self.cache_key, ["access_token", "expires_at"])
        if token and expires_at and float(expires_at) - time.time() > ACCESS_TOKEN_REFRESH_MARGIN_S:
            return str(token)
        return None

    def _authenticate(self) -> str:
        if not self.api_key:
            raise ConfigError("this step needs an api.video API key: set VUQ_API_KEY or VUQ_API_KEY_FILE")
        answer = self.api.authenticate(self.api_key)
        token, lifetime_s = str(answer["access_token"]), int(answer.get("expires_in", 3600))
        pipe = self.redis.pipeline()
        pipe.hset(self.cache_key, mapping={"access_token": token, "expires_at": time.time() + lifetime_s})
        pipe.expire(self.cache_key, max(1, lifetime_s))
        pipe.execute()
        return token
