"""Where secrets must never show: searching logs and the Redis keyspace for them."""

from __future__ import annotations

import redis

from tasks.constants import JOB_KEY
from tasks.job.record import TOKEN_FIELD
from tasks.job.store import JobStore


def redis_outside_job_records(url: str) -> str:
    """Every value in the Redis database except the job records (which hold the token by design)."""
    client = redis.Redis.from_url(url)
    readers = {b"string": client.get, b"hash": client.hgetall, b"set": client.smembers,
               b"list": lambda key: client.lrange(key, 0, -1), b"zset": lambda key: client.zrange(key, 0, -1)}
    dump = []
    for key in client.scan_iter(count=1000):
        if not key.startswith(b"vuq:job:"):
            reader = readers.get(client.type(key))
            dump.append(f"{key!r} {reader(key) if reader else ''!r}")
    return "\n".join(dump)


def places_showing(secrets: list[str], haystacks: dict[str, str]) -> list[str]:
    """The names of the haystacks that contain any of ``secrets``."""
    return [where for where, text in haystacks.items() if any(s in text for s in secrets)]


def has_token(store: JobStore, job_id: str) -> bool:
    """Whether the job's record still holds an upload token (reads never return it)."""
    return bool(store.redis.hexists(JOB_KEY.format(job_id=job_id), TOKEN_FIELD))
