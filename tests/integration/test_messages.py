"""Messages from anyone who can publish to the broker, checked before they touch anything, and bulk enqueue,
on real Redis, real workers and the emulator: a message vuq could not have written is refused and kept apart
by its message id (bounded, masked), never a record under the id it names, never a member of the deferred
set, and the delayed-step pump keeps publishing everyone else's steps; a rejected spec's id is not silently
taken by a later enqueue; a delivered webhook is not delivered again because someone asked by name; many
jobs enqueued at once all run, from Python or from a file of specs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery
import pytest

from tasks import enqueue_many
from tasks.constants import DELAYED_KEY, JOB_KEY, MIB, REJECTED_KEY, UNREADABLE_KEY
from tasks.errors import SpecError
from tasks.job import State
from tasks.pipeline.intake import safe_message_id
from tests.support.receiver import receiving
from tests.support.stack import Stack, running_stack, vuq
from tests.support.waiting import wait_for
from workers.process.metrics import RedisStateCollector

pytestmark = pytest.mark.integration
FINAL_TIMEOUT_S = 60.0
TOKEN = "to1tcmSFHeYY5KzyhOqVKMKb"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("messages")), redis_url, workers=1, concurrency=2,
                       VUQ_WEBHOOK_SECRET="whsec-messages") as system:
        yield system


@pytest.fixture(scope="module")
def anyone(stack: Stack) -> Iterator[celery.Celery]:
    """A publisher that can reach the broker and knows nothing of vuq but task names."""
    app = celery.Celery("anyone", broker=stack.settings.broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)
    yield app
    app.close()


HOSTILE: dict[str, tuple[str, list[Any], dict[str, Any]]] = {
    "a null job id": ("vuq.upload.chunk", [], {"job_id": None, "chunk": 1}),
    "a chunk as text": ("vuq.upload.chunk", [], {"job_id": "job-a", "chunk": "1"}),
    "a chunk as a boolean": ("vuq.upload.chunk", [], {"job_id": "job-a", "chunk": True}),
    "a job id with a slash": ("vuq.upload.chunk", [], {"job_id": "a/b", "chunk": 1}),
    "a job id with a newline": ("vuq.upload.finalize", [], {"job_id": "job-a\n"}),
    "a huge job id": ("vuq.upload.finalize", [], {"job_id": "x" * 20_000}),
    "positional arguments": ("vuq.upload.chunk", ["job-a", 1], {}),
    "an unknown argument": ("vuq.upload.finalize", [], {"job_id": "job-a", "force": True}),
    "a chunk for finalize": ("vuq.upload.finalize", [], {"job_id": "job-a", "chunk": 3}),
    "a webhook for a number": ("vuq.webhook.deliver", [], {"job_id": 7}),
    "a cleanup with a secret": ("vuq.job.cleanup", [], {"job_id": "job-a", "tokn": TOKEN}),
}


@pytest.mark.parametrize(("task", "args", "kwargs"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_message_vuq_could_not_have_written_touches_nothing(stack: Stack, anyone: celery.Celery, task: str,
                                                              args: list[Any], kwargs: dict[str, Any]) -> None:
    message_id = f"hostile-{uuid.uuid4().hex[:8]}"
    anyone.send_task(task, args=args, kwargs=kwargs, task_id=message_id, queue=stack.settings.queue)
    rejection = REJECTED_KEY.format(message_id=message_id)
    wait_for(lambda: stack.store.redis.exists(rejection), FINAL_TIMEOUT_S, "the message kept apart")
    kept = stack.store.redis.hgetall(rejection)
    assert kept["error"] and len(json.dumps(kept)) < 10_000 and TOKEN not in json.dumps(kept), kept
    named = kwargs.get("job_id")
    if isinstance(named, str):
        assert not stack.store.redis.exists(JOB_KEY.format(job_id=named))  # no record under the id it names
    assert not [m for m in stack.store.redis.zrange(DELAYED_KEY, 0, -1) if "hostile" in m or "job-a" in m]
    assert "Traceback" not in stack.logs()


def test_a_rejected_specs_id_is_never_silently_taken_by_a_later_enqueue(stack: Stack, anyone: celery.Celery) -> None:
    path, _ = stack.file("rejected.mp4", 1 * MIB, seed=1)
    job_id = f"rejected-{uuid.uuid4().hex[:8]}"
    anyone.send_task("vuq.upload.start", kwargs={"source": str(path), "job_id": job_id, "video": {"title": 5}},
                     queue=stack.settings.queue)
    job = stack.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and (job.error or "").startswith("video.title: must be a string")
    with pytest.raises(SpecError, match="already names a job with a different spec"):
        stack.enqueue(path, job_id=job_id, token=TOKEN)  # refused, not "done" with nothing queued


def test_a_huge_rejected_spec_keeps_a_bounded_masked_trace(stack: Stack, anyone: celery.Celery) -> None:
    message_id = f"huge-{uuid.uuid4().hex[:8]}"
    spec = {"source": "https://bucket.example/v.mp4?X-Amz-Signature=sekrit", "video": {"title": "t" * 5_000_000},
            "tokn": TOKEN, "job_id": "*\r\n*" + "x" * 20_000}
    anyone.send_task("vuq.upload.start", kwargs=spec, task_id=message_id, queue=stack.settings.queue)
    rejection = REJECTED_KEY.format(message_id=safe_message_id(message_id))
    wait_for(lambda: stack.store.redis.exists(rejection), FINAL_TIMEOUT_S, "the spec kept apart")
    kept = json.dumps(stack.store.redis.hgetall(rejection))
    assert len(kept) < 10_000 and "sekrit" not in kept and TOKEN not in kept, kept[:500]
    assert not [k for k in stack.store.redis.scan_iter("vuq:job:*") if "\r" in k or len(k) > 200]


def test_the_pump_sets_aside_a_member_it_cannot_read_and_publishes_the_others(stack: Stack) -> None:
    stack.store.redis.zadd(DELAYED_KEY, {'{"job_id": null, "chunk": 1}': 0, "not json": 0})
    path, digest = stack.file("after-poison.mp4", 6 * MIB, seed=2)
    job = stack.wait_final(stack.enqueue(path, chunk_size="5MiB"), FINAL_TIMEOUT_S)
    assert job.state == State.DONE and stack.emulator.video(job.video_id or "")["sha256"] == digest
    wait_for(lambda: stack.store.redis.zcard(UNREADABLE_KEY) >= 2, FINAL_TIMEOUT_S, "the members set aside")
    gauges = {m.name: m.samples[0].value for m in RedisStateCollector(stack.settings).collect() if m.samples}
    assert gauges["vuq_delayed_unreadable"] >= 2  # what a scrape shows (alert VuqDeferredStepsUnreadable)
    assert stack.store.redis.zcard(DELAYED_KEY) == 0 or all(
        m.startswith("{") and json.loads(m).get("job_id") for m in stack.store.redis.zrange(DELAYED_KEY, 0, -1))


@pytest.mark.parametrize(("status", "outcome"), [(204, "delivered"), (404, "failed")], ids=["delivered", "refused"])
def test_a_settled_webhook_is_not_delivered_again_when_asked_by_name_only_by_vuq_webhook(
        stack: Stack, anyone: celery.Celery, status: int, outcome: str) -> None:
    path, _ = stack.file("hooked.mp4", 1 * MIB, seed=3)
    with receiving(status=status) as receiver:
        job_id = stack.enqueue(path, callback_url=receiver.url)
        wait_for(lambda: receiver.requests, FINAL_TIMEOUT_S, "the webhook")
        wait_for(lambda: (stack.store.get(job_id).callback or "").startswith(outcome),  # type: ignore[union-attr]
                 FINAL_TIMEOUT_S, "the outcome recorded")
        recorded = stack.store.get(job_id).callback  # type: ignore[union-attr]
        message_ids = [f"again-{uuid.uuid4().hex[:8]}" for _ in range(3)]
        for message_id in message_ids:
            anyone.send_task("vuq.webhook.deliver", kwargs={"job_id": job_id}, task_id=message_id,
                             queue=stack.settings.queue)
        wait_for(lambda: all(f"{m}] succeeded" in stack.logs() for m in message_ids), FINAL_TIMEOUT_S,
                 "the messages handled")
        assert len(receiver.requests) == 1  # a replay with a fresh signature is exactly what must not happen
        assert stack.store.get(job_id).callback == recorded  # type: ignore[union-attr]  # the outcome kept
        again = vuq(stack, "webhook", job_id)  # an operator's decision: one delivery more
        assert again.returncode == 0, again.stderr
        wait_for(lambda: len(receiver.requests) == 2, FINAL_TIMEOUT_S, "the webhook delivered again")
    signatures = [headers["x-vuq-signature"] for headers, _ in receiver.requests]
    assert signatures[0] != signatures[1]  # signed anew
    assert json.loads(receiver.requests[1][1])["job_id"] == job_id


def test_many_jobs_enqueued_at_once_all_run_and_a_bad_one_is_refused_in_place(stack: Stack) -> None:
    paths = [stack.file(f"bulk-{n}.mp4", 64 * 1024, seed=10 + n) for n in range(20)]
    batch, token = uuid.uuid4().hex[:6], stack.emulator.create_upload_token()
    specs: list[dict[str, Any]] = [{"source": str(path), "token": token, "job_id": f"bulk-{batch}-{n}"}
                                   for n, (path, _) in enumerate(paths)]
    specs.insert(7, {"source": str(paths[0][0]), "chunk_size": "1MiB"})
    results = enqueue_many(specs, settings=stack.settings)
    assert isinstance(results[7], SpecError) and results[7].field == "chunk_size"
    assert [r for r in results if isinstance(r, str)] == [f"bulk-{batch}-{n}" for n in range(20)]
    videos = {}
    for n, (_, digest) in enumerate(paths):
        job = stack.wait_final(f"bulk-{batch}-{n}", FINAL_TIMEOUT_S)
        assert job.state == State.DONE, job
        assert stack.emulator.video(job.video_id or "")["sha256"] == digest
        videos[job.job_id] = job.video_id
    again = enqueue_many([s for i, s in enumerate(specs) if i != 7], settings=stack.settings)
    assert again == list(videos)  # the same ids: the same jobs
    assert all(stack.store.get(j).video_id == v for j, v in videos.items())  # type: ignore[union-attr]
    assert len(stack.emulator.videos()) == len({v for v in videos.values()} | {
        v["videoId"] for v in stack.emulator.videos()})  # nothing ran twice: no new video


def test_vuq_enqueue_from_a_file_and_standard_input(stack: Stack) -> None:
    """One job id per spec line in order, an empty line where a line is refused (stderr names the line and the
    field), exit status 1 then; the good lines run; the same file again gives the same jobs."""
    batch, token = uuid.uuid4().hex[:6], stack.emulator.create_upload_token()
    paths = [stack.file(f"from-{batch}-{n}.mp4", 64 * 1024, seed=40 + n) for n in range(3)]
    lines = [json.dumps({"source": str(paths[0][0]), "token": token, "job_id": f"from-{batch}-0"}), "",
             json.dumps({"source": str(paths[1][0]), "token": token, "job_id": f"from-{batch}-1",
                         "video": {"title": "second"}}),
             json.dumps({"source": str(paths[2][0]), "token": token, "chunk_size": "1MiB"}),
             "{not json",
             json.dumps({"source": str(paths[2][0]), "token": token, "job_id": f"from-{batch}-2"})]
    jobs_file = stack.root / f"from-{batch}.jsonl"
    jobs_file.write_text("\n".join(lines) + "\n")
    out = _vuq(stack, "enqueue", "--from", str(jobs_file))
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines() == [f"from-{batch}-0", f"from-{batch}-1", "", "", f"from-{batch}-2"]
    assert "line 4: chunk_size" in out.stderr and "line 5: spec: not JSON" in out.stderr
    assert "2 of 5 line(s) refused" in out.stderr and token not in out.stdout + out.stderr
    for n, (_, digest) in enumerate(paths):
        job = stack.wait_final(f"from-{batch}-{n}", FINAL_TIMEOUT_S)
        assert job.state == State.DONE and stack.emulator.video(job.video_id or "")["sha256"] == digest
    assert stack.store.get(f"from-{batch}-1").title == "second"  # type: ignore[union-attr]
    good = "\n".join(line for n, line in enumerate(lines) if n not in (3, 4)) + "\n"
    again = _vuq(stack, "enqueue", "--from", "-", stdin=good)
    assert again.returncode == 0 and again.stdout.splitlines() == [f"from-{batch}-{n}" for n in range(3)]
    assert stack.store.get(f"from-{batch}-0").state == State.DONE  # type: ignore[union-attr]  # not run again


def _vuq(stack: Stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.console", *args], env=stack.env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)
