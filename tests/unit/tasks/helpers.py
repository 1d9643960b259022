"""Helpers shared by the tasks/ unit tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import fakeredis

from tasks.constants import JOB_KEY
from tasks.jobstore import JobStore

RedisFactory = Callable[[], fakeredis.FakeRedis]


def put_job(store: JobStore, job_id: str, token: str | None = None, **fields: object) -> None:
    """Create a queued job, then overwrite raw hash fields (as the pipeline would have written them)."""
    assert store.create(job_id, {"source": f"/videos/{job_id}.mp4", "video": {}}, token)
    if fields:
        store.redis.hset(JOB_KEY.format(job_id=job_id), mapping={k: str(v) for k, v in fields.items()})
