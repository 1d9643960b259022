"""Many accounts, one fleet, on real Redis, real workers and the emulator holding three accounts the workers
hold keys for (``default``, ``acme``, ``globex``) and one they do not (a stranger's): each job lands in its
account (checked through ``GET /videos`` with each account's key), a token is used only in the account it
belongs to, a token-only job sends no key, and every token vuq minted is gone from ``GET /upload-tokens``
once its job is done, failed or cancelled."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery
import pytest

from tasks import cancel_upload, resume_upload
from tasks.constants import MIB
from tasks.job import State
from tests.support.secrets import has_token
from tests.support.stack import Stack, running_stack, vuq
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
KEYS = {"default": "key-default-0a1b2c3d4e5f", "acme": "key-acme-6a7b8c9d0e1f", "globex": "key-globex-2a3b4c5d"}
STRANGER = "key-stranger-9f8e7d6c5b4a"
ALIAS = "acme-eu"  # a second name for acme's key: one account
FINAL_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    others = {**{name: key for name, key in KEYS.items() if name != "default"}, ALIAS: KEYS["acme"]}
    with running_stack(Path(tmp_path_factory.mktemp("accounts")), redis_url, workers=1, concurrency=4,
                       api_key=KEYS["default"], accounts=others, strangers=[STRANGER],
                       VUQ_MAX_RETRIES="1", VUQ_RETRY_BACKOFF_S="0.1", VUQ_RETRY_BACKOFF_MAX_S="0.2") as stack:
        yield stack


@pytest.fixture(scope="module")
def foreign(fleet: Stack) -> Iterator[celery.Celery]:
    app = celery.Celery("foreign", broker=fleet.settings.broker_url, set_as_current=False)
    yield app
    app.close()


def as_account(fleet: Stack, name: str) -> Any:
    return fleet.emulator.for_key(KEYS.get(name, STRANGER))


def videos_in(fleet: Stack, name: str) -> set[str]:
    return {video["videoId"] for video in as_account(fleet, name).list_videos()}


def finished(fleet: Stack, job_id: str) -> Any:
    job = fleet.wait_final(job_id, FINAL_TIMEOUT_S)
    assert job.state.final, job
    return job


@pytest.mark.parametrize("name", ["default", "acme", "globex"])
def test_a_job_naming_an_account_lands_in_it_and_its_minted_token_is_deleted(fleet: Stack, name: str) -> None:
    path, digest = fleet.file(f"{name}.mp4", 7 * MIB, seed=len(name))
    tokens_before = set(as_account(fleet, name).upload_tokens())
    job_id = fleet.enqueue(path, token=None, account=name, chunk_size="5MiB", video={"title": name})
    job = finished(fleet, job_id)
    assert job.state == State.DONE and job.public()["account"] == name, job
    assert job.video_id in videos_in(fleet, name)
    assert all(job.video_id not in videos_in(fleet, other) for other in KEYS if other != name)
    assert fleet.emulator.video(job.video_id or "")["sha256"] == digest
    assert not set(as_account(fleet, name).upload_tokens()) - tokens_before  # the one minted for it was deleted


def test_a_job_naming_no_account_runs_where_its_token_belongs(fleet: Stack) -> None:
    path, _ = fleet.file("owned.mp4", 2 * MIB, seed=4)
    token = as_account(fleet, "globex").create_upload_token()
    job = finished(fleet, fleet.enqueue(path, token=token, video={"title": "owned by globex"}))
    assert job.state == State.DONE and job.public()["account"] == "globex"
    assert job.video_id in videos_in(fleet, "globex") and job.video_id not in videos_in(fleet, "default")
    assert fleet.emulator.video(job.video_id or "")["title"] == "owned by globex"  # patched with globex's key
    assert token in as_account(fleet, "globex").upload_tokens()  # a producer's own token is never deleted


def test_a_foreign_token_is_refused_before_any_request_that_creates_or_uploads(fleet: Stack) -> None:
    path, _ = fleet.file("foreign.mp4", 2 * MIB, seed=5)
    token = as_account(fleet, "globex").create_upload_token()
    before = {name: videos_in(fleet, name) for name in KEYS}
    seen = len(fleet.emulator.requests_log())
    job = finished(fleet, fleet.enqueue(path, token=token, account="acme"))
    assert job.state == State.FAILED and job.error_reason == "foreign_token", job
    assert "account 'acme'" in (job.error or "") and job.error_needs == "token"
    assert {name: videos_in(fleet, name) for name in KEYS} == before  # no video anywhere
    after = fleet.emulator.requests_log()[seen:]
    assert not [r for r in after if r["path"] in ("/upload", "/videos", "/upload-tokens")
                and r["method"] == "POST"], after  # nothing created or uploaded, no token minted
    assert token in as_account(fleet, "globex").upload_tokens()


def test_a_token_only_job_uploads_without_any_key(fleet: Stack) -> None:
    path, digest = fleet.file("stranger.mp4", 7 * MIB, seed=6)
    stranger = as_account(fleet, "stranger")
    token = stranger.create_upload_token()
    seen = len(fleet.emulator.requests_log())
    job = finished(fleet, fleet.enqueue(path, token=token, chunk_size="5MiB"))
    requests = fleet.emulator.requests_log()[seen:]
    assert job.state == State.DONE and job.public()["account"] == "token-only", job
    assert [r["path"] for r in requests if r["account"] == stranger.account] == ["/upload", "/upload"]
    # with any key of ours, only the question whose token it is (authenticating to ask it)
    assert {(r["method"], r["path"].rsplit("/", 1)[0]) for r in requests if r["account"] != stranger.account} <= {
        ("POST", "/auth"), ("GET", "/upload-tokens")}, requests
    assert job.video_id in videos_in(fleet, "stranger")
    assert fleet.emulator.video(job.video_id or "")["sha256"] == digest


def test_a_token_only_job_that_asks_for_metadata_is_refused_before_any_byte(fleet: Stack) -> None:
    path, _ = fleet.file("stranger-titled.mp4", 2 * MIB, seed=7)
    token = as_account(fleet, "stranger").create_upload_token()
    seen = len(fleet.emulator.requests_log())
    job = finished(fleet, fleet.enqueue(path, token=token, video={"title": "needs a key"}))
    assert job.state == State.FAILED and job.error_reason == "bad_spec"
    assert (job.error or "").startswith("video.title: needs an API key"), job.error
    assert not [r for r in fleet.emulator.requests_log()[seen:] if r["path"] == "/upload"]


def test_an_account_the_workers_do_not_hold_fails_at_start_naming_it(fleet: Stack, foreign: celery.Celery) -> None:
    path, _ = fleet.file("nobody.mp4", 2 * MIB, seed=8)
    job_id = f"nobody-{uuid.uuid4().hex[:8]}"
    seen = len(fleet.emulator.requests_log())
    foreign.send_task("vuq.upload.start", kwargs={"source": str(path), "account": "initech", "job_id": job_id},
                      queue=fleet.settings.queue)
    job = finished(fleet, job_id)
    assert job.state == State.FAILED and job.error_reason == "bad_spec"
    assert (job.error or "").startswith("account: the workers hold no key for account 'initech'"), job.error
    assert fleet.emulator.requests_log()[seen:] == []  # before any request


def test_a_producer_with_the_keyring_refuses_an_unknown_account_at_enqueue(fleet: Stack) -> None:
    path, _ = fleet.file("unknown.mp4", 1 * MIB, seed=9)
    with pytest.raises(ValueError, match="account: unknown account 'initech'"):
        fleet.enqueue(path, account="initech")


def started(fleet: Stack, job_id: str) -> None:
    wait_for(lambda: (r := fleet.store.get(job_id)) is not None and r.next_chunk >= 1, FINAL_TIMEOUT_S,
             "a first chunk (its token minted)")


def test_minted_tokens_are_deleted_when_their_jobs_fail_or_are_cancelled(fleet: Stack) -> None:
    before = {name: set(as_account(fleet, name).upload_tokens()) for name in ("acme", "globex")}
    doomed, _ = fleet.file("doomed.mp4", 30 * MIB, seed=10)
    slow, _ = fleet.file("slow.mp4", 30 * MIB, seed=11)
    fleet.emulator.set_faults(latency_ms=[300, 300])  # slow enough to act between chunks
    try:
        cancelled = fleet.enqueue(slow, token=None, account="globex", chunk_size="5MiB")
        started(fleet, cancelled)
        cancel_upload(cancelled, settings=fleet.settings)
        failing = fleet.enqueue(doomed, token=None, account="acme", chunk_size="5MiB")
        started(fleet, failing)
        assert set(as_account(fleet, "acme").upload_tokens()) - before["acme"]  # a token was minted for it
        doomed.write_bytes(doomed.read_bytes()[: 29 * MIB])  # the source changes: the job fails at its next chunk
        ended = [finished(fleet, failing), finished(fleet, cancelled)]
    finally:
        fleet.emulator.set_faults(latency_ms=[0, 0])
    assert [job.state for job in ended] == [State.FAILED, State.CANCELLED], ended
    wait_for(lambda: {name: set(as_account(fleet, name).upload_tokens()) for name in before} == before,
             FINAL_TIMEOUT_S, "the minted tokens' deletion")


def test_two_names_for_one_key_are_one_account(fleet: Stack) -> None:
    """A token known to belong to ``acme`` also belongs to ``acme-eu``: the owner is remembered by key."""
    token = as_account(fleet, "acme").create_upload_token()
    path, _ = fleet.file("alias.mp4", 1 * MIB, seed=61)
    first = finished(fleet, fleet.enqueue(path, token=token, account="acme"))
    second = finished(fleet, fleet.enqueue(path, token=token, account=ALIAS))
    assert (first.state, second.state) == (State.DONE, State.DONE), (first, second)
    assert {first.video_id, second.video_id} <= videos_in(fleet, "acme")


def test_a_failed_job_whose_minted_token_was_deleted_resumes_with_a_new_one(fleet: Stack) -> None:
    path, digest = fleet.file("resume-minted.mp4", 16 * MIB, seed=62)
    fleet.emulator.set_faults(latency_ms=[300, 300])
    try:
        job_id = fleet.enqueue(path, token=None, account="acme", chunk_size="5MiB")
        wait_for(lambda: getattr(fleet.store.get(job_id), "bytes_sent", 0) > 0, FINAL_TIMEOUT_S, "its first chunk sent")
        fleet.emulator.set_faults(error_rate=1.0)
        job = finished(fleet, job_id)
    finally:
        fleet.emulator.set_faults(error_rate=0.0, latency_ms=[0, 0])
    assert job.state == State.FAILED and job.error_retryable and job.bytes_sent > 0, job
    assert not has_token(fleet.store, job_id)  # a minted token leaves the record when its job fails
    resume_upload(job_id, settings=fleet.settings)
    job = finished(fleet, job_id)
    assert job.state == State.DONE, job
    assert fleet.emulator.video(job.video_id or "")["sha256"] == digest
    assert job.video_id in videos_in(fleet, "acme")


def test_vuq_jobs_lists_one_account_or_one_tenant_and_vuq_status_names_them(fleet: Stack) -> None:
    tenant = f"listing-{uuid.uuid4().hex[:8]}"
    path, _ = fleet.file("listed.mp4", 1 * MIB, seed=63)
    mine = fleet.enqueue(path, token=None, account="acme", tenant=tenant)
    theirs = fleet.enqueue(path, token=None, account="globex")
    assert all(finished(fleet, job_id).state == State.DONE for job_id in (mine, theirs))
    by_account = json.loads(vuq(fleet, "jobs", "--account", "acme", "--limit", "500", "--json", check=True).stdout)
    assert mine in {job["job_id"] for job in by_account} and theirs not in {job["job_id"] for job in by_account}
    assert {job["account"] for job in by_account} == {"acme"}
    by_tenant = vuq(fleet, "jobs", "--tenant", tenant, "--json", check=True)
    assert [(job["job_id"], job["tenant"]) for job in json.loads(by_tenant.stdout)] == [(mine, tenant)]
    assert "more" not in by_tenant.stderr  # one job, and nothing left unread
    assert f"account   acme, tenant {tenant}, interactive priority" in vuq(fleet, "status", mine, check=True).stdout
    assert "account   globex, interactive priority" in vuq(fleet, "status", theirs, check=True).stdout
