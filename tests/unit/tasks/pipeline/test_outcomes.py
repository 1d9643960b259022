"""tasks.pipeline.outcomes through Pipeline.run: every way a step ends is decided in the pipeline, on the
error's class, and written to the job store (deferred, retried, failed), so the Celery adapter only maps
the outcome. On the pipeline rig (tests/unit/tasks/rig.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
import redis

from tasks.constants import DELAYED_KEY, TASK_CHUNK, TASK_START, TASK_WEBHOOK
from tasks.errors import JobFailed, JobFailedResumable, Throttled
from tasks.job.record import State
from tasks.job.store import JobStore
from tasks.pipeline.message import Step
from tasks.pipeline.outcomes import Attempt, Continue, Fail, Retry, Stop
from tests.unit.tasks.fakes import FakeApiVideo
from tests.unit.tasks.rig import Build, new_job, record


class Interrupted(Exception):
    """What a task runner raises inside a step that ran out of time (Celery's soft time limit)."""


def delayed(store: JobStore) -> list[dict[str, object]]:
    return [json.loads(member) for member in store.redis.zrange(DELAYED_KEY, 0, -1)]


def raising(exc: BaseException) -> object:
    def hook(request: httpx.Request) -> None:
        if request.url.path == "/upload":
            raise exc
    return hook


def test_a_step_that_did_its_work_continues_with_the_next_and_reports_the_chunk(
        build: Build, store: JobStore, clip: Path) -> None:
    pipeline = build()
    sent: list[tuple[object, ...]] = []
    pipeline.reporter = type("Collect", (), {"chunk_sent": lambda self, *a: sent.append(a),  # type: ignore[assignment]
                                             "progress": lambda self, *a: None})()
    new_job(store, clip)
    outcome = pipeline.run(Step(TASK_START, "j1"))
    assert isinstance(outcome, Continue) and (outcome.step.task, outcome.step.chunk) == (TASK_CHUNK, 1)
    assert [(job, index, total) for job, index, total, *_ in sent] == [("j1", 0, 3)]


def test_a_step_the_record_no_longer_expects_stops(build: Build, store: JobStore, clip: Path) -> None:
    new_job(store, clip)
    assert isinstance(build().run(Step(TASK_CHUNK, "j1", 2)), Stop)
    assert record(store).next_chunk == 0 and delayed(store) == []


def test_a_job_another_worker_holds_is_asked_again_shortly(build: Build, store: JobStore, clip: Path) -> None:
    new_job(store, clip)
    assert store.claim("j1", "other", 5).record is not None
    outcome = build().run(Step(TASK_START, "j1"), Attempt("task-1", 2))
    assert isinstance(outcome, Stop)
    assert [(m["task"], m["id"], m["retries"]) for m in delayed(store)] == [(TASK_START, "task-1", 2)]
    assert store.lease_holder("j1") == "other" and record(store).retries == 0  # not ours, not a retry


def test_a_step_over_the_budget_is_deferred_not_retried(build: Build, store: JobStore, fake: FakeApiVideo,
                                                        clip: Path) -> None:
    new_job(store, clip)
    fake.hooks.append(raising(Throttled(30.0)))
    outcome = build().run(Step(TASK_START, "j1"), Attempt("task-1", 0))
    assert isinstance(outcome, Stop)
    job = record(store)
    assert job.retries == 0 and job.wake_at is not None and store.lease_holder("j1") is None
    assert [m["task"] for m in delayed(store)] == [TASK_START]


def test_a_retryable_failure_is_retried_with_backoff_and_counted(build: Build, store: JobStore,
                                                                 fake: FakeApiVideo, clip: Path) -> None:
    new_job(store, clip)
    fake.fail("POST", "/upload", 503, "service-unavailable")
    outcome = build(max_retries=3).run(Step(TASK_START, "j1"), Attempt("task-1", 1))
    assert isinstance(outcome, Retry) and outcome.error.reason == "server_error"
    assert 0 <= outcome.delay_s <= 4.0  # full jitter under base 2 s x 2^1
    job = record(store)
    assert (job.retries, job.last_retry_reason, job.state) == (1, "server_error", State.UPLOADING)
    assert [(m["id"], m["retries"]) for m in delayed(store)] == [("task-1", 2)]


def test_the_last_retry_fails_the_job_resumable_with_the_retry_reason(build: Build, store: JobStore,
                                                                      fake: FakeApiVideo, clip: Path) -> None:
    new_job(store, clip, callback_url="https://hooks.example/vuq")
    fake.fail("POST", "/upload", 503, "service-unavailable")
    outcome = build(max_retries=3).run(Step(TASK_START, "j1"), Attempt("task-1", 3))
    assert isinstance(outcome, Fail) and isinstance(outcome.failure, JobFailedResumable)
    assert outcome.then == Step(TASK_WEBHOOK, "j1")
    assert "gave up after 4 attempts" in str(outcome.failure) and "vuq resume j1" in str(outcome.failure)
    job = record(store)
    assert (job.state, job.error_reason, job.error_retryable) == (State.FAILED, "server_error", True)


def test_a_permanent_failure_fails_the_job_at_once(build: Build, store: JobStore, fake: FakeApiVideo,
                                                   clip: Path) -> None:
    new_job(store, clip)
    fake.fail("POST", "/upload", 400, "invalid-attribute")
    outcome = build().run(Step(TASK_START, "j1"))
    assert isinstance(outcome, Fail) and type(outcome.failure) is JobFailed and outcome.then is None
    assert str(outcome.failure).startswith("api.video answered 400") and "not resumable" in str(outcome.failure)
    assert (record(store).state, record(store).error_retryable) == (State.FAILED, False)


def test_a_step_interrupted_by_its_runner_is_retried(build: Build, store: JobStore, fake: FakeApiVideo,
                                                     clip: Path) -> None:
    new_job(store, clip)
    fake.hooks.append(raising(Interrupted()))
    outcome = build().run(Step(TASK_START, "j1"), Attempt(), (Interrupted,))
    assert isinstance(outcome, Retry) and outcome.error.reason == "time_limit"


def test_redis_away_is_retried_never_a_failure(build: Build, store: JobStore, fake: FakeApiVideo,
                                               clip: Path) -> None:
    new_job(store, clip)
    fake.hooks.append(raising(redis.ConnectionError("Redis went away")))
    outcome = build().run(Step(TASK_START, "j1"))
    assert isinstance(outcome, Retry) and outcome.error.reason == "redis"
    assert record(store).state == State.UPLOADING and record(store).error is None


def test_a_bug_fails_the_job_resumable_and_logs_its_traceback_once(
        build: Build, store: JobStore, fake: FakeApiVideo, clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    new_job(store, clip)
    fake.hooks.append(raising(KeyError("surprise")))
    with caplog.at_level(logging.ERROR, logger="tasks.pipeline.outcomes"):
        outcome = build().run(Step(TASK_START, "j1"))
    assert isinstance(outcome, Fail) and isinstance(outcome.failure, JobFailedResumable)
    assert "internal error: KeyError" in str(outcome.failure)
    assert record(store).error_reason == "internal"
    assert [r.exc_info is not None for r in caplog.records] == [True]
