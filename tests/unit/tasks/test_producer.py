"""tasks.producer.enqueue_many on a real Redis (no workers): records and start messages in order, bad specs
refused in place with nothing written, the same ids again the same jobs, a conflicting spec refused, and the
same results when the broker is another Redis database than the job store's."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks import enqueue_many
from tasks.constants import JOB_KEY
from tasks.errors import EnqueueError, SpecError
from tasks.job.store import job_store
from tasks.settings import Settings
from tests.unit.tasks.helpers import REAL_REDIS_URL

_XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
OTHER_DB_URL = REAL_REDIS_URL.rsplit("/", 1)[0] + f"/{5 - _XDIST_INDEX}"  # a broker apart from the store
TOKEN = "to1producerUnitTestToken0"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\0" * 1024)
    return path


@pytest.fixture(params=["one Redis", "a broker apart"])
def settings(request: pytest.FixtureRequest, real_redis_url: str, source: Path) -> Iterator[Settings]:
    broker = real_redis_url if request.param == "one Redis" else OTHER_DB_URL
    clients = [redis.Redis.from_url(url) for url in {real_redis_url, broker}]
    for client in clients:
        client.flushdb()
    yield Settings.from_env({"VUQ_BROKER_URL": broker, "VUQ_REDIS_URL": real_redis_url,
                             "VUQ_ALLOWED_ROOTS": str(source.parent), "VUQ_QUEUE": "producer-test"})
    for client in clients:
        client.flushdb()
        client.close()


def _queued(settings: Settings) -> list[dict[str, object]]:
    client = redis.Redis.from_url(settings.broker_url)
    try:
        return [json.loads(raw) for raw in reversed(client.lrange(settings.queue, 0, -1))]
    finally:
        client.close()


def test_records_and_messages_in_order_and_a_bad_spec_refused_in_place(settings: Settings, source: Path) -> None:
    specs = [{"source": str(source), "token": TOKEN, "job_id": f"many-{n}"} for n in range(7)]
    specs.insert(3, {"source": str(source), "token": TOKEN, "job_id": "bad one"})
    results = enqueue_many(specs, settings=settings, batch=2)
    assert isinstance(results[3], SpecError) and results[3].field == "job_id"
    assert [r for r in results if isinstance(r, str)] == [f"many-{n}" for n in range(7)]
    store = job_store(settings)
    assert [job.job_id for job in store.records([f"many-{n}" for n in range(7)])] == [f"many-{n}" for n in range(7)]
    assert not store.redis.exists(JOB_KEY.format(job_id="bad one"))
    messages = _queued(settings)
    assert [m["headers"]["task"] for m in messages] == ["vuq.upload.start"] * 7  # type: ignore[index]
    assert ["many-" in str(m["headers"]["kwargsrepr"]) for m in messages] == [True] * 7  # type: ignore[index]
    assert all(TOKEN not in json.dumps(m) for m in messages)


def test_the_same_ids_again_are_the_same_jobs_and_another_spec_is_refused(settings: Settings, source: Path) -> None:
    specs = [{"source": str(source), "token": TOKEN, "job_id": f"again-{n}"} for n in range(3)]
    assert enqueue_many(specs, settings=settings) == ["again-0", "again-1", "again-2"]
    changed = [*specs[:2], {**specs[2], "video": {"title": "another"}}]
    again = enqueue_many(changed, settings=settings)
    assert again[:2] == ["again-0", "again-1"]
    assert isinstance(again[2], SpecError) and again[2].field == "job_id" and "different spec" in str(again[2])
    assert len(_queued(settings)) == 3  # nothing sent twice


def test_ids_are_made_for_specs_without_one(settings: Settings, source: Path) -> None:
    results = enqueue_many([{"source": str(source), "token": TOKEN}] * 3, settings=settings)
    assert len({str(r) for r in results}) == 3 and all(isinstance(r, str) for r in results)
    assert [job.job_id for job in job_store(settings).records([str(r) for r in results])] == results


def test_an_unreachable_redis_is_an_enqueue_error(source: Path) -> None:
    settings = Settings.from_env({"VUQ_BROKER_URL": "redis://127.0.0.1:9/0", "VUQ_ALLOWED_ROOTS": str(source.parent)})
    with pytest.raises(EnqueueError, match=r"127\.0\.0\.1:9"):
        enqueue_many([{"source": str(source), "token": TOKEN}], settings=settings)
