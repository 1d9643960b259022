"""The fleet's limiter for api.video's per-class budgets, shared by every worker through Redis.

api.video limits each account per minute and per request class (production: uploads 100,
writes 200, reads 500; sandbox 40/40/100) and reports each class's state in
``X-RateLimit-*`` headers; Celery's own ``rate_limit`` is per worker, so a growing fleet
would only earn 429s. Before every request a worker asks ``acquire(class)``: a sliding
one-minute log per class in Redis (one sorted set, one Lua script, Redis's own clock)
admits at most ``limit - 1`` requests in any 60 seconds, which keeps every server window
under the limit too. ``observe()`` feeds it from each answer: ``X-RateLimit-Limit`` sets the
class's limit (learned, unless configured with ``VUQ_RATE_LIMITS``), and ``Remaining: 0`` or
a 429 holds every worker until ``X-RateLimit-Retry-After`` has passed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

import redis

from tasks.apivideo.client import READ, UPLOAD, WRITE
from tasks.constants import KEY_PREFIX

WINDOW_S = 60.0
CLASSES = (UPLOAD, WRITE, READ)
# api.video's limits are 40-500 a minute; above this nothing is paced (only 429s block)
UNLIMITED_PER_MINUTE = 10_000
RATE_LIMIT_KEY = KEY_PREFIX + "ratelimit:{account}:{request_class}"
RATE_STATE_KEY = KEY_PREFIX + "ratelimit-state:{account}:{request_class}"

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

# How much of the class's budget the last minute used: {requests in the window, its limit}.
_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local limit = tonumber(ARGV[2])
if limit <= 0 then limit = tonumber(redis.call('HGET', KEYS[2], 'limit') or '0') end
return {redis.call('ZCARD', KEYS[1]), limit}
"""


def parse_rate_limits(text: str) -> dict[str, int]:
    """``upload=100,write=200,read=500`` (any subset); ValueError names what is wrong."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        request_class, sep, value = item.partition("=")
        request_class = request_class.strip()
        if not sep or request_class not in CLASSES:
            raise ValueError(f"{item!r} is not CLASS=N with CLASS one of {', '.join(CLASSES)}")
        if not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{request_class}: {value.strip()!r} is not a whole number of requests a minute, "
                             "at least 1")
        limits[request_class] = int(value)
    return limits


class FleetLimiter:
    """Paces one api.video account's requests, per class, across all workers."""

    def __init__(self, client: redis.Redis, account: str, configured: Mapping[str, int] | None = None) -> None:
        account_id = hashlib.sha256(account.encode()).hexdigest()[:16]
        self.redis = client
        self.configured = dict(configured or {})
        self.keys = {k: (RATE_LIMIT_KEY.format(account=account_id, request_class=k),
                         RATE_STATE_KEY.format(account=account_id, request_class=k)) for k in CLASSES}
        self.learned: dict[str, int] = {}  # this process's last view, to skip needless writes
        self._acquire = client.register_script(_ACQUIRE)
        self._block = client.register_script(_BLOCK)
        self._usage = client.register_script(_USAGE)

    def acquire(self, request_class: str) -> float:
        """Take a slot of ``request_class`` now and return 0, or return how many seconds to wait first."""
        configured = self.configured.get(request_class, 0)
        if not configured and self.learned.get(request_class, 0) >= UNLIMITED_PER_MINUTE:
            return 0.0  # a limit no fleet reaches (the emulator's default): no round trip
        wait = self._acquire(keys=list(self.keys[request_class]), args=[WINDOW_S, configured, secrets.token_hex(8)])
        return float(wait)

    def observe(self, request_class: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer's rate-limit headers."""
        limit = _integer(headers.get("x-ratelimit-limit"))
        _, state_key = self.keys[request_class]
        if limit and request_class not in self.configured and limit != self.learned.get(request_class):
            self.redis.hset(state_key, "limit", limit)
            self.learned[request_class] = limit
        remaining = _integer(headers.get("x-ratelimit-remaining"))
        retry_after = _integer(headers.get("x-ratelimit-retry-after"))
        if retry_after is not None and (status == 429 or remaining == 0):
            self._block(keys=[state_key], args=[retry_after])

    def usage(self, request_class: str) -> tuple[int, int]:
        """Requests of ``request_class`` in the last minute, and its limit (0: not known yet)."""
        configured = self.configured.get(request_class, 0)
        used, limit = self._usage(keys=list(self.keys[request_class]), args=[WINDOW_S, configured])
        return int(used), int(limit)


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
