"""Helpers shared by the tasks/ unit tests (fixtures live in conftest.py).

``both_backends`` runs a test (or, as a module's ``pytestmark``, every test of a module) twice:
on fakeredis and on the real Redis at ``REAL_REDIS_URL``, so the job store's Lua scripts are
checked against the Redis they run on in production, not only against fakeredis's Lua.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import pytest
import redis

from tasks.constants import EXPIRY_KEY, JOB_INDEX_KEY, JOB_KEY, STATE_INDEX_KEY
from tasks.job.record import JobRecord, State
from tasks.job.spec import UploadSpec
from tasks.job.store import JobStore

RedisFactory = Callable[[], redis.Redis]

FAKE, REAL = "fakeredis", "redis"
# Database 10 belongs to the unit tests; it is flushed before every test that uses it.
_XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
REAL_REDIS_URL = f"redis://{os.environ.get('VUQ_TEST_REDIS', '127.0.0.1:6379')}/{10 - _XDIST_INDEX}"
both_backends = pytest.mark.parametrize("redis_backend", [FAKE, REAL], indirect=True)


def put_job(store: JobStore, job_id: str, token: str | None = None, *, spec: UploadSpec | None = None,
            **fields: Any) -> None:
    """Create a job through the store's own script: ``state=…`` lands in that state's index (with its
    retention, token erasure and outbox entry, as a job that got there would); the other ``fields``
    are written as the pipeline would have written them."""
    spec = replace(spec or UploadSpec(f"/videos/{job_id}.mp4"), job_id=job_id, token=token)
    created = store.create(spec, **fields)
    assert created.created, f"job {job_id} already exists"


def record(store: JobStore, job_id: str) -> JobRecord:
    """The job's record, which must exist."""
    job = store.get(job_id)
    assert job is not None, f"no record for job {job_id}"
    return job


def raw(store: JobStore, job_id: str) -> dict[str, str]:
    """The job's hash exactly as stored (the token included)."""
    return cast(dict[str, str], store.redis.hgetall(JOB_KEY.format(job_id=job_id)))


def expire(store: JobStore, job_id: str) -> None:
    """What the end of a record's retention does, without waiting for it: the record is gone and its
    expiry entry is due."""
    store.redis.delete(JOB_KEY.format(job_id=job_id))
    store.redis.zadd(EXPIRY_KEY, {job_id: 1.0})


def indexed(store: JobStore) -> dict[str, set[str]]:
    """The ids in each state's index."""
    return {str(state): set(store.ids_in(state)) for state in State}


def assert_indexes_agree(store: JobStore) -> dict[str, set[str]]:
    """Every record is in the index of its state and of no other, scored by its creation time like
    its entry in the index of every job, and ``counts()`` says as much. Returns the ids by state."""
    ids = [str(i) for i in cast(list[str], store.redis.zrange(JOB_INDEX_KEY, 0, -1))]
    by_state: dict[str, set[str]] = {str(state): set() for state in State}
    for job in store.records(ids):
        by_state[str(job.state)].add(job.job_id)
        score = store.redis.zscore(STATE_INDEX_KEY.format(state=job.state), job.job_id)
        assert score == store.redis.zscore(JOB_INDEX_KEY, job.job_id) == job.created_at, job.job_id
    assert indexed(store) == by_state
    assert store.counts() == {state: len(found) for state, found in by_state.items()}
    return by_state


def wait_until(condition: Callable[[], object], timeout_s: float = 5.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it is true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.02)
