"""tasks.job.store: the writes (create, claim, renew, update, schedule, later, pop_due, reject), each a
Lua script, run on fakeredis and on a real Redis. Fences, leases, Redis's clock, and what a refused
write leaves alone. The indexes, retention, the outbox and the listings are in test_scripts.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tasks.constants import DELAYED_KEY, JOB_INDEX_KEY, JOB_KEY, LEASE_KEY, REJECTED_KEY, TASK_CHUNK, TASK_START
from tasks.job.record import TOKEN_FIELD, State
from tasks.job.spec import UploadSpec, Video
from tasks.job.store import NOW, Claim, Created, Expect, JobStore, Written
from tasks.pipeline.message import Step
from tests.support.secrets import has_token
from tests.unit.tasks.helpers import RedisFactory, both_backends, indexed, put_job, raw, record

pytestmark = both_backends

TOKEN = "to1234567890abcdefghijKL"
SPEC = UploadSpec("/videos/a.mp4", video=Video(title="A"))
CHUNK_2: Expect = {"state": [State.UPLOADING], "next_chunk": [2]}
CHUNK_2_STEP = Step(TASK_CHUNK, "j1", 2).to_member()


def lease_ms(store: JobStore, job_id: str) -> int:
    return int(store.redis.pttl(LEASE_KEY.format(job_id=job_id)))


def uploading(store: JobStore, job_id: str = "j1", next_chunk: int = 2, token: str | None = TOKEN) -> None:
    put_job(store, job_id, token, state=State.UPLOADING, chunks_total=5, next_chunk=next_chunk)


def drop_lease(store: JobStore, job_id: str = "j1") -> None:
    """What the lease's expiry does."""
    store.redis.delete(LEASE_KEY.format(job_id=job_id))


# -- create --------------------------------------------------------------------------------
def test_create_writes_a_queued_record_on_redis_time(store: JobStore) -> None:
    created = store.create(replace(SPEC, job_id="j1", token=TOKEN))
    assert created.created and created.at is not None
    assert abs(created.at - store.now()) < 5
    job = record(store, "j1")
    assert (job.job_id, job.state, job.spec, job.next_chunk, job.bytes_sent, job.retries, job.step_starts) == (
        "j1", State.QUEUED, replace(SPEC, job_id="j1"), 0, 0, 0, 0)
    assert job.created_at == job.handoff_at == job.updated_at == created.at
    assert job.ended_at is None and job.heartbeat_at is None and job.wake_at is None
    assert raw(store, "j1")["spec_hash"] == replace(SPEC, job_id="j1", token=TOKEN).fingerprint()
    assert has_token(store, "j1")
    assert store.redis.zscore(JOB_INDEX_KEY, "j1") == created.at
    assert store.ids_in(State.QUEUED) == ["j1"]


def test_create_of_an_id_in_use_returns_its_spec_hash_and_state_and_changes_nothing(store: JobStore) -> None:
    first = replace(SPEC, job_id="j1", token=TOKEN)
    assert store.create(first).created
    assert store.update("j1", None, {"state": State.UPLOADING})
    before = raw(store, "j1")
    again = store.create(UploadSpec("/videos/other.mp4", token="to-other-token", job_id="j1"), state=State.FAILED)
    assert again == Created(False, spec_hash=first.fingerprint(), state="uploading")
    assert not again.created and again.at is None
    assert raw(store, "j1") == before
    assert store.redis.zcard(JOB_INDEX_KEY) == 1
    assert indexed(store)["uploading"] == {"j1"} and indexed(store)["failed"] == set()


def test_create_without_a_token_stores_none(store: JobStore) -> None:
    assert store.create(replace(SPEC, job_id="j1")).created
    assert not has_token(store, "j1")
    assert TOKEN_FIELD not in raw(store, "j1")
    assert store.claim("j1", "w1", 30).token is None


def test_create_in_the_failed_state_lands_in_its_index_with_its_retention(store: JobStore) -> None:
    kept = JobStore(store.redis, keep_done_s=100, keep_failed_s=1000)
    created = kept.create(replace(SPEC, job_id="bad", token=TOKEN), state=State.FAILED, error="title: too long",
                          error_reason="bad_spec",
                          error_retryable=False)
    assert created.created
    job = record(store, "bad")
    assert (job.state, job.error, job.error_reason, job.error_retryable) == (
        State.FAILED, "title: too long", "bad_spec", False)
    assert job.ended_at == created.at
    assert store.ids_in(State.FAILED) == ["bad"] and store.ids_in(State.QUEUED) == []
    assert store.counts()["failed"] == 1 and store.counts()["queued"] == 0
    assert 995_000 < store.redis.pttl(JOB_KEY.format(job_id="bad")) <= 1_000_000
    assert has_token(store, "bad")  # a failed job keeps its token: it may be resumed


@pytest.mark.parametrize("state", [State.DONE, State.CANCELLED])
def test_create_in_a_final_state_other_than_failed_erases_the_token(store: JobStore, state: State) -> None:
    assert store.create(replace(SPEC, job_id="j1", token=TOKEN), state=state).created
    assert store.ids_in(state) == ["j1"]
    assert not has_token(store, "j1")


def test_create_notes_that_a_job_with_a_callback_owes_a_webhook(store: JobStore) -> None:
    callback = replace(SPEC, callback_url="https://example.com/hook")
    assert store.create(replace(callback, job_id="hooked")).created
    assert store.create(replace(callback, job_id="quiet"), notify=False).created
    assert store.create(replace(SPEC, job_id="plain")).created
    assert raw(store, "hooked")["webhook"] == "1"
    assert "webhook" not in raw(store, "quiet")
    assert "webhook" not in raw(store, "plain")


# -- forget --------------------------------------------------------------------------------
def test_forget_undoes_a_create_nobody_picked_up(store: JobStore) -> None:
    put_job(store, "j1", TOKEN)
    put_job(store, "j2")
    assert store.forget("j1")
    assert not store.redis.exists(JOB_KEY.format(job_id="j1"))
    assert store.redis.zscore(JOB_INDEX_KEY, "j1") is None
    assert indexed(store)["queued"] == {"j2"}
    assert store.create(replace(SPEC, job_id="j1")).created  # the producer may simply try again


@pytest.mark.parametrize("state", [State.UPLOADING, State.FAILED, State.DONE])
def test_forget_leaves_a_job_that_moved_on(store: JobStore, state: State) -> None:
    put_job(store, "j1", state=state)
    before = raw(store, "j1")
    assert not store.forget("j1")
    assert raw(store, "j1") == before
    assert store.ids_in(state) == ["j1"]


def test_forget_leaves_a_queued_job_a_worker_picked_up(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", 30)
    assert not store.forget("j1")
    assert store.lease_holder("j1") == "w1"
    assert store.ids_in(State.QUEUED) == ["j1"]


def test_forget_of_a_missing_job(store: JobStore) -> None:
    assert not store.forget("ghost")
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


# -- claim ---------------------------------------------------------------------------------
def test_claim_takes_the_lease_and_reads_the_record_and_token_in_one_step(store: JobStore) -> None:
    put_job(store, "j1", TOKEN)
    claim = store.claim("j1", "w1", ttl_s=30)
    assert claim.record is not None and claim.record.job_id == "j1"
    assert claim.token == TOKEN
    assert claim.holder is None and claim.mismatch is None
    assert claim.record.heartbeat_at is not None and claim.record.heartbeat_at >= claim.record.created_at
    assert claim.record.step_starts == 1
    assert store.lease_holder("j1") == "w1"
    assert 0 < lease_ms(store, "j1") <= 30_000


def test_the_token_is_returned_only_by_a_claim(store: JobStore) -> None:
    put_job(store, "j1", TOKEN)
    claim = store.claim("j1", "w1", ttl_s=30)
    assert claim.token == TOKEN
    assert TOKEN not in repr(claim)
    job = record(store, "j1")
    assert TOKEN not in repr(job) and TOKEN not in json.dumps(job.public())
    assert all(TOKEN not in repr(j) for j in store.records(["j1"]) + store.active())


def test_a_claim_the_record_does_not_expect_says_why_and_takes_no_lease(store: JobStore) -> None:
    uploading(store, next_chunk=3)
    before = raw(store, "j1")
    stale = store.claim("j1", "dup", 30, expect={"state": [State.UPLOADING], "next_chunk": [1]})
    assert stale == Claim(None, mismatch="next_chunk is 3")
    assert stale.token is None
    assert store.lease_holder("j1") is None
    assert raw(store, "j1") == before  # no heartbeat, no step start


def test_a_mismatch_names_a_missing_field_as_empty(store: JobStore) -> None:
    put_job(store, "j1")
    assert store.claim("j1", "w1", 30, expect={"video_id": ["vi1"]}).mismatch == "video_id is "


def test_a_claim_accepts_any_of_the_allowed_values(store: JobStore) -> None:
    put_job(store, "j1")
    claim = store.claim("j1", "w1", 30, expect={"state": [State.QUEUED, State.UPLOADING], "next_chunk": [0]})
    assert claim.record is not None


def test_a_claim_held_elsewhere_names_the_holder_and_the_time_left(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", 30)
    busy = store.claim("j1", "w2", 30, expect={"next_chunk": [0]})
    assert busy.record is None and busy.mismatch is None and busy.token is None
    assert busy.holder == "w1" and 29 < busy.holder_ttl_s <= 30
    assert store.lease_holder("j1") == "w1"
    assert record(store, "j1").step_starts == 1  # w2's attempt is not a start


def test_expectations_are_checked_before_the_lease(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", 30)
    late = store.claim("j1", "w2", 30, expect={"next_chunk": [4]})
    assert late.mismatch == "next_chunk is 0" and late.holder is None


def test_the_holder_may_claim_again_and_each_claim_counts_a_start(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=5)
    again = store.claim("j1", "w1", ttl_s=30)
    assert again.record is not None and again.record.step_starts == 2
    assert lease_ms(store, "j1") > 5_000


def test_a_lapsed_lease_can_be_claimed_by_another_worker(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=30)
    drop_lease(store)
    assert store.claim("j1", "w2", ttl_s=30).record is not None
    assert store.lease_holder("j1") == "w2"


def test_a_claim_of_a_missing_job_takes_no_lease(store: JobStore) -> None:
    assert store.claim("ghost", "w1", ttl_s=30) == Claim(None, mismatch="no such job")
    assert store.lease_holder("ghost") is None
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


# -- renew ---------------------------------------------------------------------------------
def test_renew_extends_our_lease_and_beats_the_heartbeat(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=5)
    store.redis.hset(JOB_KEY.format(job_id="j1"), "heartbeat_at", "1.0")
    assert store.renew("j1", "w1", ttl_s=60) == 1
    assert lease_ms(store, "j1") > 5_000
    assert (record(store, "j1").heartbeat_at or 0) > 1.0
    assert "chunk_bytes" not in raw(store, "j1")  # nothing streamed, nothing noted


def test_renew_notes_the_bytes_streamed_as_chunk_bytes(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    assert store.renew("j1", "w1", 30, CHUNK_2, streamed=4096) == 1
    assert record(store, "j1").chunk_bytes == 4096
    assert store.renew("j1", "w1", 30, CHUNK_2) == 1
    assert record(store, "j1").chunk_bytes == 4096


def test_renew_takes_a_lapsed_lease_back_while_the_record_is_where_the_step_expects(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    drop_lease(store)
    assert store.renew("j1", "w1", 20, CHUNK_2, streamed=10) == 2
    assert store.lease_holder("j1") == "w1"
    assert 0 < lease_ms(store, "j1") <= 20_000
    assert record(store, "j1").chunk_bytes == 10


def test_renew_of_a_lease_another_worker_holds_is_lost_and_writes_nothing(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    before = raw(store, "j1")
    assert store.renew("j1", "w2", 60, CHUNK_2, streamed=99) == 0
    assert store.lease_holder("j1") == "w1"
    assert raw(store, "j1") == before


def test_renew_of_a_lapsed_lease_is_lost_once_the_record_moved_on(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    drop_lease(store)
    assert store.update("j1", None, {"state": State.CANCELLED}, expect={"state": [State.UPLOADING]})
    assert store.renew("j1", "w1", 30, CHUNK_2) == 0
    assert store.lease_holder("j1") is None


def test_renew_by_the_holder_does_not_look_at_the_record(store: JobStore) -> None:
    """A cancel does not take the lease: the step in flight stops at its next (fenced) write."""
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    assert store.update("j1", None, {"state": State.CANCELLED}, expect={"state": [State.UPLOADING]})
    assert store.renew("j1", "w1", 30, CHUNK_2) == 1
    assert not store.update("j1", "w1", {"next_chunk": 3}, expect=CHUNK_2)


def test_a_renewal_delivered_after_its_step_released_the_lease_does_not_take_it_back(store: JobStore) -> None:
    """A renewal sent during a partition can reach Redis after the heal, when its step has long
    ended: the lease stays free for the next step instead of held for one that no longer runs."""
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    written = store.schedule("j1", "w1", CHUNK_2_STEP, 0, CHUNK_2, retry_reason="connection")
    assert written and store.lease_holder("j1") is None
    assert store.renew("j1", "w1", 30, CHUNK_2, streamed=10) == 0
    assert store.lease_holder("j1") is None
    assert store.claim("j1", "w2", 30, CHUNK_2).record is not None  # the retried step, elsewhere


def test_a_write_after_its_step_released_the_lease_does_not_take_it_back(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    assert store.update("j1", "w1", {"bytes_sent": 1}, expect=CHUNK_2, release=True)
    refused = store.update("j1", "w1", {"bytes_sent": 2}, expect=CHUNK_2, reclaim=True)
    assert refused == Written(False, "the step released the lease")
    assert store.lease_holder("j1") is None and record(store, "j1").bytes_sent == 1


def test_renew_of_a_job_that_is_gone(store: JobStore) -> None:
    assert store.renew("ghost", "w1", 30) == -1
    assert store.lease_holder("ghost") is None
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


# -- update: the fence ---------------------------------------------------------------------
def test_an_update_by_the_holder_writes_and_keeps_the_lease(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    written = store.update("j1", "w1", {"next_chunk": 3, "bytes_sent": 100}, expect=CHUNK_2)
    assert written.ok and written.why == "" and written.at is not None
    job = record(store, "j1")
    assert (job.next_chunk, job.bytes_sent, job.updated_at) == (3, 100, written.at)
    assert store.lease_holder("j1") == "w1"


def test_an_update_by_another_holder_is_refused_and_names_the_holder(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    before = raw(store, "j1")
    assert store.update("j1", "w2", {"next_chunk": 3}, expect=CHUNK_2) == Written(False, "the job is held by w1")
    assert raw(store, "j1") == before
    assert store.lease_holder("j1") == "w1"


def test_an_update_after_the_lease_lapsed_is_refused_without_reclaim(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    drop_lease(store)
    before = raw(store, "j1")
    assert store.update("j1", "w1", {"next_chunk": 3}, expect=CHUNK_2) == Written(False, "the lease lapsed")
    assert raw(store, "j1") == before
    assert store.lease_holder("j1") is None


def test_reclaim_takes_a_lapsed_lease_back_when_the_record_is_as_expected(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    drop_lease(store)
    assert store.update("j1", "w1", {"bytes_sent": 50}, expect=CHUNK_2, reclaim=True, ttl_s=20)
    assert record(store, "j1").bytes_sent == 50
    assert store.lease_holder("j1") == "w1"
    assert 0 < lease_ms(store, "j1") <= 20_000


def test_reclaim_with_release_writes_and_leaves_the_lease_free(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    drop_lease(store)
    assert store.update("j1", "w1", {"next_chunk": 3}, expect=CHUNK_2, reclaim=True, release=True)
    assert record(store, "j1").next_chunk == 3
    assert store.lease_holder("j1") is None


def test_reclaim_is_refused_while_another_worker_holds_the_lease(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    drop_lease(store)
    store.claim("j1", "w2", 30)
    written = store.update("j1", "w1", {"next_chunk": 3}, expect=CHUNK_2, reclaim=True)
    assert written == Written(False, "the job is held by w2")
    assert record(store, "j1").next_chunk == 2
    assert store.lease_holder("j1") == "w2"


def test_reclaim_is_refused_once_the_record_moved_on(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    drop_lease(store)
    assert store.update("j1", None, {"next_chunk": 4})
    written = store.update("j1", "w1", {"next_chunk": 3}, expect=CHUNK_2, reclaim=True)
    assert written == Written(False, "next_chunk is 4")
    assert record(store, "j1").next_chunk == 4
    assert store.lease_holder("j1") is None


def test_an_exclusive_write_is_refused_while_anyone_holds_the_job(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", 30)
    assert store.update("j1", None, {"handoff_at": NOW}, exclusive=True) == Written(False, "the job is held by w1")
    assert store.update("j1", "w1", {}, release=True)
    assert store.update("j1", None, {"size": 7}, exclusive=True)
    assert record(store, "j1").size == 7


def test_an_operator_write_goes_through_a_held_lease_fenced_by_its_expectations(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", 30)
    refused = store.update("j1", None, {"state": State.CANCELLED}, expect={"state": [State.UPLOADING]})
    assert refused == Written(False, "state is queued")
    assert record(store, "j1").state == State.QUEUED
    assert store.update("j1", None, {"state": State.CANCELLED}, expect={"state": [State.QUEUED, State.UPLOADING]})
    assert record(store, "j1").state == State.CANCELLED
    assert store.lease_holder("j1") == "w1"


def test_a_refused_write_changes_nothing_at_all(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30)
    before, indexes = raw(store, "j1"), indexed(store)
    assert not store.update("j1", "w1", {"state": State.DONE, "bytes_sent": 999}, expect={"next_chunk": [1]},
                            release=True)
    assert raw(store, "j1") == before
    assert indexed(store) == indexes
    assert store.lease_holder("j1") == "w1"


def test_release_drops_only_our_lease(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", 30)
    assert not store.update("j1", "w2", {}, release=True)
    assert store.lease_holder("j1") == "w1"
    assert store.update("j1", "w1", {}, release=True)
    assert store.lease_holder("j1") is None
    assert store.claim("j1", "w2", 30).record is not None


def test_a_write_to_a_missing_job_creates_nothing(store: JobStore) -> None:
    assert store.update("ghost", "w1", {"state": State.FAILED}, reclaim=True) == Written(False, "no such job")
    assert store.update("ghost", None, {"state": State.DONE}) == Written(False, "no such job")
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))
    assert store.lease_holder("ghost") is None
    assert store.redis.zcard(JOB_INDEX_KEY) == 0
    assert sum(store.counts().values()) == 0


def test_values_are_written_as_text(store: JobStore) -> None:
    put_job(store, "j1", video_id="vi1")
    assert store.update("j1", None, {"error_retryable": True, "verify_upload": False, "video_id": None,
                                     "size": 10, "wake_at": 12.5})
    stored = raw(store, "j1")
    assert (stored["error_retryable"], stored["verify_upload"], stored["video_id"], stored["size"],
            stored["wake_at"]) == ("1", "0", "", "10", "12.500000")
    job = record(store, "j1")
    assert job.error_retryable and not job.verify_upload and job.video_id is None and job.wake_at == 12.5


# -- update: Redis's clock and the step counter ----------------------------------------------
def test_now_values_are_written_as_redis_time(store: JobStore) -> None:
    put_job(store, "j1")
    written = store.update("j1", None, {"heartbeat_at": NOW, "handoff_at": NOW})
    assert written.at is not None and abs(written.at - store.now()) < 5
    job = record(store, "j1")
    assert job.heartbeat_at == job.handoff_at == job.updated_at == written.at


def test_every_write_stamps_updated_at(store: JobStore) -> None:
    put_job(store, "j1")
    first = store.update("j1", None, {"size": 1})
    second = store.update("j1", None, {"size": 2})
    assert first.at is not None and second.at is not None and second.at >= first.at
    assert record(store, "j1").updated_at == second.at


def test_step_starts_resets_when_the_cursor_or_the_state_changes(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", 30)
    assert store.claim("j1", "w1", 30).record.step_starts == 2  # type: ignore[union-attr]
    assert store.update("j1", "w1", {"bytes_sent": 10})
    assert record(store, "j1").step_starts == 2  # neither the cursor nor the state moved
    assert store.update("j1", "w1", {"next_chunk": 1})
    assert record(store, "j1").step_starts == 0
    assert store.claim("j1", "w1", 30).record.step_starts == 1  # type: ignore[union-attr]
    assert store.update("j1", "w1", {"state": State.UPLOADING})
    assert record(store, "j1").step_starts == 0


# -- schedule, later, pop_due ----------------------------------------------------------------
def test_schedule_releases_the_lease_and_puts_the_step_in_the_delayed_set(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    step = Step(TASK_CHUNK, "j1", 2)
    written = store.schedule("j1", "w1", step.to_member("t1", 1), 30, CHUNK_2)
    assert written.ok and written.at is not None
    assert abs(written.at - (store.now() + 30)) < 5
    assert store.redis.zscore(DELAYED_KEY, step.to_member("t1", 1)) == pytest.approx(written.at, abs=1e-3)
    job = record(store, "j1")
    assert job.wake_at == written.at
    assert (job.retries, job.last_retry_reason, job.step_starts) == (0, None, 0)  # a deferral, not a retry
    assert store.lease_holder("j1") is None


def test_schedule_with_a_retry_reason_counts_a_retry(store: JobStore) -> None:
    uploading(store)
    for _ in range(2):
        store.claim("j1", "w1", 30, CHUNK_2)
        assert store.schedule("j1", "w1", CHUNK_2_STEP, 5, CHUNK_2, retry_reason="timeout")
    job = record(store, "j1")
    assert (job.retries, job.last_retry_reason) == (2, "timeout")


def test_schedule_is_refused_while_another_worker_holds_the_job(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w2", 30, CHUNK_2)
    before = raw(store, "j1")
    written = store.schedule("j1", "w1", CHUNK_2_STEP, 5, CHUNK_2, retry_reason="timeout")
    assert written == Written(False, "the job is held by w2")
    assert raw(store, "j1") == before
    assert store.lease_holder("j1") == "w2"
    assert store.redis.zcard(DELAYED_KEY) == 0


def test_schedule_is_refused_once_the_record_moved_on(store: JobStore) -> None:
    uploading(store, next_chunk=3)
    store.claim("j1", "w1", 30)
    written = store.schedule("j1", "w1", CHUNK_2_STEP, 5, CHUNK_2, retry_reason="timeout")
    assert written == Written(False, "next_chunk is 3")
    assert record(store, "j1").retries == 0 and record(store, "j1").wake_at is None
    assert store.lease_holder("j1") == "w1"
    assert store.redis.zcard(DELAYED_KEY) == 0


def test_schedule_after_the_lease_lapsed_goes_ahead_while_the_record_is_as_expected(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    drop_lease(store)
    assert store.schedule("j1", "w1", CHUNK_2_STEP, 5, CHUNK_2)
    assert store.redis.zcard(DELAYED_KEY) == 1
    assert store.lease_holder("j1") is None


def test_schedule_of_a_missing_job_delays_nothing(store: JobStore) -> None:
    ghost = Step(TASK_START, "ghost").to_member()
    assert store.schedule("ghost", "w1", ghost, 5) == Written(False, "no such job")
    assert store.redis.zcard(DELAYED_KEY) == 0
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


def test_later_touches_nothing_of_the_job(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w2", 30, CHUNK_2)
    before = raw(store, "j1")
    step = Step(TASK_CHUNK, "j1", 2)
    store.later(step.to_member("t9", 3), 10)
    assert store.redis.zscore(DELAYED_KEY, step.to_member("t9", 3)) == pytest.approx(store.now() + 10, abs=5)
    assert raw(store, "j1") == before
    assert store.lease_holder("j1") == "w2"


def test_pop_due_takes_what_is_due_and_notes_the_hand_off(store: JobStore) -> None:
    uploading(store)
    store.claim("j1", "w1", 30, CHUNK_2)
    step = Step(TASK_CHUNK, "j1", 2, label="chunk 3/5")
    assert store.schedule("j1", "w1", step.to_member("t1", 2), 0, CHUNK_2)
    store.later(Step(TASK_START, "j1").to_member(), 600)
    now, due, _ = store.pop_due()
    assert due == [step.to_member("t1", 2)]
    assert Step.from_member(due[0]) == (step, "t1", 2)
    assert record(store, "j1").handoff_at == now
    assert abs(now - store.now()) < 5
    assert store.pop_due()[1] == []
    assert store.redis.zcard(DELAYED_KEY) == 1  # the one not yet due stays


def test_each_due_step_is_taken_once_whichever_worker_asks(store: JobStore, redis_factory: RedisFactory) -> None:
    other = JobStore(redis_factory())
    for n in range(5):
        store.later(Step(TASK_START, f"j{n}").to_member(), 0)
    first = store.pop_due(limit=3).members
    second = other.pop_due(limit=3).members
    assert len(first) == 3 and len(second) == 2
    assert set(first).isdisjoint(second)
    assert {Step.from_member(m)[0].job_id for m in first + second} == {f"j{n}" for n in range(5)}


def test_pop_due_of_a_step_whose_job_is_gone_creates_no_record(store: JobStore) -> None:
    store.later(Step(TASK_CHUNK, "ghost", 1).to_member(), 0)
    assert len(store.pop_due()[1]) == 1
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


# -- reject --------------------------------------------------------------------------------
def test_reject_keeps_the_refused_spec_apart_and_leaves_the_job_alone(store: JobStore) -> None:
    put_job(store, "j1", TOKEN)
    before, indexes = raw(store, "j1"), indexed(store)
    refused = {"source": "/videos/other.mp4", "token": "***"}
    store.reject("m1", "j1", refused, "job_id: 'j1' already names a job with a different spec", 3600)
    key = REJECTED_KEY.format(message_id="m1")
    assert store.redis.hgetall(key) == {"job_id": "j1", "spec": json.dumps(refused, sort_keys=True),
                                        "error": "job_id: 'j1' already names a job with a different spec"}
    assert 3590 < store.redis.ttl(key) <= 3600
    assert raw(store, "j1") == before
    assert indexed(store) == indexes


def test_reject_with_no_retention_keeps_it(store: JobStore) -> None:
    store.reject("m2", "j1", {"source": "/x"}, "bad", 0)
    assert store.redis.ttl(REJECTED_KEY.format(message_id="m2")) == -1
    assert not store.redis.exists(JOB_KEY.format(job_id="j1"))
