"""tasks.pipeline.wire: a start message written without Celery is the message Celery's own ``send_task`` writes
with vuq's producer settings, field for field (ids and the origin aside), on a real Redis list."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from tasks.constants import HANDOFF_HEADER, TASK_CHUNK, TASK_START
from tasks.job.connections import broker_transport_options
from tasks.pipeline.message import Step
from tasks.pipeline.wire import _uuid4, celery_messages

QUEUE = "wire-test"
PER_MESSAGE = {"id", "root_id", "origin"}  # differ from message to message
PER_DELIVERY = {"correlation_id", "delivery_tag", "reply_to"}


@pytest.fixture
def celerys_own(real_redis_url: str) -> Iterator[dict[str, object]]:
    """What Celery itself writes for one start step, as vuq's producer configures it."""
    client = redis.Redis.from_url(real_redis_url)
    client.delete(QUEUE)
    app = Celery("vuq-producer", broker=real_redis_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"],
                    broker_transport_options=broker_transport_options(None))
    step = Step(TASK_START, "job-1", label="{'chunk': 'start', 'job_id': 'job-1'}")
    app.send_task(step.task, queue=QUEUE, **{**step.message(), "headers": {HANDOFF_HEADER: 12.5}})
    raw = client.lrange(QUEUE, 0, -1)[0]
    yield json.loads(raw)
    client.delete(QUEUE)
    app.close()
    client.close()


def test_a_start_message_is_the_one_celery_writes(celerys_own: dict[str, object]) -> None:
    ours = json.loads(celery_messages([Step(TASK_START, "job-1", label="{'chunk': 'start', 'job_id': 'job-1'}")],
                                      QUEUE, 12.5)[0])
    assert set(ours) == set(celerys_own)
    assert {k: v for k, v in ours.items() if k not in ("headers", "properties")} == {
        k: v for k, v in celerys_own.items() if k not in ("headers", "properties")}
    theirs_headers = dict(celerys_own["headers"])  # type: ignore[call-overload]
    assert {k: v for k, v in ours["headers"].items() if k not in PER_MESSAGE} == {
        k: v for k, v in theirs_headers.items() if k not in PER_MESSAGE}
    theirs_properties = {k: v for k, v in dict(celerys_own["properties"]).items()  # type: ignore[call-overload]
                         if k != "kwargsrepr"}  # Celery also copies the repr there; workers do not read it
    assert {k: v for k, v in ours["properties"].items() if k not in PER_DELIVERY} == {
        k: v for k, v in theirs_properties.items() if k not in PER_DELIVERY}
    assert ours["headers"]["root_id"] == ours["headers"]["id"] == ours["properties"]["correlation_id"]


def test_the_body_carries_only_the_ids() -> None:
    message = json.loads(celery_messages([Step(TASK_CHUNK, "job-1", 3)], QUEUE, None)[0])
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([], {"job_id": "job-1", "chunk": 3})
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    assert HANDOFF_HEADER not in message["headers"]  # none given: none written


def test_every_message_has_ids_of_its_own() -> None:
    batch = [json.loads(m) for m in celery_messages([Step(TASK_START, f"job-{n}") for n in range(3)], QUEUE, 1.0)]
    batch += [json.loads(celery_messages([Step(TASK_START, "job-0")], QUEUE, 1.0)[0])]  # another batch
    ids = [m["headers"]["id"] for m in batch] + [m["properties"]["delivery_tag"] for m in batch]
    assert len(set(ids)) == len(ids) == 8
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert [json.loads(base64.b64decode(m["body"]))[1]["job_id"] for m in batch] == ["job-0", "job-1", "job-2", "job-0"]


@pytest.mark.parametrize("random", [bytes(16), b"\xff" * 16, bytes(range(16)), bytes(range(240, 256))])
def test_ids_are_written_as_the_uuid_module_writes_them(random: bytes) -> None:
    assert _uuid4(random) == str(uuid.UUID(bytes=random, version=4))


def test_a_steps_kwargs_json_is_what_json_dumps_writes() -> None:
    for step in (Step(TASK_START, "job-1"), Step(TASK_CHUNK, "job-1", 3), Step(TASK_CHUNK, "j\u00e9b", 0)):
        assert step.kwargs_json() == json.dumps(step.kwargs())
