"""API-key access tokens, cached in Redis for every worker: one authentication per expiry.

The cache key is derived from a hash of the API key (never the key itself). The token is
kept with a Redis TTL of its lifetime minus a margin, so "still valid" is decided by Redis's
clock, not by a worker's. redis-py's ``Lock`` (released only by its owner) makes one worker
authenticate while the others wait for its result; a 401 drops the cached token and
authenticates again once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar, cast

import redis
from redis.exceptions import LockError

from tasks.apivideo.client import ApiClient
from tasks.constants import (
    ACCESS_TOKEN_KEY,
    ACCESS_TOKEN_LOCK_KEY,
    ACCESS_TOKEN_LOCK_TTL_S,
    ACCESS_TOKEN_REFRESH_MARGIN_S,
    ACCESS_TOKEN_WAIT_S,
)
from tasks.errors import ApiRejected, ConfigError
from tasks.telemetry import event

T = TypeVar("T")
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
        token = cast(str | None, self.redis.get(self.cache_key))
        if not token:
            lock = self.redis.lock(self.lock_key, timeout=ACCESS_TOKEN_LOCK_TTL_S, sleep=_POLL_S,
                                   blocking_timeout=ACCESS_TOKEN_WAIT_S)
            if lock.acquire():  # one worker authenticates; the others waited here for its token
                try:
                    token = cast(str | None, self.redis.get(self.cache_key)) or self._authenticate()
                finally:
                    with suppress(LockError):  # it expired and another worker holds it: not ours to drop
                        lock.release()
            else:  # the holder is slow or gone; authenticate ourselves rather than wait longer
                token = self._authenticate()
        return f"Bearer {token!s}"

    def _authenticate(self) -> str:
        if not self.api_key:
            raise ConfigError("this step needs an api.video API key: set VUQ_API_KEY or VUQ_API_KEY_FILE")
        answer = self.api.authenticate(self.api_key)
        token, lifetime_s = str(answer["access_token"]), int(answer.get("expires_in", 3600))
        valid_s = max(1, lifetime_s - ACCESS_TOKEN_REFRESH_MARGIN_S) if lifetime_s > 2 * ACCESS_TOKEN_REFRESH_MARGIN_S \
            else max(1, lifetime_s // 2)
        self.redis.set(self.cache_key, token, ex=valid_s)
        event("vuq.access_token.renewed", valid_s=valid_s)
        return token
