"""The Redis job store: records, leases and fenced updates.

Every write that moves a job is one Lua script, so it is atomic and costs one
round trip: ``claim`` takes the job's lease and reads the record, ``update``
checks the lease holder and the expected field values (the fencing check) before
it writes, and may drop the lease in the same step. A duplicated or late message
whose holder lost the lease, or whose chunk is no longer the next one, changes
nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import redis

from tasks.constants import JOB_INDEX_KEY, JOB_KEY, LEASE_KEY
from tasks.record import TOKEN_FIELD, JobRecord, State

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Shared by the scripts below: ARGV[count_at] expectations follow it as field, n, value1..n.
# Returns whether all hold, the first that does not ("next_chunk is 7"), and the next ARGV index.
_EXPECTATIONS = """
local function expectations(count_at)
  local i = count_at + 1
  for _ = 1, tonumber(ARGV[count_at]) do
    local current = redis.call('HGET', KEYS[1], ARGV[i]) or ''
    local k = tonumber(ARGV[i + 1])
    local ok = false
    for j = 1, k do if current == ARGV[i + 1 + j] then ok = true end end
    if not ok then return false, ARGV[i] .. ' is ' .. current, i end
    i = i + 2 + k
  end
  return true, '', i
end
"""

_CLAIM = _EXPECTATIONS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, ''} end
local met, why = expectations(4)
if not met then return {2, why} end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {0, holder, redis.call('PTTL', KEYS[2])} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[3])
return {1, redis.call('HGETALL', KEYS[1])}
"""

_RENEW = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[3])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_UPDATE = _EXPECTATIONS + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local met, _, i = expectations(3)
if not met then return 0 end
if i <= #ARGV then redis.call('HSET', KEYS[1], unpack(ARGV, i)) end
if ARGV[2] == '1' and ARGV[1] ~= '' then redis.call('DEL', KEYS[2]) end
return 1
"""

# Fields a listing reads; the token is never among them.
_LIST_FIELDS = ("job_id", "state", "spec", "size", "bytes_sent", "chunks_total", "next_chunk",
                "video_id", "error", "error_retryable", "created_at", "updated_at", "heartbeat_at",
                "chunk_size", "retries", "source_identity", "wake_at", "callback")

_LIST_PAGE = 500
Expect = Mapping[str, Iterable[object]]


@dataclass(frozen=True)
class Claim:
    """The outcome of ``claim``: the record if the lease is ours, else who holds it."""

    record: JobRecord | None
    holder: str | None = None  # who holds the lease, when it is not ours
    holder_ttl_s: float = 0.0
    mismatch: str | None = None  # which expectation the record did not meet ("next_chunk is 7")
    token: str | None = field(default=None, repr=False)  # read in the same round trip as the record


class JobStore:
    """Job records in Redis. ``client`` must decode responses (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._create = client.register_script(_CREATE)
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._update = client.register_script(_UPDATE)

    def create(self, job_id: str, spec: dict[str, object], token: str | None) -> bool:
        """Create a queued job atomically; False if ``job_id`` already exists (one job per id)."""
        now = _now()
        fields: dict[str, str] = {
            "job_id": job_id, "state": State.QUEUED, "spec": json.dumps(spec, sort_keys=True),
            "next_chunk": "0", "bytes_sent": "0", "retries": "0",
            "created_at": now, "updated_at": now,
        }
        if token:
            fields[TOKEN_FIELD] = token
        args = [now, job_id, *_flatten(fields)]
        return bool(self._create(keys=[_job_key(job_id), JOB_INDEX_KEY], args=args))

    def get(self, job_id: str) -> JobRecord | None:
        data: dict[str, str] = self.redis.hgetall(_job_key(job_id))  # type: ignore[assignment]
        return JobRecord.from_hash(data) if data else None

    def token(self, job_id: str) -> str | None:
        """The job's upload token; only the pipeline's HTTP client ever sees it."""
        token = self.redis.hget(_job_key(job_id), TOKEN_FIELD)
        return str(token) if token else None

    def forget(self, job_id: str) -> None:
        """Remove a job entirely (only an enqueue that could not send its message does this)."""
        pipe = self.redis.pipeline()
        pipe.delete(_job_key(job_id), _lease_key(job_id))
        pipe.zrem(JOB_INDEX_KEY, job_id)
        pipe.execute()

    def set_token(self, job_id: str, token: str) -> None:
        self.redis.hset(_job_key(job_id), TOKEN_FIELD, token)

    def claim(self, job_id: str, holder: str, ttl_s: float, expect: Expect | None = None) -> Claim:
        """Take (or extend) the job's lease and read its record, in one step; only if every
        ``expect`` field has one of its values (so a stale message never holds the lease)."""
        args = [holder, int(ttl_s * 1000), _now(), *_expectations(expect)]
        status, payload, *rest = self._claim(keys=[_job_key(job_id), _lease_key(job_id)], args=args)
        if status == 1:
            data = dict(zip(payload[::2], payload[1::2], strict=True))
            return Claim(JobRecord.from_hash(data), token=data.get(TOKEN_FIELD) or None)
        if status == 2:
            return Claim(None, mismatch=payload)
        return Claim(None, holder=payload or None, holder_ttl_s=max(0, int(rest[0])) / 1000 if rest else 0.0)

    def renew(self, job_id: str, holder: str, ttl_s: float) -> bool:
        """Extend our lease and beat the heartbeat; False if the lease is no longer ours."""
        keys = [_job_key(job_id), _lease_key(job_id)]
        return bool(self._renew(keys=keys, args=[holder, int(ttl_s * 1000), _now()]))

    def release(self, job_id: str, holder: str) -> bool:
        return bool(self._release(keys=[_lease_key(job_id)], args=[holder]))

    def lease_holder(self, job_id: str) -> str | None:
        holder = self.redis.get(_lease_key(job_id))
        return str(holder) if holder else None

    def update(self, job_id: str, holder: str | None, changes: Mapping[str, object],
               expect: Expect | None = None, release: bool = False) -> bool:
        """Write ``changes`` if ``holder`` holds the lease and every ``expect`` field has one of
        its allowed values. ``holder=None`` skips the lease check (operator actions)."""
        args: list[str | int] = [holder or "", "1" if release else "0", *_expectations(expect)]
        args += _flatten({**changes, "updated_at": _now()})
        result = self._update(keys=[_job_key(job_id), _lease_key(job_id)], args=args)
        return bool(result == 1)

    def add_retry(self, job_id: str) -> None:
        self.redis.hincrby(_job_key(job_id), "retries", 1)

    def list(self, states: Iterable[str] | None = None, limit: int | None = 1000) -> list[JobRecord]:
        """Newest first, at most ``limit`` (None: all); the state filter applies before the limit,
        so an old stuck job behind many newer finished ones is still found."""
        wanted = {str(s) for s in states} if states else None
        records: list[JobRecord] = []
        start = 0
        while limit is None or len(records) < limit:
            ids = self.redis.zrevrange(JOB_INDEX_KEY, start, start + _LIST_PAGE - 1)
            if not ids:
                break
            start += len(ids)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(_job_key(str(job_id)), _LIST_FIELDS)
            for values in pipe.execute():
                data = {k: v for k, v in zip(_LIST_FIELDS, values, strict=True) if v is not None}
                if data.get("job_id") and (wanted is None or data["state"] in wanted):
                    records.append(JobRecord.from_hash(data))
        return records if limit is None else records[:limit]


def _expectations(expect: Expect | None) -> list[str | int]:
    """``{field: allowed values}`` as the scripts read it: count, then field, n, values…"""
    args: list[str | int] = [len(expect or {})]
    for name, allowed in (expect or {}).items():
        values = [_text(v) for v in allowed]
        args += [name, len(values), *values]
    return args


def _job_key(job_id: str) -> str:
    return JOB_KEY.format(job_id=job_id)


def _lease_key(job_id: str) -> str:
    return LEASE_KEY.format(job_id=job_id)


def _now() -> str:
    return f"{time.time():.6f}"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _flatten(fields: Mapping[str, object]) -> list[str]:
    return [item for name, value in fields.items() for item in (name, _text(value))]
