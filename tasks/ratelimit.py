"""A cluster-wide limiter for api.video's upload requests, shared by every worker through Redis.

api.video limits upload requests per account and minute (production 100, sandbox
40) and reports it in ``X-RateLimit-*`` headers; Celery's own ``rate_limit`` is per
worker, so a growing fleet would only earn 429s. Every worker asks ``acquire()``
before an upload request: a sliding one-minute log in Redis (one sorted set, one
Lua script, Redis's own clock) admits at most ``limit - 1`` requests in any
60 seconds, which keeps every server window under the limit too. ``observe()``
feeds it from each answer: ``X-RateLimit-Limit`` sets the limit (learned, unless
configured), and ``Remaining: 0`` or a 429 blocks every worker until
``X-RateLimit-Retry-After`` has passed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

import redis

from tasks.constants import KEY_PREFIX

WINDOW_S = 60.0
# api.video's upload limits are 40-100 a minute; above this nothing is paced (only 429s block)
UNLIMITED_PER_MINUTE = 10_000
RATE_LIMIT_KEY = KEY_PREFIX + "ratelimit:{account}"
RATE_STATE_KEY = KEY_PREFIX + "ratelimit-state:{account}"

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local window = tonumber(ARGV[1])
local blocked = tonumber(redis.call('HGET', KEYS[2], 'blocked_until') or '0')
if blocked > now then return tostring(blocked - now) end
local limit = tonumber(ARGV[2])
if limit <= 0 then limit = tonumber(redis.call('HGET', KEYS[2], 'limit') or '0') end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
-- every admitted request is logged, also before the limit is known, so it counts once learned
if limit <= 0 or redis.call('ZCARD', KEYS[1]) < math.max(1, limit - 1) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.floor(window * 1000) + 1000)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(math.max(0.001, tonumber(oldest[2]) + window - now))
"""

_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0')
if until_ > current then redis.call('HSET', KEYS[1], 'blocked_until', tostring(until_)) end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


class UploadRateLimiter:
    """Paces upload requests for one api.video account across all workers."""

    def __init__(self, client: redis.Redis, account: str, limit_per_minute: int = 0) -> None:
        account_id = hashlib.sha256(account.encode()).hexdigest()[:16]
        self.redis = client
        self.log_key = RATE_LIMIT_KEY.format(account=account_id)
        self.state_key = RATE_STATE_KEY.format(account=account_id)
        self.configured_limit = limit_per_minute
        self.learned_limit: int | None = None  # this process's last view, to skip needless writes
        self._acquire = client.register_script(_ACQUIRE)
        self._block = client.register_script(_BLOCK)

    def acquire(self) -> float:
        """Take a slot now and return 0, or return how many seconds to wait before asking again."""
        if not self.configured_limit and (self.learned_limit or 0) >= UNLIMITED_PER_MINUTE:
            return 0.0  # a limit no upload fleet reaches (the emulator's default): no round trip
        member = secrets.token_hex(8)
        wait = self._acquire(keys=[self.log_key, self.state_key],
                             args=[WINDOW_S, self.configured_limit, member])
        return float(wait)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an upload answer's rate-limit headers."""
        limit = _integer(headers.get("x-ratelimit-limit"))
        if limit and not self.configured_limit and limit != self.learned_limit:
            self.redis.hset(self.state_key, "limit", limit)
            self.learned_limit = limit
        remaining = _integer(headers.get("x-ratelimit-remaining"))
        retry_after = _integer(headers.get("x-ratelimit-retry-after"))
        if retry_after is not None and (status == 429 or remaining == 0):
            self._block(keys=[self.state_key], args=[retry_after])


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
