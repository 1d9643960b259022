"""A job's life at scale, with real workers and a Redis of the module's own: the janitor tells a long
queue from a lost message, ended jobs expire with everything of theirs, a completion webhook no worker
delivered is sent again, and a worker whose clock is ten minutes off changes nothing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tasks.constants import EXPIRY_KEY, JOB_INDEX_KEY, MIB, OUTBOX_KEY, STATE_INDEX_KEY
from tasks.job.connections import redis_client
from tasks.job.record import ACTIVE_STATES, State
from tasks.pipeline.janitor import queue_head, resend_webhooks, sweep
from tasks.producer import enqueue_upload, send_step
from tasks.settings import Settings
from tasks.webhooks import SIGNATURE_HEADER, verify
from tests.support.receiver import receiving
from tests.support.secrets import has_token
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_for
from workers.lab.services import RedisServer

BACKLOG = 2000
SKEWED_CLOCK = Path(__file__).resolve().parents[1] / "support" / "skewed_clock"
WEBHOOK_SECRET = "lifecycle-webhook-secret-51"


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    """A redis-server of this module's own: its backlog of thousands of jobs stays here."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def life(tmp_path_factory: pytest.TempPathFactory, private_redis: str) -> Iterator[Stack]:
    """One slow worker (concurrency 1, 30 ms per api.video request); jobs expire 2 s after they end."""
    with running_stack(Path(tmp_path_factory.mktemp("life")), private_redis, workers=1, concurrency=1,
                       emulator_args=("--latency-ms", "30,30"), VUQ_JOB_RETENTION_S="2",
                       VUQ_FAILED_JOB_RETENTION_S="2", VUQ_WEBHOOK_SECRET=WEBHOOK_SECRET) as stack:
        yield stack


def _janitor(stack: Stack, stale_after_s: float) -> list[str]:
    """One janitor sweep, as `vuq beat` runs it, with a short staleness for the test."""
    broker = redis_client(stack.settings.broker_url)
    head = queue_head(broker, stack.settings.queue)
    return sweep(stack.store, stack.send, stale_after_s, head, stack.settings.queue)


def test_a_backlog_of_thousands_with_one_slow_worker_gets_no_janitor_reenqueue(life: Stack) -> None:
    path, _ = life.file("tiny.mp4", 4096, seed=1)
    token = life.emulator.create_upload_token()
    queue = life.settings.queue
    ids = [enqueue_upload(str(path), token=token, settings=life.settings) for _ in range(BACKLOG)]
    assert life.store.redis.llen(queue) >= BACKLOG - 50  # the worker only nibbles at it
    rescued: list[str] = []
    began = life.store.now()
    while life.store.now() - began < 12:  # sweeps with a staleness far below the backlog's age
        rescued += _janitor(life, stale_after_s=2)
        time.sleep(0.5)  # the janitor's own pace (beat would run it every VUQ_JANITOR_INTERVAL_S)
    moved = sum(1 for j in life.store.records(ids) if j.state != State.QUEUED)
    assert rescued == [], f"{len(rescued)} waiting jobs were re-enqueued"
    assert moved > 0 and life.store.redis.llen(queue) > 0  # it worked through some, the rest still waits
    life.store.redis.delete(queue)  # the rest of the backlog is not this module's business
    for job_id in ids:
        life.store.update(job_id, None, {"state": State.CANCELLED}, expect={"state": list(ACTIVE_STATES)})


def test_a_start_message_lost_from_the_queue_is_rescued_within_two_sweeps(life: Stack) -> None:
    path, digest = life.file("lost.mp4", 6 * MIB, seed=2)
    quiet = f"{life.settings.queue}-quiet"  # nobody consumes it: the message can be taken away
    job_id = enqueue_upload(str(path), token=life.emulator.create_upload_token(), chunk_size="5MiB",
                            settings=_on_queue(life, quiet))
    assert life.store.redis.llen(quiet) == 1
    life.store.redis.delete(quiet)  # a broker restart without AOF, say
    created = life.store.get(job_id)
    assert created is not None and created.handoff_at is not None
    wait_for(lambda: life.store.now() - (created.handoff_at or 0) > 1.5, 10, "the hand-off to age")
    stack_on_quiet = _on_queue(life, quiet)
    sweeps = [sweep(life.store, lambda s: send_step(s, stack_on_quiet), 1, queue_head(
        redis_client(life.settings.broker_url), quiet), quiet) for _ in range(2)]
    assert [job_id] in sweeps, sweeps
    assert life.store.redis.llen(quiet) == 1  # sent again, once
    life.store.redis.lmove(quiet, life.settings.queue, "RIGHT", "LEFT")  # to where the worker listens
    job = life.wait_final(job_id, 60)
    assert job.state == State.DONE and life.emulator.video(job.video_id or "")["sha256"] == digest


def _on_queue(stack: Stack, queue: str) -> Settings:
    return replace(stack.settings, queue=queue)


def test_an_ended_job_expires_with_every_key_and_index_entry(life: Stack) -> None:
    path, _ = life.file("expires.mp4", 6 * MIB, seed=3)
    job_id = life.enqueue(path, chunk_size="5MiB")
    job = life.wait_final(job_id, 60)
    assert job.state == State.DONE and not has_token(life.store, job_id)  # erased the moment it was done
    client: redis.Redis = life.store.redis
    assert 0 < client.pttl(f"vuq:job:{job_id}") <= 2000
    wait_for(lambda: not client.exists(f"vuq:job:{job_id}"), 10, "the record to expire")
    # sweeps forget index entries of expired records, oldest first, a batch each (the backlog this
    # module cancelled expired before this job, so more than one batch may be due)
    wait_for(lambda: _janitor(life, stale_after_s=90) == [] and client.zscore(EXPIRY_KEY, job_id) is None, 10,
             "the sweeps to reach the expired job")
    assert client.zscore(JOB_INDEX_KEY, job_id) is None and client.zscore(EXPIRY_KEY, job_id) is None
    assert client.zscore(STATE_INDEX_KEY.format(state="done"), job_id) is None
    assert not [k for k in client.scan_iter(f"*{job_id}*")]
    assert job_id not in {j.job_id for j in life.store.page(limit=100)}


def test_a_webhook_no_worker_delivered_is_sent_again_by_the_janitor(life: Stack) -> None:
    path, _ = life.file("outbox.mp4", 1 * MIB, seed=4)
    with receiving() as receiver:
        quiet = _on_queue(life, f"{life.settings.queue}-nobody")
        job_id = enqueue_upload(str(path), token="to1tcmSFHeYY5KzyhOqVKMKb", callback_url=receiver.url,
                                settings=quiet)
        # the job ends, and its worker dies before it could enqueue the webhook
        assert life.store.update(job_id, None, {"state": State.FAILED, "error": "simulated"},
                                 expect={"state": [State.QUEUED]})
        assert life.store.redis.zscore(OUTBOX_KEY, job_id) is not None  # owed, in the same write
        wait_for(lambda: resend_webhooks(life.store, life.send, 0.5, quiet.queue), 10, "the resend")
        wait_for(lambda: receiver.requests, 30, "the webhook")
    headers, body = receiver.requests[0]
    assert verify(body, WEBHOOK_SECRET, headers[SIGNATURE_HEADER.lower()])
    assert json.loads(body)["job_id"] == job_id and json.loads(body)["state"] == "failed"
    wait_for(lambda: life.store.redis.zscore(OUTBOX_KEY, job_id) is None, 10, "the outbox to clear")


def test_workers_whose_clocks_are_ten_minutes_off_change_nothing(tmp_path: Path, private_redis: str) -> None:
    skewed = {"PYTHONPATH": os.pathsep.join(filter(None, [str(SKEWED_CLOCK), os.environ.get("PYTHONPATH", "")]))}
    with running_stack(tmp_path, private_redis, workers=0, emulator_args=("--seed", "5", "--error-rate", "0.2"),
                       VUQ_LEASE_TTL_S="5", VUQ_STALE_AFTER_S="10", VUQ_RETRY_BACKOFF_S="0.5") as stack:
        stack.add_worker(concurrency=2, VUQ_TEST_CLOCK_SKEW_S="600", **skewed)
        stack.add_worker(concurrency=2, VUQ_TEST_CLOCK_SKEW_S="-600", **skewed)
        files = [stack.file(f"skew-{i}.mp4", 11 * MIB, seed=10 + i) for i in range(4)]
        ids = [stack.enqueue(p, chunk_size="5MiB", token=None) for p, _ in files]  # the workers mint one
        rescued: list[str] = []
        began = time.monotonic()
        while not all(j.state.final for j in stack.store.records(ids)) and time.monotonic() - began < 90:
            rescued += _janitor(stack, stale_after_s=10)
            for job in stack.store.records(ids):  # every time a worker wrote is on Redis's clock
                for moment in (job.heartbeat_at, job.handoff_at, job.wake_at, job.updated_at):
                    assert moment is None or abs(moment - stack.store.now()) < 120, (job.job_id, moment)
            time.sleep(0.5)  # the test's own pace, not a synchronisation
        records = stack.store.records(ids)
        assert [j.state for j in records] == [State.DONE] * len(ids), [(j.state, j.error) for j in records]
        assert sum(j.retries for j in records) > 0  # retries happened, and came back on time
        assert rescued == []
        for job, (_, digest) in zip(records, files, strict=True):
            assert stack.emulator.video(job.video_id or "")["sha256"] == digest
