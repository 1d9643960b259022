"""tasks.pipeline.janitor: jobs nobody moves get their next step again, once; a long queue is not a lost step.

``needs_rescue`` is judged on records alone (pure); ``queue_head`` on a fake broker list of
kombu-shaped messages; ``sweep`` and ``resend_webhooks`` end to end on a store, on fakeredis and on
a real Redis, with every time taken from Redis's clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis

from tasks.constants import (
    EXPIRY_KEY,
    HANDOFF_HEADER,
    JOB_INDEX_KEY,
    JOB_KEY,
    LEASE_KEY,
    OUTBOX_KEY,
    TASK_CHUNK,
    TASK_FINALIZE,
    TASK_START,
    TASK_WEBHOOK,
)
from tasks.job.record import JobRecord, State
from tasks.job.spec import UploadSpec
from tasks.job.store import JobStore
from tasks.pipeline.janitor import QUEUE_HEAD_PEEK, UNKNOWN, needs_rescue, queue_head, resend_webhooks, sweep
from tasks.pipeline.message import Step
from tests.unit.tasks.helpers import both_backends, expire, put_job, record

T = 1_800_000_000.0  # "now" for the pure tests
STALE_S = 90.0
QUEUE = "uploads"
Send = Callable[[Step], None]


def job(**fields: Any) -> JobRecord:
    """An uploading job created long ago; ``fields`` as JobRecord takes them (times in seconds)."""
    values: dict[str, Any] = {"job_id": "j1", "state": State.UPLOADING, "spec": {}, "created_at": T - 10_000,
                              "next_chunk": 3, "chunks_total": 5, **fields}
    return JobRecord(**values)


# -- needs_rescue ----------------------------------------------------------------------------
@pytest.mark.parametrize("head", [None, UNKNOWN, T - 5_000, T])
def test_a_picked_up_job_whose_worker_went_quiet_is_rescued_whatever_the_queue(head: float | None) -> None:
    assert needs_rescue(job(handoff_at=T - 400, heartbeat_at=T - 300), T, STALE_S, head)


@pytest.mark.parametrize("head", [None, UNKNOWN, T - 5_000])
def test_a_picked_up_job_with_a_fresh_heartbeat_is_left_alone(head: float | None) -> None:
    assert not needs_rescue(job(handoff_at=T - 400, heartbeat_at=T - 10), T, STALE_S, head)


def test_a_heartbeat_is_stale_only_past_stale_after() -> None:
    picked_up = job(handoff_at=T - 400, heartbeat_at=T - STALE_S)
    assert not needs_rescue(picked_up, T, STALE_S, None)
    assert needs_rescue(picked_up, T + 0.5, STALE_S, None)


@pytest.mark.parametrize("age_s", [STALE_S + 1, 3_600, 30 * 86_400])
@pytest.mark.parametrize("head_after_handoff_s", [-500, -1, 0, 10, STALE_S])
def test_a_step_waiting_behind_an_older_or_as_old_queue_head_is_left_alone(age_s: float,
                                                                            head_after_handoff_s: float) -> None:
    handoff = T - age_s
    assert not needs_rescue(job(handoff_at=handoff), T, STALE_S, handoff + head_after_handoff_s)


def test_a_step_the_queue_moved_past_is_rescued_once_its_hand_off_is_stale() -> None:
    handoff = T - 400
    head = handoff + STALE_S + 1
    assert needs_rescue(job(handoff_at=handoff), T, STALE_S, head)
    assert not needs_rescue(job(handoff_at=T - 30), T, STALE_S, T - 30 + STALE_S + 1)  # handed off just now


def test_a_step_handed_off_to_an_empty_queue_is_rescued_once_its_hand_off_is_stale() -> None:
    assert needs_rescue(job(handoff_at=T - STALE_S - 1), T, STALE_S, None)
    assert not needs_rescue(job(handoff_at=T - 30), T, STALE_S, None)


@pytest.mark.parametrize("age_s", [STALE_S + 1, 30 * 86_400])
def test_nothing_is_rescued_on_hand_off_when_the_queue_head_is_unknown(age_s: float) -> None:
    assert not needs_rescue(job(handoff_at=T - age_s), T, STALE_S, UNKNOWN)


def test_a_job_never_handed_off_counts_from_its_creation() -> None:
    assert needs_rescue(job(handoff_at=None, created_at=T - 200), T, STALE_S, None)
    assert not needs_rescue(job(handoff_at=None, created_at=T - 20), T, STALE_S, None)


def test_a_heartbeat_older_than_the_hand_off_means_the_new_step_is_not_picked_up_yet() -> None:
    resent = job(handoff_at=T - 200, heartbeat_at=T - 300)
    assert not needs_rescue(resent, T, STALE_S, T - 500)  # it waits behind an older message
    assert needs_rescue(resent, T, STALE_S, None)


@pytest.mark.parametrize("wake_in_s", [600, 0, -30, -STALE_S + 1])
def test_a_step_scheduled_in_the_future_or_lately_due_is_left_alone(wake_in_s: float) -> None:
    stale = job(handoff_at=T - 400, heartbeat_at=T - 300, wake_at=T + wake_in_s)
    assert not needs_rescue(stale, T, STALE_S, None)


def test_a_step_long_overdue_is_rescued() -> None:
    assert needs_rescue(job(handoff_at=T - 400, heartbeat_at=T - 300, wake_at=T - 200), T, STALE_S, None)
    assert needs_rescue(job(handoff_at=T - 400, wake_at=T - 200), T, STALE_S, None)


# -- queue_head ------------------------------------------------------------------------------
def message(handoff_at: float | None, task: str = TASK_CHUNK, **extra: Any) -> str:
    """A Celery message as kombu stores it in the Redis list."""
    headers: dict[str, Any] = {"lang": "py", "task": task, "id": "0b0e6d7e-task", "retries": 0, **extra}
    if handoff_at is not None:
        headers[HANDOFF_HEADER] = handoff_at
    return json.dumps({"body": "W1tdLCB7ImpvYl9pZCI6ICJqMSJ9XQ==", "content-encoding": "utf-8",
                       "content-type": "application/json", "headers": headers,
                       "properties": {"delivery_tag": "f00d", "body_encoding": "base64"}})


def publish(broker: redis.Redis, *raw: str) -> None:
    """Publish oldest first, as kombu does: each new message is pushed on the left."""
    for item in raw:
        broker.lpush(QUEUE, item)


def test_queue_head_is_the_oldest_message_at_the_right_end(redis_client: redis.Redis) -> None:
    publish(redis_client, message(100.0), message(200.0), message(300.0))
    assert redis_client.lindex(QUEUE, -1) == message(100.0)
    assert queue_head(redis_client, QUEUE) == 100.0


def test_queue_head_skips_messages_that_carry_no_hand_off(redis_client: redis.Redis) -> None:
    foreign = message(None, task="other.app.task")
    publish(redis_client, foreign, "not json", "[1, 2]", json.dumps({"headers": None}), message(250.5),
            message(400.0))
    assert queue_head(redis_client, QUEUE) == 250.5


def test_queue_head_is_unknown_when_no_message_carries_a_hand_off(redis_client: redis.Redis) -> None:
    publish(redis_client, message(None), message(None, task="other.app.task"))
    head = queue_head(redis_client, QUEUE)
    assert head is not None and math.isnan(head)


def test_queue_head_looks_only_at_the_oldest_messages(redis_client: redis.Redis) -> None:
    publish(redis_client, *[message(None, task="other.app.task")] * QUEUE_HEAD_PEEK, message(500.0))
    head = queue_head(redis_client, QUEUE)
    assert head is not None and math.isnan(head)


def test_queue_head_of_an_empty_queue_is_none(redis_client: redis.Redis) -> None:
    assert queue_head(redis_client, QUEUE) is None
    publish(redis_client, message(1.0))
    redis_client.rpop(QUEUE)
    assert queue_head(redis_client, QUEUE) is None


def test_queue_head_reads_a_broker_that_returns_bytes(fake_server: fakeredis.FakeServer) -> None:
    broker = fakeredis.FakeRedis(server=fake_server)
    publish(broker, message(42.0))
    assert queue_head(broker, QUEUE) == 42.0


# -- sweep, end to end -----------------------------------------------------------------------
def put_active(store: JobStore, job_id: str = "j1", state: State = State.UPLOADING, next_chunk: int = 3,
               handoff_ago_s: float | None = 400, heartbeat_ago_s: float | None = 300, **fields: Any) -> float:
    """An active job with its hand-off and heartbeat that long ago on Redis's clock; returns that now."""
    now = store.now()
    if handoff_ago_s is not None:
        fields["handoff_at"] = now - handoff_ago_s
    if heartbeat_ago_s is not None:
        fields["heartbeat_at"] = now - heartbeat_ago_s
    put_job(store, job_id, state=state, next_chunk=next_chunk, chunks_total=5, **fields)
    return now


def shown(steps: list[Step]) -> list[tuple[str, str, int | None]]:
    return [(s.task, s.job_id, s.chunk) for s in steps]


@both_backends
def test_a_stuck_job_gets_its_next_step_with_a_new_hand_off(store: JobStore, send: Send, sent: list[Step]) -> None:
    now = put_active(store)
    before = record(store, "j1")
    assert sweep(store, send, STALE_S, None) == ["j1"]
    job = record(store, "j1")
    assert job.handoff_at is not None and job.handoff_at >= now > (before.handoff_at or 0)
    assert shown(sent) == [(TASK_CHUNK, "j1", 3)]
    assert sent[0].handoff_at == job.handoff_at
    assert sent[0].label is not None and "'j1'" in sent[0].label
    assert (job.state, job.next_chunk) == (State.UPLOADING, 3)


@both_backends
def test_a_second_sweep_right_after_leaves_it_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_active(store)
    assert sweep(store, send, STALE_S, None) == ["j1"]
    assert sweep(store, send, STALE_S, None) == []
    assert len(sent) == 1


@both_backends
def test_a_job_with_a_live_lease_is_left_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_active(store)
    store.redis.set(LEASE_KEY.format(job_id="j1"), "w1", px=30_000)
    before = record(store, "j1")
    assert sweep(store, send, STALE_S, None) == []
    assert sent == []
    assert record(store, "j1").handoff_at == before.handoff_at


@both_backends
def test_a_job_with_a_fresh_heartbeat_is_left_alone(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_active(store, heartbeat_ago_s=10)
    assert sweep(store, send, STALE_S, None) == []
    assert sent == []


@both_backends
@pytest.mark.parametrize(("state", "next_chunk", "task", "chunk"), [
    (State.QUEUED, 0, TASK_START, None), (State.UPLOADING, 3, TASK_CHUNK, 3),
    (State.FINALIZING, 5, TASK_FINALIZE, None)])
def test_each_active_state_gets_the_step_its_cursor_says(store: JobStore, send: Send, sent: list[Step], state: State,
                                                         next_chunk: int, task: str, chunk: int | None) -> None:
    put_active(store, state=state, next_chunk=next_chunk)
    assert sweep(store, send, STALE_S, None) == ["j1"]
    assert shown(sent) == [(task, "j1", chunk)]


@both_backends
@pytest.mark.parametrize("state", [State.DONE, State.FAILED, State.CANCELLED])
def test_ended_jobs_are_never_touched(store: JobStore, send: Send, sent: list[Step], state: State) -> None:
    put_active(store, state=state)
    assert sweep(store, send, STALE_S, None) == []
    assert sent == []


@both_backends
def test_a_backlog_waiting_in_the_queue_gets_no_rescue(store: JobStore, send: Send, sent: list[Step]) -> None:
    now = store.now()
    head = now - 3_000  # the oldest message still waiting was handed off 50 minutes ago
    for n in range(60):
        put_active(store, f"q{n}", state=State.QUEUED, next_chunk=0, handoff_ago_s=3_000 - 40 * n,
                   heartbeat_ago_s=None)
    assert sweep(store, send, STALE_S, head) == []
    assert sent == []


@both_backends
def test_a_step_the_queue_moved_past_is_rescued_among_a_backlog(store: JobStore, send: Send,
                                                                sent: list[Step]) -> None:
    head = store.now() - 1_000
    for n in range(10):
        put_active(store, f"q{n}", state=State.QUEUED, next_chunk=0, handoff_ago_s=1_000 - n, heartbeat_ago_s=None)
    put_active(store, "lost", state=State.QUEUED, next_chunk=0, handoff_ago_s=1_000 + STALE_S + 10,
               heartbeat_ago_s=None)
    assert sweep(store, send, STALE_S, head) == ["lost"]
    assert shown(sent) == [(TASK_START, "lost", None)]


@both_backends
def test_an_unknown_queue_head_rescues_only_jobs_a_worker_picked_up(store: JobStore, send: Send,
                                                                   sent: list[Step]) -> None:
    put_active(store, "picked", heartbeat_ago_s=300)
    put_active(store, "waiting", state=State.QUEUED, next_chunk=0, handoff_ago_s=5_000, heartbeat_ago_s=None)
    assert sweep(store, send, STALE_S, UNKNOWN) == ["picked"]


@both_backends
def test_a_scheduled_step_is_left_alone_until_long_overdue(store: JobStore, send: Send, sent: list[Step]) -> None:
    now = put_active(store, "soon", wake_at=store.now() + 60)
    put_active(store, "lately", wake_at=now - 30)
    put_active(store, "overdue", wake_at=now - 600)
    assert sweep(store, send, STALE_S, None) == ["overdue"]
    assert record(store, "overdue").wake_at is None  # the rescue replaces the schedule
    assert record(store, "soon").wake_at is not None


@both_backends
def test_a_job_that_moved_since_it_was_read_is_not_rescued_twice(store: JobStore, send: Send, sent: list[Step],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    put_active(store)
    snapshot = store.active()
    assert sweep(store, send, STALE_S, None) == ["j1"]  # another janitor, a moment earlier
    monkeypatch.setattr(store, "active", lambda: snapshot)
    assert sweep(store, send, STALE_S, None) == []
    assert len(sent) == 1


@both_backends
def test_a_job_a_worker_claimed_since_it_was_read_is_not_rescued(store: JobStore, send: Send, sent: list[Step],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    put_active(store)
    snapshot = store.active()
    monkeypatch.setattr(store, "active", lambda: snapshot)
    monkeypatch.setattr(store, "leases", lambda job_ids: [False] * len(job_ids))  # read before the claim
    assert store.claim("j1", "w1", 30).record is not None
    handoff = record(store, "j1").handoff_at
    assert sweep(store, send, STALE_S, None) == []
    assert sent == []
    assert record(store, "j1").handoff_at == handoff


@both_backends
def test_a_sweep_of_one_queue_rescues_its_jobs_and_those_of_no_queue(store: JobStore, send: Send,
                                                                     sent: list[Step]) -> None:
    put_active(store, "ours", queue=QUEUE)
    put_active(store, "older", queue="")  # created before jobs named their queue
    put_active(store, "theirs", queue="other-uploads")
    theirs = record(store, "theirs").handoff_at
    assert sorted(sweep(store, send, STALE_S, None, QUEUE)) == ["older", "ours"]
    assert record(store, "theirs").handoff_at == theirs  # left to its own deployment's janitor
    assert sorted(s.job_id for s in sent) == ["older", "ours"]
    assert sweep(store, send, STALE_S, None, "other-uploads") == ["theirs"]


@both_backends
def test_a_sweep_of_every_queue_rescues_every_job(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_active(store, "ours", queue=QUEUE)
    put_active(store, "theirs", queue="other-uploads")
    assert sorted(sweep(store, send, STALE_S, None)) == ["ours", "theirs"]


@both_backends
def test_sweep_prunes_expired_entries(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_job(store, "old", state=State.DONE)
    expire(store, "old")
    assert sweep(store, send, STALE_S, None) == []
    assert store.redis.zscore(JOB_INDEX_KEY, "old") is None
    assert store.redis.zscore(EXPIRY_KEY, "old") is None
    assert store.ids_in(State.DONE) == []


# -- resend_webhooks -------------------------------------------------------------------------
HOOKED = UploadSpec("/videos/h.mp4", callback_url="https://example.com/hook")


@both_backends
def test_webhooks_owed_past_the_grace_are_sent_again_and_pushed_forward(store: JobStore, send: Send,
                                                                       sent: list[Step]) -> None:
    put_job(store, "late", spec=HOOKED, state=State.DONE)
    put_job(store, "recent", spec=HOOKED, state=State.FAILED)
    assert resend_webhooks(store, send, STALE_S) == []  # both just ended: their delivery may be under way
    store.redis.zadd(OUTBOX_KEY, {"late": store.now() - STALE_S - 30})
    assert resend_webhooks(store, send, STALE_S) == ["late"]
    assert sent == [Step(TASK_WEBHOOK, "late")]
    assert store.redis.zscore(OUTBOX_KEY, "late") == pytest.approx(store.now(), abs=5)
    assert resend_webhooks(store, send, STALE_S) == []
    assert len(sent) == 1


@both_backends
def test_only_the_webhooks_of_the_queue_s_jobs_are_sent_again(store: JobStore, send: Send, sent: list[Step]) -> None:
    for job_id, queue in (("ours", QUEUE), ("older", ""), ("theirs", "other-uploads")):
        put_job(store, job_id, spec=HOOKED, state=State.DONE, queue=queue)
        store.redis.zadd(OUTBOX_KEY, {job_id: store.now() - STALE_S - 30})
    assert sorted(resend_webhooks(store, send, STALE_S, QUEUE)) == ["older", "ours"]
    assert sorted(s.job_id for s in sent) == ["older", "ours"]
    assert store.outbox_due(older_than_s=STALE_S) == ["theirs"]  # left for its own janitor


@both_backends
def test_a_webhook_owed_by_a_job_that_is_gone_is_dropped(store: JobStore, send: Send, sent: list[Step]) -> None:
    put_job(store, "gone", spec=HOOKED, state=State.DONE)
    store.redis.zadd(OUTBOX_KEY, {"gone": store.now() - STALE_S - 30})
    store.redis.delete(JOB_KEY.format(job_id="gone"))
    assert resend_webhooks(store, send, STALE_S) == []
    assert sent == []
    assert store.redis.zscore(OUTBOX_KEY, "gone") is None
