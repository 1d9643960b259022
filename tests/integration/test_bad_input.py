"""Bad input, each answered by a clear error that names the problem.

A job with a bad source or token ends ``failed`` at once (no retries for a permanent
problem, bounded attempts for a transient one); a bad spec is refused at enqueue with
the field named and nothing written (or, sent by another language, becomes a ``failed``
record naming the field); a dead Redis is an ``EnqueueError`` that leaves nothing behind;
an API key api.video rejects at finalize keeps the upload and the job resumes once the
key is fixed. Through all of it the workers keep serving: the last job finishes identical.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import celery
import httpx
import pytest

from tasks import resume_upload
from tasks.constants import JOB_INDEX_KEY, JOB_METADATA_KEY, JOB_NONCE_METADATA_KEY, MIB, REJECTED_KEY
from tasks.errors import EnqueueError, SpecError
from tasks.job.record import JobRecord, State
from tasks.producer import enqueue_upload
from tasks.settings import Settings
from tests.support.checks import videos_of
from tests.support.ports import free_port
from tests.support.range_server import serving
from tests.support.receiver import receiving
from tests.support.secrets import has_token, places_showing
from tests.support.stack import Stack, running_stack, vuq
from tests.support.waiting import wait_for

MAX_RETRIES = 2  # a transient problem gives up after 3 attempts, quickly
FINAL_TIMEOUT_S = 30.0


# -- workers that cannot read a chmod-000 file -----------------------------------------------------
# Tests run as root here, and root reads every file. Running the workers as ``nobody`` is not an
# option on this host (the venv's interpreter lives under /root, mode 0700), so the workers stay
# root but run without the two capabilities that let root ignore file modes: then a file with mode
# 000 is as unreadable for them as for anyone.
_DROP_DAC = ("--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search")


def _unprivileged_prefix() -> tuple[tuple[str, ...], str | None]:
    """The worker command prefix for the unreadable-file cases, or why they cannot run."""
    if os.geteuid() != 0:
        return (), None
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return (), "tests run as root and setpriv is missing, so a chmod 000 file is readable by the workers"
    prefix = (setpriv, *_DROP_DAC)
    probe_dir = Path(tempfile.mkdtemp(prefix="vuq-probe-"))
    try:
        probe = probe_dir / "unreadable"
        probe.write_bytes(b"x")
        probe.chmod(0)
        run = subprocess.run([*prefix, sys.executable, "-c", "import sys; open(sys.argv[1], 'rb')", str(probe)],
                             capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(probe_dir)
    if "PermissionError" not in run.stderr:
        return (), f"could not make a chmod 000 file unreadable for root workers: {run.stderr.strip()[-300:]}"
    return prefix, None


WORKER_PREFIX, UNREADABLE_SKIP = _unprivileged_prefix()


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """Two workers (concurrency 2) that retry a transient problem only twice."""
    tmp = Path(tmp_path_factory.mktemp("bad"))
    (tmp / "outside").mkdir()
    with running_stack(tmp, redis_url, workers=2, concurrency=2, worker_prefix=WORKER_PREFIX,
                       VUQ_MAX_RETRIES=str(MAX_RETRIES)) as stack:
        yield stack
        for worker in stack.workers:  # bad input never takes a worker down
            assert worker.proc.poll() is None, f"worker {worker.name} exited:\n{worker.log()[-3000:]}"


@pytest.fixture(scope="module")
def foreign(redis_url: str) -> Iterator[celery.Celery]:
    """A producer in "another language": a bare Celery app that only knows the task name."""
    app = celery.Celery("foreign-producer", broker=redis_url, set_as_current=False)
    app.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)
    try:
        yield app
    finally:
        app.close()


def outside_file(stack: Stack) -> Path:
    """A readable file next to the allowed root, not under it."""
    path = stack.root.parent / "outside" / "secret.mp4"
    if not path.exists():
        path.write_bytes(os.urandom(64 * 1024))
    return path


def cursor_at_least(stack: Stack, job_id: str, chunk: int) -> Callable[[], JobRecord | None]:
    return lambda: ((j := stack.store.get(job_id)) and j.next_chunk >= chunk and j) or None


# -- sources and tokens the workers refuse ------------------------------------------------------------
Maker = Callable[[Stack, ExitStack], str]


def _missing(s: Stack, _: ExitStack) -> str:
    return str(s.root / "no-such-file.mp4")


def _directory(s: Stack, _: ExitStack) -> str:
    (s.root / "a-directory.mp4").mkdir(exist_ok=True)
    return str(s.root / "a-directory.mp4")


def _empty(s: Stack, _: ExitStack) -> str:
    (s.root / "empty.mp4").write_bytes(b"")
    return str(s.root / "empty.mp4")


def _unreadable(s: Stack, _: ExitStack) -> str:
    path, _digest = s.file("unreadable.mp4", MIB, seed=1)
    path.chmod(0)
    return str(path)


def _unreadable_dir(s: Stack, _: ExitStack) -> str:
    path, _digest = s.file("locked/inside.mp4", MIB, seed=2)
    path.parent.chmod(0)
    return str(path)


def _fifo(s: Stack, _: ExitStack) -> str:
    path = s.root / "a-fifo.mp4"
    if not path.exists():
        os.mkfifo(path)
    return str(path)


def _outside(s: Stack, _: ExitStack) -> str:
    return str(outside_file(s))


def _system_file(s: Stack, _: ExitStack) -> str:
    return "/etc/passwd"


def _dotdot(s: Stack, _: ExitStack) -> str:
    return f"{s.root}/../outside/{outside_file(s).name}"


def _dotdot_file_url(s: Stack, _: ExitStack) -> str:
    return f"file://{s.root}/%2E%2E/outside/{outside_file(s).name}"


def _symlink_out(s: Stack, _: ExitStack) -> str:
    link = s.root / "link-out.mp4"
    if not link.is_symlink():
        link.symlink_to(outside_file(s))
    return str(link)


def _symlinked_dir_out(s: Stack, _: ExitStack) -> str:
    link = s.root / "dir-out"
    if not link.is_symlink():
        link.symlink_to(outside_file(s).parent, target_is_directory=True)
    return str(link / outside_file(s).name)


def _relative(s: Stack, _: ExitStack) -> str:
    return "videos/talk.mp4"


def _file_url_with_host(s: Stack, _: ExitStack) -> str:
    s.file("hosted.mp4", MIB, seed=3)
    return f"file://nas.example{s.root}/hosted.mp4"


def _no_range(s: Stack, ctx: ExitStack) -> str:
    path, _digest = s.file("norange.mp4", 6 * MIB, seed=4)
    return f"{ctx.enter_context(serving(path.parent, ranges=False))}/{path.name}"


def _http_404(s: Stack, ctx: ExitStack) -> str:
    return f"{ctx.enter_context(serving(s.root))}/missing.mp4?X-Amz-Signature=hidden"


def _http_dead(s: Stack, _: ExitStack) -> str:
    return f"http://127.0.0.1:{free_port()}/talk.mp4"


def _good_source(s: Stack, _: ExitStack) -> str:
    path, _digest = s.file("fine.mp4", MIB, seed=5)
    return str(path)


def _unknown_token(s: Stack) -> str:
    return "to" + "0" * 22


def _expired_token(s: Stack) -> str:
    token = s.emulator.create_upload_token(ttl=1)
    with httpx.Client(base_url=s.emulator.url, headers=s.emulator.auth_header, timeout=10) as client:
        wait_for(lambda: client.get(f"/upload-tokens/{token}").status_code == 404, 10, "the token to expire")
    return token


def _deleted_token(s: Stack) -> str:
    token = s.emulator.create_upload_token()
    with httpx.Client(base_url=s.emulator.url, headers=s.emulator.auth_header, timeout=10) as client:
        assert client.delete(f"/upload-tokens/{token}").status_code == 204
    return token


@dataclass(frozen=True)
class Refused:
    """A job the workers fail at once: its error holds ``expect`` (lower case)."""

    source: Maker
    expect: str
    token: Callable[[Stack], str] | None = None
    attempts: int = 1  # > 1: a transient problem, retried at most VUQ_MAX_RETRIES times
    unreadable: bool = False


WORKER_CASES = {
    "missing file": Refused(_missing, "no such file"),
    "directory": Refused(_directory, "is a directory"),
    "empty file": Refused(_empty, "the source is empty (0 bytes)"),
    "unreadable file": Refused(_unreadable, "is not readable by the worker", unreadable=True),
    "file in an unreadable directory": Refused(_unreadable_dir, "permission denied", unreadable=True),
    "fifo": Refused(_fifo, "is not a regular file"),
    "outside the roots": Refused(_outside, "outside the allowed roots"),
    "system file": Refused(_system_file, "outside the allowed roots"),
    "dot-dot": Refused(_dotdot, "outside the allowed roots"),
    "dot-dot in a file url": Refused(_dotdot_file_url, "outside the allowed roots"),
    "symlink out of the roots": Refused(_symlink_out, "outside the allowed roots"),
    "symlinked directory out of the roots": Refused(_symlinked_dir_out, "outside the allowed roots"),
    "relative path": Refused(_relative, "is not an absolute path"),
    "file url naming a host": Refused(_file_url_with_host, "only local files work"),
    "http without range": Refused(_no_range, "does not support range requests"),
    "http 404": Refused(_http_404, "answered 404"),
    "http unreachable": Refused(_http_dead, f"gave up after {MAX_RETRIES + 1} attempts: source: cannot reach",
                                attempts=MAX_RETRIES + 1),
}
TokenMaker = Callable[[Stack], str]
TOKEN_CASES: dict[str, TokenMaker] = {"unknown token": _unknown_token, "expired token": _expired_token,
                                      "deleted token": _deleted_token}


@pytest.mark.parametrize("case", WORKER_CASES.values(), ids=WORKER_CASES.keys())
def test_a_bad_source_or_token_fails_the_job_clearly(bad: Stack, case: Refused) -> None:
    if case.unreadable and UNREADABLE_SKIP:
        pytest.skip(UNREADABLE_SKIP)
    with ExitStack() as ctx:
        source = case.source(bad, ctx)
        token = {"token": case.token(bad)} if case.token else {}
        job = bad.wait_final(bad.enqueue(source, chunk_size="5MiB", **token), FINAL_TIMEOUT_S)
    assert job.state == State.FAILED
    error = job.error or ""
    assert case.expect in error.lower(), error
    assert "internal error" not in error and "X-Amz-Signature" not in error
    if case.attempts == 1:  # permanent: failed at once, and resuming would not help
        assert job.retries == 0 and not job.error_retryable, job
    else:  # transient: bounded attempts, then failed and resumable
        assert job.retries == case.attempts - 1 and job.error_retryable, job


LOOP_CASES = {"symlink loop": "symlink loop", "NUL byte in the path": "null byte"}


@pytest.mark.parametrize("problem", LOOP_CASES.values(), ids=LOOP_CASES.keys())
def test_an_unresolvable_path_is_a_source_error(bad: Stack, problem: str) -> None:
    if problem == "symlink loop":
        first, second = bad.root / "loop-a.mp4", bad.root / "loop-b.mp4"
        if not first.is_symlink():
            first.symlink_to(second)
            second.symlink_to(first)
        source = str(first)
    else:
        source = f"{bad.root}/nul\x00byte.mp4"
    try:
        job_id = bad.enqueue(source)
    except SpecError as refused:  # refusing it at enqueue is as good a fix
        assert refused.field == "source" and problem in str(refused).lower(), refused
        return
    job = bad.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and problem in (job.error or "").lower() and job.retries == 0
    assert (job.error or "").startswith("source:") and not job.error_retryable, job


def test_a_source_that_changes_size_mid_upload_fails_the_job(bad: Stack) -> None:
    path, _ = bad.file("growing.mp4", 20 * MIB, seed=6)
    bad.emulator.set_faults(latency_ms=[300, 300])
    try:
        job_id = bad.enqueue(path, chunk_size="5MiB")
        wait_for(cursor_at_least(bad, job_id, 1), FINAL_TIMEOUT_S, "the first chunk")
        with open(path, "ab") as handle:
            handle.write(b"appended while uploading")
        job = bad.wait_final(job_id, FINAL_TIMEOUT_S)
    finally:
        bad.emulator.set_faults(latency_ms=[0, 0])
    assert job.state == State.FAILED
    assert "changed" in (job.error or "") and str(path) in (job.error or ""), job.error
    assert job.retries == 0 and not job.error_retryable and 1 <= job.next_chunk < 4


# -- specs refused at enqueue ---------------------------------------------------------------------
LONG = "x" * 257
ENQUEUE_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "chunk size below 5 MiB": ({"chunk_size": 5 * MIB - 1}, "chunk_size", "outside 5 MiB..128 MiB"),
    "chunk size above 128 MiB": ({"chunk_size": "129MiB"}, "chunk_size", "outside 5 MiB..128 MiB"),
    "chunk size not a size": ({"chunk_size": "big"}, "chunk_size", "not a size"),
    "chunk size a float": ({"chunk_size": 5.5 * MIB}, "chunk_size", "must be a number of bytes"),
    "chunk size a bool": ({"chunk_size": True}, "chunk_size", "must be a number of bytes"),
    "title too long": ({"video": {"title": LONG}}, "video.title", "at most 256"),
    "title not UTF-8": ({"video": {"title": "caf\udce9"}}, "video.title", "is not valid utf-8"),
    "title not a string": ({"video": {"title": 42}}, "video.title", "must be a string, not int"),
    "description too long": ({"video": {"description": "d" * 5001}}, "video.description", "at most 5000"),
    "too many metadata pairs": ({"video": {"metadata": {f"k{i}": "v" for i in range(51)}}},
                                "video.metadata", "at most 50"),
    "metadata value too long": ({"video": {"metadata": {"speaker": LONG}}}, "video.metadata[speaker]",
                                "at most 256"),
    "metadata key too long": ({"video": {"metadata": {LONG: "v"}}}, "video.metadata[0].key", "at most 256"),
    "metadata not pairs": ({"video": {"metadata": "speaker=Ada"}}, "video.metadata", "object of strings"),
    "tags not a list": ({"video": {"tags": "conf"}}, "video.tags", "must be a list of strings, not str"),
    "too many tags": ({"video": {"tags": [f"t{i}" for i in range(51)]}}, "video.tags", "at most 50"),
    "public not a bool": ({"video": {"public": "yes"}}, "video.public", "must be true or false"),
    "unknown video field": ({"video": {"titel": "typo"}}, "video.titel", "unknown field"),
    "video not an object": ({"video": ["title"]}, "video", "must be an object"),
    "callback not http": ({"callback_url": "ftp://hooks.example/done"}, "callback_url", "http:// or https://"),
    "callback javascript": ({"callback_url": "javascript:alert(1)"}, "callback_url", "http:// or https://"),
    "callback without host": ({"callback_url": "https:///done"}, "callback_url", "http:// or https://"),
    "source unsupported scheme": ({"source": "ftp://files.example/talk.mp4"}, "source", "unsupported scheme"),
    "source empty": ({"source": "  "}, "source", "must not be empty"),
    "token blank": ({"token": "   "}, "token", "must not be empty"),
    "job id with a slash": ({"job_id": "../../etc"}, "job_id", "may hold only letters"),
    "job id too long": ({"job_id": "j" * 129}, "job_id", "at most 128"),
}


@pytest.mark.parametrize(("spec", "field", "problem"), ENQUEUE_CASES.values(), ids=ENQUEUE_CASES.keys())
def test_a_bad_spec_is_refused_at_enqueue_and_nothing_is_written(bad: Stack, spec: dict[str, Any], field: str,
                                                                 problem: str) -> None:
    job_id = f"refused-{uuid.uuid4().hex[:8]}"
    spec = {"token": "to1tcmSFHeYY5KzyhOqVKMKb", "job_id": job_id, **spec}
    source = spec.pop("source", str(bad.root / "talk.mp4"))
    with pytest.raises(SpecError) as refused:
        enqueue_upload(source, settings=bad.settings, **spec)
    assert refused.value.field == field
    assert str(refused.value).startswith(f"{field}: ") and problem.lower() in str(refused.value).lower(), refused.value
    assert isinstance(refused.value, ValueError)
    for written in {job_id, spec["job_id"]}:
        assert bad.store.get(written) is None
        assert bad.store.redis.zscore(JOB_INDEX_KEY, written) is None


# -- malformed specs sent by another language -------------------------------------------------------
DROP = object()  # leave the field out
FOREIGN_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "missing source": ({"source": DROP}, "source: is required"),
    "source of the wrong type": ({"source": ["/videos/a.mp4"]}, "source: must be a string, not list"),
    "chunk size of the wrong type": ({"chunk_size": [5]}, "chunk_size: must be a number of bytes"),
    "chunk size too small": ({"chunk_size": "1MiB"}, "chunk_size: 1048576 bytes is outside 5 MiB..128 MiB"),
    "tags of the wrong type": ({"video": {"tags": "conf"}}, "video.tags: must be a list of strings, not str"),
    "unknown field": ({"urgency": "high"}, "urgency: unknown field"),
    "unknown video field": ({"video": {"tittle": "typo"}}, "video.tittle: unknown field"),
    "newer spec version": ({"version": 2}, "version: unsupported spec version 2"),
    "title not UTF-8": ({"video": {"title": "caf\udce9"}}, "video.title: is not valid UTF-8 text"),
    "callback not http": ({"callback_url": "mailto:ops@example.com"}, "callback_url: must be an http://"),
}


@pytest.mark.parametrize(("spec", "error"), FOREIGN_CASES.values(), ids=FOREIGN_CASES.keys())
def test_a_malformed_spec_from_another_language_fails_its_job(bad: Stack, foreign: celery.Celery,
                                                               spec: dict[str, Any], error: str) -> None:
    job_id = f"foreign-{uuid.uuid4().hex[:8]}"
    kwargs = {"source": str(bad.root / "talk.mp4"), "token": "to1tcmSFHeYY5KzyhOqVKMKb", "job_id": job_id, **spec}
    kwargs = {name: value for name, value in kwargs.items() if value is not DROP}
    foreign.send_task("vuq.upload.start", kwargs=kwargs, queue=bad.settings.queue)
    job = bad.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and (job.error or "").startswith(error), job.error
    assert job.retries == 0 and not job.error_retryable
    assert not has_token(bad.store, job_id)  # a rejected spec's token is not kept


def test_a_malformed_spec_without_a_job_id_is_recorded_under_its_task_id(bad: Stack,
                                                                         foreign: celery.Celery) -> None:
    task_id = f"task-{uuid.uuid4().hex[:8]}"
    foreign.send_task("vuq.upload.start", kwargs={"token": "to1tcmSFHeYY5KzyhOqVKMKb"}, task_id=task_id,
                      queue=bad.settings.queue)
    job = bad.wait_final(task_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and (job.error or "").startswith("source: is required"), job.error
    assert job.retries == 0 and not has_token(bad.store, task_id)


# -- Redis unavailable at enqueue -------------------------------------------------------------------
def test_enqueue_with_redis_down_says_so_and_writes_nothing(bad: Stack) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(broker_url=dead, redis_url=dead, queue=bad.settings.queue)
    with pytest.raises(EnqueueError) as refused:
        enqueue_upload(str(bad.root / "talk.mp4"), token="to1tcmSFHeYY5KzyhOqVKMKb", settings=settings)
    message = str(refused.value)
    assert "cannot reach Redis at " + dead.removeprefix("redis://").removesuffix("/0") in message, message
    assert "to1tcmSFHeYY5KzyhOqVKMKb" not in message


def test_enqueue_with_the_broker_down_leaves_no_half_written_job(bad: Stack) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(broker_url=dead, redis_url=bad.settings.redis_url, queue=bad.settings.queue)
    job_id = f"orphan-{uuid.uuid4().hex[:8]}"
    with pytest.raises(EnqueueError) as refused:
        enqueue_upload(str(bad.root / "talk.mp4"), token="to1tcmSFHeYY5KzyhOqVKMKb", job_id=job_id,
                       settings=settings)
    assert "cannot reach the broker (Redis) at " + dead.removeprefix("redis://").removesuffix("/0") in str(
        refused.value), refused.value
    assert bad.store.get(job_id) is None and not has_token(bad.store, job_id)
    assert bad.store.redis.zscore(JOB_INDEX_KEY, job_id) is None


# -- an API key api.video rejects at finalize ---------------------------------------------------------
@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """A stack of its own: its workers are swapped for ones with a wrong API key and back."""
    with running_stack(Path(tmp_path_factory.mktemp("keyed")), redis_url, workers=1, concurrency=1) as stack:
        yield stack


def test_an_api_key_rejected_at_finalize_keeps_the_upload_and_resumes_once_fixed(keyed: Stack) -> None:
    path, digest = keyed.file("finalize.mp4", 20 * MIB, seed=7)
    video = {"title": "kept", "tags": ["conf"], "metadata": {"speaker": "Ada"}}
    keyed.emulator.set_faults(latency_ms=[300, 300])
    try:
        job_id = keyed.enqueue(path, chunk_size="5MiB", video=video)
        wait_for(cursor_at_least(keyed, job_id, 1), FINAL_TIMEOUT_S, "the first chunk")
        for worker in keyed.workers:
            worker.stop()  # warm shutdown: the chunk in flight ends and its successor waits in the queue
        wrong = keyed.add_worker(concurrency=1, VUQ_API_KEY="wrong-key")
        job = keyed.wait_final(job_id, FINAL_TIMEOUT_S)
    finally:
        keyed.emulator.set_faults(latency_ms=[0, 0])
    assert job.state == State.FAILED and job.error_retryable, job
    assert "api.video answered 400: The user credentials were incorrect." in (job.error or ""), job.error
    assert "wrong-key" not in (job.error or "") + wrong.log()
    assert job.next_chunk == job.chunks_total == 4 and job.retries == 0
    kept = keyed.emulator.video(job.video_id or "")
    assert kept["complete"] and kept["sha256"] == digest
    assert "speaker" not in kept["metadata"]  # the metadata patch is what failed

    wrong.stop()
    keyed.add_worker(concurrency=1)
    resumed = subprocess.run([sys.executable, "-m", "workers.console", "resume", job_id], env=keyed.env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert "resumed at finalize" in resumed
    job = keyed.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.DONE and not job.error, job
    done = keyed.emulator.video(job.video_id or "")
    assert done["sha256"] == digest and done["title"] == "kept" and done["tags"] == ["conf"]
    assert done["metadata"] == {"speaker": "Ada", JOB_METADATA_KEY: job_id, JOB_NONCE_METADATA_KEY: job.nonce}
    assert [v["videoId"] for v in videos_of(keyed.emulator.videos(), job_id)] == [
        job.video_id]


# -- and the workers still serve ----------------------------------------------------------------------
def test_after_all_that_a_good_job_finishes_identical(bad: Stack) -> None:
    path, digest = bad.file("good.mp4", 12 * MIB + 3, seed=8)
    job = bad.wait_final(bad.enqueue(path, chunk_size="5MiB", video={"title": "good"}), FINAL_TIMEOUT_S)
    assert job.state == State.DONE, job.error
    video = bad.emulator.video(job.video_id or "")
    assert video["sha256"] == digest and len(video["chunks"]) == 3
    assert all(worker.proc.poll() is None for worker in bad.workers)
    # every refusal above is one line in the worker log (job id and reason), never a traceback
    assert "Traceback" not in bad.logs(), bad.logs()[bad.logs().index("Traceback") - 2000:][:4000]
    assert "raised expected: JobFailed(" in bad.logs() and "raised unexpected" not in bad.logs()


# -- a refused upload token is not the end ------------------------------------------------------------
@pytest.mark.parametrize("make_token", TOKEN_CASES.values(), ids=TOKEN_CASES.keys())
def test_a_token_no_account_of_ours_holds_is_never_replaced_and_a_new_one_resumes_the_job(
        bad: Stack, make_token: TokenMaker) -> None:
    path, digest = bad.file(f"reminted-{uuid.uuid4().hex[:6]}.mp4", 7 * MIB, seed=9)
    token = make_token(bad)
    minted_before = _mints(bad)
    job = bad.wait_final(bad.enqueue(path, chunk_size="5MiB", token=token), FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and job.error_needs == "token" and job.error_retryable, job
    assert _mints(bad) == minted_before  # never replaced by one the workers mint: it may be another account's
    resume_upload(job.job_id, token=bad.emulator.create_upload_token(), settings=bad.settings)
    job = bad.wait_final(job.job_id, FINAL_TIMEOUT_S)
    assert job.state == State.DONE, job.error
    assert bad.emulator.video(job.video_id or "")["sha256"] == digest


def test_a_token_that_expires_during_the_upload_is_replaced_in_its_own_account(bad: Stack) -> None:
    path, digest = bad.file(f"expiring-{uuid.uuid4().hex[:6]}.mp4", 12 * MIB, seed=12)
    token = bad.emulator.create_upload_token()
    minted_before = _mints(bad)  # after the producer's own token
    bad.emulator.set_faults(latency_ms=[300, 300])
    try:
        job_id = bad.enqueue(path, chunk_size="5MiB", token=token)
        wait_for(cursor_at_least(bad, job_id, 1), FINAL_TIMEOUT_S, "the first chunk")
        httpx.delete(f"{bad.emulator.url}/upload-tokens/{token}", headers=bad.emulator.auth_header, timeout=10)
        job = bad.wait_final(job_id, FINAL_TIMEOUT_S)
    finally:
        bad.emulator.set_faults(latency_ms=[0, 0])
    assert job.state == State.DONE, job.error  # the token was the job's account's: one of the same account replaced it
    assert bad.emulator.video(job.video_id or "")["sha256"] == digest
    assert _mints(bad) > minted_before


def _mints(stack: Stack) -> int:
    return sum(1 for r in stack.emulator.requests_log() if r["method"] == "POST" and r["path"] == "/upload-tokens")


@pytest.fixture(scope="module")
def keyless(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """Workers without an API key, and no private network allowed to producer or workers."""
    with running_stack(Path(tmp_path_factory.mktemp("keyless")), redis_url, workers=1, concurrency=2,
                       api_key=None, VUQ_ALLOWED_PRIVATE_NETS="") as stack:
        yield stack




def test_without_an_api_key_a_refused_token_fails_resumable_and_a_new_token_finishes_it(keyless: Stack,
                                                                                       tmp_path: Path) -> None:
    path, digest = keyless.file("stale-token.mp4", 12 * MIB, seed=10)
    job_id = keyless.enqueue(path, chunk_size="5MiB", token=_expired_token(keyless))
    job = keyless.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and job.error_retryable and job.error_needs == "token", job
    assert "upload token is invalid or expired" in (job.error or "")
    assert f"vuq resume {job_id} --token-file FILE" in vuq(keyless, "status", job_id).stdout
    refused = vuq(keyless, "resume", job_id)
    assert refused.returncode == 1 and "needs a new upload token" in refused.stderr
    token_file = tmp_path / "token"
    token_file.write_text(keyless.emulator.create_upload_token() + "\n")
    resumed = vuq(keyless, "resume", job_id, "--token-file", str(token_file))
    assert resumed.returncode == 0 and "with a new upload token" in resumed.stdout, resumed.stderr
    job = keyless.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state == State.DONE and keyless.emulator.video(job.video_id or "")["sha256"] == digest


# -- mistaken or hostile producers --------------------------------------------------------------------
def test_a_bad_spec_reusing_a_running_jobs_id_leaves_that_job_alone(bad: Stack, foreign: celery.Celery) -> None:
    path, digest = bad.file("healthy.mp4", 20 * MIB, seed=11)
    job_id, message_id = f"healthy-{uuid.uuid4().hex[:8]}", f"replay-{uuid.uuid4().hex[:8]}"
    bad.emulator.set_faults(latency_ms=[300, 300])
    try:
        bad.enqueue(path, chunk_size="5MiB", job_id=job_id)
        wait_for(cursor_at_least(bad, job_id, 1), FINAL_TIMEOUT_S, "the first chunk")
        foreign.send_task("vuq.upload.start", kwargs={"source": str(path), "job_id": job_id, "chunk_size": 1},
                          task_id=message_id, queue=bad.settings.queue)
        rejection = REJECTED_KEY.format(message_id=message_id)
        wait_for(lambda: bad.store.redis.exists(rejection), FINAL_TIMEOUT_S, "the rejection record")
        job = bad.wait_final(job_id, FINAL_TIMEOUT_S)
    finally:
        bad.emulator.set_faults(latency_ms=[0, 0])
    assert job.state == State.DONE and bad.emulator.video(job.video_id or "")["sha256"] == digest, job
    kept = bad.store.redis.hgetall(rejection)
    assert kept["job_id"] == job_id and "chunk_size" in kept["error"] and "5 MiB..128 MiB" in kept["error"]


def test_the_same_job_id_is_one_job_and_another_spec_under_it_is_refused(bad: Stack) -> None:
    quiet = replace(bad.settings, queue=f"nobody-{uuid.uuid4().hex[:6]}")  # no worker consumes it
    job_id, source = f"idem-{uuid.uuid4().hex[:8]}", str(bad.root / "idem.mp4")
    spec = {"token": "to1tcmSFHeYY5KzyhOqVKMKb", "job_id": job_id, "video": {"title": "one"}}
    try:
        assert enqueue_upload(source, settings=quiet, **spec) == job_id
        assert enqueue_upload(source, settings=quiet, **spec) == job_id
        assert bad.store.redis.llen(quiet.queue) == 1  # one start message, not two
        with pytest.raises(SpecError) as refused:
            enqueue_upload(source, settings=quiet, **{**spec, "video": {"title": "another"}})
        assert refused.value.field == "job_id" and job_id in str(refused.value)
        assert "different spec" in str(refused.value) and bad.store.redis.llen(quiet.queue) == 1
        out = subprocess.run([sys.executable, "-m", "workers.console", "enqueue", source, "--no-source-check",
                              "--job-id", job_id, "--title", "third"], env={**bad.env, "VUQ_QUEUE": quiet.queue},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and job_id in out.stderr, out.stderr
    finally:
        bad.store.redis.delete(quiet.queue)


PRESIGNED_SECRETS = ("topsecret-signature-123", "credential-456", "hunter2-password", "callback-secret-789")


def test_a_presigned_source_and_callback_never_show_their_secrets(bad: Stack) -> None:
    path, digest = bad.file("signed.mp4", 7 * MIB, seed=12)
    with serving(path.parent) as base, receiving() as hooks:
        url = (base.replace("http://", "http://bob:hunter2-password@") +
               "/signed.mp4?X-Amz-Signature=topsecret-signature-123&X-Amz-Credential=credential-456")
        callback = hooks.url + "?token=callback-secret-789"
        out = vuq(bad, "enqueue", url, "--chunk-size", "5MiB", "--callback-url", callback, "--wait", "--json")
        assert out.returncode == 0, out.stderr
        job = json.loads(out.stdout)
        wait_for(lambda: hooks.requests, FINAL_TIMEOUT_S, "the completion webhook")
        shown = {"enqueue --wait --json": out.stdout + out.stderr,
                 "status --json": vuq(bad, "status", job["job_id"], "--json").stdout,
                 "jobs --json": vuq(bad, "jobs", "--json", "--limit", "500").stdout,
                 "webhook body": hooks.requests[0][1].decode(), "worker logs": bad.logs()}
    assert bad.emulator.video(job["video_id"])["sha256"] == digest
    assert job["source"].endswith("/signed.mp4?***") and "***@127.0.0.1" in job["source"], job["source"]
    assert job["callback_url"].endswith("?***")
    assert places_showing(list(PRESIGNED_SECRETS), shown) == []


INTERNAL_URLS = ["http://169.254.169.254/latest/meta-data/", "http://2852039166/x.mp4", "http://0251.0376.0251.0376/",
                 "http://0xa9fea9fe/x", "http://0xa9.0xfe.0xa9.0xfe/x", "http://[::ffff:169.254.169.254]/x",
                 "http://[fe80::1]/x", "http://127.1/x.mp4", "http://localhost:6379/", "http://10.0.0.5/x.mp4",
                 "https://192.168.1.1/x", "http://[::1]/x", "http://0.0.0.0/x", "http://100.64.0.1/x"]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_sources_and_callbacks_on_internal_addresses_are_refused_at_enqueue(keyless: Stack, url: str) -> None:
    for field, spec in (("source", {"source": url}), ("callback_url", {"source": "https://cdn.example/a.mp4",
                                                                        "callback_url": url})):
        source = spec.pop("source")
        with pytest.raises(SpecError) as refused:
            enqueue_upload(source, token="to1tcmSFHeYY5KzyhOqVKMKb", settings=keyless.settings, **spec)
        assert refused.value.field == field and "VUQ_ALLOWED_PRIVATE_NETS" in str(refused.value), refused.value


def test_a_host_name_that_resolves_to_loopback_is_refused_when_connecting(keyless: Stack) -> None:
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        addresses = set()
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        pytest.skip(f"this host's name {name!r} does not resolve to loopback only ({addresses})")
    path, _ = keyless.file("by-name.mp4", MIB, seed=13)
    with serving(path.parent) as base:
        job = keyless.wait_final(keyless.enqueue(base.replace("127.0.0.1", name) + "/by-name.mp4"), FINAL_TIMEOUT_S)
    assert job.state == State.FAILED and job.retries == 0 and not job.error_retryable, job
    assert "VUQ_ALLOWED_PRIVATE_NETS" in (job.error or "") and "loopback" in (job.error or ""), job.error
