"""Tokens and API keys never show: not in worker logs, task events (Flower), listings or Redis."""

from __future__ import annotations

import json
import subprocess
import sys

from celery import Celery

from tasks.constants import MIB, TASK_START
from tasks.job.record import State
from tests.support.events import capturing_events
from tests.support.secrets import places_showing, redis_outside_job_records
from tests.support.stack import API_KEY, Stack
from tests.support.waiting import wait_for
from workers.process.app import MaskingAMQP


def test_tokens_and_keys_never_show(stack: Stack, redis_url: str) -> None:
    path, digest = stack.file("secret.mp4", 11 * MIB, seed=41)
    tokens = [stack.emulator.create_upload_token() for _ in range(3)]
    with capturing_events(redis_url) as events:
        ours = stack.enqueue(path, token=tokens[0], chunk_size="5MiB", video={"title": "s"})
        spec = {"source": str(path), "chunk_size": "5MiB", "video": {"title": "foreign"}}
        # another service, not using our app: the token travels in the message itself
        foreign = Celery("other-service", broker=redis_url, set_as_current=False)
        foreign.send_task(TASK_START, kwargs={**spec, "token": tokens[1], "job_id": "foreign-1"},
                          queue=stack.settings.queue)
        # Flower's async-apply publishes through our app (MaskingAMQP), with sent events on
        flowerish = Celery("flowerish", broker=redis_url, amqp=MaskingAMQP, set_as_current=False)
        flowerish.conf.task_send_sent_event = True
        flowerish.send_task(TASK_START, kwargs={**spec, "token": tokens[2], "job_id": "flowerish-1"},
                            queue=stack.settings.queue)
        for job_id in (ours, "foreign-1", "flowerish-1"):
            job = stack.wait_final(job_id)
            assert job.state == State.DONE, job.error
            assert stack.emulator.video(job.video_id)["sha256"] == digest
        wait_for(lambda: any(e.get("type") == "task-succeeded" for e in events), 10, "events")
    secrets = [*tokens, API_KEY]
    started = [e for e in events if e.get("type") in ("task-received", "task-sent")]
    assert any("foreign-1" in str(e.get("kwargs")) for e in started)  # the job id stays visible
    haystacks = {
        "worker logs": stack.logs(),
        "task events": json.dumps(events, default=str),
        "vuq jobs --json": _vuq(stack, "jobs", "--json"),
        "vuq status --json": _vuq(stack, "status", "foreign-1", "--json"),
        "redis outside job records": redis_outside_job_records(redis_url),
    }
    assert places_showing(secrets, haystacks) == []


def _vuq(stack: Stack, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "workers.console", *args], env=stack.env, capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout + out.stderr
