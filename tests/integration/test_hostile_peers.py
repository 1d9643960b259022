"""Hostile sources, receivers and file systems against real workers (issue #21).

One worker process on the threads pool (no Celery time limit to fall back on), four slots, one retry.
Sources that trickle a byte at a time, never answer, answer another range or another ETag; webhook
receivers that trickle, never answer, or answer 400 MiB; a source over VUQ_MAX_SOURCE_BYTES; a file
swapped for a symbolic link to a secret while the step that opened it waits on api.video; names
and records full of terminal escapes. Each attack ends in a one-line error (or, for the huge answer,
a delivery that cost the worker nothing), a good job enqueued behind them all still finishes,
byte-identical, and the worker's memory stays flat.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import celery
import pytest

from tasks.constants import MIB, TASK_WEBHOOK
from tasks.job.record import JobRecord, State
from tasks.job.spec import UploadSpec, Video
from tests.support.hostile import hostile_receiver, hostile_source
from tests.support.stack import Stack, running_stack, vuq
from tests.support.waiting import wait_for

WINDOW_S = 2  # VUQ_SOURCE_WINDOW_S: a silent source is given up after this long
MAX_SOURCE = 24 * MIB  # VUQ_MAX_SOURCE_BYTES here
CALLBACK_DEADLINE_S = 15  # tasks.outbound.callbacks.DEADLINE_S
ESC, RLO = "\x1b", "\u202e"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    tmp = Path(tmp_path_factory.mktemp("hostile"))
    (tmp / "logs").mkdir()
    (tmp / "remote").mkdir()
    (tmp / "outside").mkdir()
    env = {"VUQ_MAX_RETRIES": "1", "VUQ_SOURCE_WINDOW_S": str(WINDOW_S), "VUQ_SOURCE_MIN_BYTES_PER_S": "64KiB",
           "VUQ_SOURCE_CHUNK_DEADLINE_S": "20", "VUQ_MAX_SOURCE_BYTES": str(MAX_SOURCE)}
    with running_stack(tmp, redis_url, workers=1, concurrency=4, pool="threads", **env) as system:
        yield system
        worker = system.workers[0]
        assert worker.alive, worker.log()[-3000:]
        assert "Traceback" not in worker.log(), worker.log()[-5000:]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def ended(stack: Stack, job_id: str, timeout_s: float = 120.0) -> JobRecord:
    return stack.wait_final(job_id, timeout_s)


def callback_settled(stack: Stack, job_id: str, timeout_s: float = 120.0) -> JobRecord:
    def settled() -> JobRecord | None:
        job = stack.store.get(job_id)
        return job if job and job.callback and not job.callback.startswith("retrying") else None

    return wait_for(settled, timeout_s, f"job {job_id}'s webhook to settle")


def one_line(text: str | None) -> str:
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def test_hostile_peers_fail_alone_and_the_worker_keeps_serving(stack: Stack, tmp_path: Path) -> None:
    remote = stack.root.parent / "remote"
    warm, warm_digest = stack.file("warm-up.mp4", 6 * MIB, seed=40)
    assert ended(stack, stack.enqueue(warm, chunk_size="5MiB")).state == State.DONE
    worker = stack.workers[0]
    baseline = rss_bytes(worker.pid)
    for i, behaviour in enumerate(("trickle", "silent", "wrong-range", "changed-etag")):
        (remote / f"{behaviour}.mp4").write_bytes(os.urandom(6 * MIB + i))
    small, _ = stack.file("small.mp4", MIB, seed=41)
    big, _ = stack.file("too-big.mp4", MAX_SOURCE + 1, seed=42)
    good, good_digest = stack.file("good.mp4", 11 * MIB, seed=43)
    with ExitStack() as peers:
        sources = {b: peers.enter_context(hostile_source(remote, b, interval_s=1.0))
                   for b in ("trickle", "silent", "wrong-range", "changed-etag")}
        receivers = {b: peers.enter_context(hostile_receiver(b, interval_s=1.0)) for b in ("trickle", "silent", "huge")}
        from_sources = {b: stack.enqueue(f"{peer.url}/{b}.mp4?X-Amz-Signature=hidden", chunk_size="5MiB")
                        for b, peer in sources.items()}
        to_receivers = {b: stack.enqueue(small, callback_url=peer.url) for b, peer in receivers.items()}
        too_big = stack.enqueue(big, chunk_size="5MiB")
        good_id = stack.enqueue(good, chunk_size="5MiB")  # behind every attack in the queue

        good_job = ended(stack, good_id)
        assert good_job.state == State.DONE and stack.emulator.video(good_job.video_id)["sha256"] == good_digest
        attacks_left = [b for b, job_id in to_receivers.items() if not (stack.store.get(job_id).callback or "")
                        .startswith(("failed", "delivered"))]
        assert attacks_left, "the good job should have finished while slow receivers still held their slots"
        silent = receivers["silent"]  # while a delivery waits on it, three more are asked for by name
        wait_for(lambda: any(v.ended is None for v in silent.visits), 60, "a delivery to the silent receiver")
        asked = [f"deliver-again-{n}-{os.getpid()}" for n in range(3)]
        with celery.Celery("anyone", broker=stack.settings.broker_url, set_as_current=False) as anyone:
            for task_id in asked:
                anyone.send_task(TASK_WEBHOOK, kwargs={"job_id": to_receivers["silent"]}, task_id=task_id,
                                 queue=stack.settings.queue)

        jobs = {b: ended(stack, job_id) for b, job_id in from_sources.items()}
        hooks = {b: callback_settled(stack, job_id) for b, job_id in to_receivers.items()}
        refused = ended(stack, too_big)
    grown = rss_bytes(worker.pid) - baseline

    for behaviour in ("trickle", "silent"):  # stalled: retryable, retried once with backoff, then given up
        job = jobs[behaviour]
        assert job.state == State.FAILED and job.error_reason == "source_stalled" and job.retries == 1, job
        assert job.error_retryable and "hidden" not in one_line(job.error)
        assert job.error.startswith("gave up after 2 attempts: source: http://127.0.0.1:")
    assert f"sent nothing for {WINDOW_S} s" in (jobs["silent"].error or "")
    assert "below the minimum of 65536 bytes/s" in (jobs["trickle"].error or "")
    for behaviour in ("wrong-range", "changed-etag"):  # changed: permanent, not retried
        job = jobs[behaviour]
        assert job.state == State.FAILED and job.retries == 0 and not job.error_retryable, job
        assert "changed since the job started" in one_line(job.error) and job.error_reason == "bad_source"
    for behaviour in ("trickle", "silent"):
        assert hooks[behaviour].callback == (f"failed: callback {receivers[behaviour].url.split('?')[0]}?*** "
                                             f"did not answer within {CALLBACK_DEADLINE_S} s"), hooks[behaviour]
        visits = sorted(receivers[behaviour].visits, key=lambda v: v.began)
        assert len(visits) == 2, visits  # VUQ_MAX_RETRIES + 1 attempts, the ones asked by name included
        assert all(v.stayed_s < CALLBACK_DEADLINE_S + 3 for v in visits), visits
        # one at a time: the next began only once the one before had run to its deadline (the receiver notices
        # the hang-up up to interval_s later, at its next byte)
        assert all(b.began >= a.began + CALLBACK_DEADLINE_S - 0.2 for a, b in itertools.pairwise(visits)), visits
    assert all(f"{task_id}] succeeded" in stack.logs() for task_id in asked)
    assert "a delivery of its webhook is under way elsewhere" in stack.logs()
    assert hooks["huge"].callback == "delivered (200)" and hooks["huge"].state == State.DONE
    assert receivers["huge"].visits[0].sent < 100 * MIB  # the worker hung up long before the 400 MiB
    assert refused.state == State.FAILED and refused.retries == 0
    assert f"is {MAX_SOURCE + 1} bytes" in one_line(refused.error) and "VUQ_MAX_SOURCE_BYTES" in refused.error
    assert grown < 100 * MIB, f"the worker grew by {grown / MIB:.0f} MiB"
    assert stack.wait_final(stack.enqueue(warm, chunk_size="5MiB")).state == State.DONE  # still serving
    assert stack.emulator.video(stack.store.get(good_id).video_id)["sha256"] == good_digest  # nothing lost
    _ = warm_digest


def test_a_file_swapped_for_a_symlink_while_its_step_waits_on_api_video_is_not_read(stack: Stack) -> None:
    """The start step opens the file, then asks api.video for the video (1.5 s of latency here): the file
    is replaced by a link to a secret of the same size during that wait. Reading by path again (the old
    way) would upload the secret as chunk 1; the step reads what it opened, and the next step refuses."""
    secret = stack.root.parent / "outside" / "environ"
    secret.write_bytes(b"VUQ_API_KEY=not-for-upload\n" * (11 * MIB // 27) + b"x" * (11 * MIB % 27))
    path, _ = stack.file("swapped.mp4", 11 * MIB, seed=44)
    original = path.read_bytes()
    stack.emulator.set_faults(latency_ms=[1500, 1500])
    try:
        job_id = stack.enqueue(path, chunk_size="5MiB")
        wait_for(lambda: (job := stack.store.get(job_id)) and job.container_pending, 30,
                 "the start step to ask api.video for the video", poll_s=0.01)
        link = path.with_name("swapped.tmp")
        link.symlink_to(secret)
        os.replace(link, path)  # atomic: the path is a link to the secret from now on
        job = ended(stack, job_id, 60)
    finally:
        stack.emulator.set_faults(latency_ms=[0, 0])
    assert job.state == State.FAILED and job.next_chunk == 1, job
    assert "outside the allowed roots" in one_line(job.error) and job.retries == 0
    received = (stack.emulator.data_dir / "videos" / job.video_id / "source").read_bytes()
    assert received[:5 * MIB] == original[:5 * MIB]
    assert b"VUQ_API_KEY" not in received


def test_a_file_swapped_for_a_fifo_fails_at_once_and_blocks_nobody(stack: Stack) -> None:
    path, _ = stack.file("fifo-later.mp4", 11 * MIB, seed=45)
    stack.emulator.set_faults(latency_ms=[1000, 1000])
    try:
        job_id = stack.enqueue(path, chunk_size="5MiB")
        wait_for(lambda: (job := stack.store.get(job_id)) and job.container_pending, 30,
                 "the start step to ask api.video for the video", poll_s=0.01)
        path.unlink()
        os.mkfifo(path)  # nobody will ever write to it: an open() without O_NONBLOCK would wait for ever
        began = time.monotonic()
        job = ended(stack, job_id, 60)
    finally:
        stack.emulator.set_faults(latency_ms=[0, 0])
    assert job.state == State.FAILED and "is not a regular file" in one_line(job.error) and job.retries == 0
    assert time.monotonic() - began < 20
    other, digest = stack.file("after-fifo.mp4", MIB, seed=46)
    done = ended(stack, stack.enqueue(other), 30)
    assert done.state == State.DONE and stack.emulator.video(done.video_id)["sha256"] == digest


# -- text that would drive the terminal -----------------------------------------------------------------


def test_escapes_in_names_and_records_are_shown_not_played(stack: Stack) -> None:
    evil = stack.root.parent / "outside" / f"{ESC}]0;owned{chr(7)}{RLO}4pm.exe"
    evil.write_bytes(b"x" * 1024)
    link = stack.root / "innocent.mp4"
    link.symlink_to(evil)
    failed = ended(stack, stack.enqueue(link), 30)
    assert failed.state == State.FAILED and ESC in (failed.error or "")  # the error quotes the real name
    old = UploadSpec(str(stack.root / "old.mp4"), video=Video(title=f"{ESC}[2J{ESC}[31mred{RLO}txt.mp4"),
                     job_id="written-before-validation")
    assert stack.store.create(old).created  # a record from before specs were checked: no message sent
    shown = [vuq(stack, *command, COLUMNS="200") for command in (
        ("status", failed.job_id), ("status", "written-before-validation"), ("jobs", "--limit", "50"))]
    for run in shown:
        assert run.returncode == 0, run.stderr
        assert ESC not in run.stdout and RLO not in run.stdout and chr(7) not in run.stdout, run.stdout
    assert "\\x1b]0;owned\\x07\\u202e4pm.exe" in shown[0].stdout
    assert "title     \\x1b[2J\\x1b[31mred\\u202etxt.mp4" in shown[1].stdout
    assert "\\x1b[2J" in shown[2].stdout


def test_a_title_with_an_escape_is_refused_at_enqueue_naming_the_field(stack: Stack) -> None:
    path, _ = stack.file("titled.mp4", MIB, seed=47)
    run = vuq(stack, "enqueue", str(path), "--title", f"Talk{ESC}[31m", COLUMNS="200")
    assert run.returncode == 2 and "video.title" in run.stderr and "U+001B (escape)" in run.stderr, run.stderr
    assert ESC not in run.stderr
