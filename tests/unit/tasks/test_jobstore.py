"""tasks.jobstore: atomic create, leases, fenced updates, listings without secrets."""

from __future__ import annotations

import itertools
import json

import pytest

from tasks.constants import JOB_INDEX_KEY, JOB_KEY, LEASE_KEY
from tasks.jobstore import JobStore
from tasks.record import TOKEN_FIELD, State
from tests.unit.tasks.helpers import put_job

TOKEN = "to1234567890abcdefghijKL"
SPEC: dict[str, object] = {"source": "/videos/a.mp4", "video": {"title": "A"}}


@pytest.fixture
def ticking_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store timestamp is one second after the last, so creation order is unambiguous."""
    seconds = itertools.count(1_700_000_000)
    monkeypatch.setattr("tasks.jobstore._now", lambda: f"{next(seconds):.6f}")


def test_create_writes_a_queued_record(store: JobStore) -> None:
    assert store.create("j1", SPEC, TOKEN)
    job = store.get("j1")
    assert job is not None
    assert (job.job_id, job.state, job.spec, job.next_chunk, job.bytes_sent) == ("j1", State.QUEUED, SPEC, 0, 0)
    assert job.has_token
    assert store.token("j1") == TOKEN


def test_create_is_idempotent_and_keeps_the_original(store: JobStore) -> None:
    assert store.create("j1", SPEC, TOKEN)
    assert not store.create("j1", {"source": "/other"}, "to-other-token")
    job = store.get("j1")
    assert job is not None and job.spec == SPEC
    assert store.token("j1") == TOKEN
    assert store.redis.zcard(JOB_INDEX_KEY) == 1


def test_create_without_token(store: JobStore) -> None:
    assert store.create("j1", SPEC, None)
    job = store.get("j1")
    assert job is not None and not job.has_token
    assert store.token("j1") is None


def test_get_of_an_unknown_job_is_none(store: JobStore) -> None:
    assert store.get("nope") is None


def test_claim_gives_the_record_and_beats_the_heartbeat(store: JobStore) -> None:
    put_job(store, "j1")
    claim = store.claim("j1", "w1", ttl_s=30)
    assert claim.record is not None and claim.record.job_id == "j1"
    assert claim.record.heartbeat_at is not None
    assert store.lease_holder("j1") == "w1"
    assert 0 < store.redis.pttl(LEASE_KEY.format(job_id="j1")) <= 30_000


def test_second_holder_is_refused_and_told_who_holds(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=30)
    claim = store.claim("j1", "w2", ttl_s=30)
    assert claim.record is None
    assert claim.holder == "w1"
    assert store.lease_holder("j1") == "w1"


def test_the_holder_may_claim_again(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=30)
    assert store.claim("j1", "w1", ttl_s=30).record is not None


def test_claim_of_a_missing_job_takes_no_lease(store: JobStore) -> None:
    claim = store.claim("ghost", "w1", ttl_s=30)
    assert claim.record is None and claim.holder is None
    assert store.lease_holder("ghost") is None


def test_claim_after_the_lease_expired(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=30)
    store.redis.delete(LEASE_KEY.format(job_id="j1"))  # what expiry does
    assert store.claim("j1", "w2", ttl_s=30).record is not None
    assert store.lease_holder("j1") == "w2"


def test_update_with_matching_fence_writes(store: JobStore) -> None:
    put_job(store, "j1", state=State.UPLOADING, next_chunk=2)
    store.claim("j1", "w1", ttl_s=30)
    assert store.update("j1", "w1", {"next_chunk": 3, "bytes_sent": 100},
                        expect={"state": [State.UPLOADING], "next_chunk": [2]})
    job = store.get("j1")
    assert job is not None and (job.next_chunk, job.bytes_sent) == (3, 100)
    assert store.lease_holder("j1") == "w1"


def test_update_with_a_wrong_expected_value_writes_nothing(store: JobStore) -> None:
    put_job(store, "j1", state=State.UPLOADING, next_chunk=2)
    store.claim("j1", "w1", ttl_s=30)
    before = store.redis.hgetall(JOB_KEY.format(job_id="j1"))
    assert not store.update("j1", "w1", {"next_chunk": 2, "bytes_sent": 999}, expect={"next_chunk": [1]})
    assert store.redis.hgetall(JOB_KEY.format(job_id="j1")) == before


def test_update_accepts_any_of_the_allowed_values(store: JobStore) -> None:
    put_job(store, "j1", state=State.QUEUED)
    assert store.update("j1", None, {"size": 10}, expect={"state": [State.QUEUED, State.UPLOADING]})
    assert store.get("j1").size == 10  # type: ignore[union-attr]


def test_update_by_a_holder_without_the_lease_writes_nothing(store: JobStore) -> None:
    put_job(store, "j1", state=State.UPLOADING, next_chunk=2)
    store.claim("j1", "w1", ttl_s=30)
    assert not store.update("j1", "w2", {"next_chunk": 3}, expect={"next_chunk": [2]})
    assert store.get("j1").next_chunk == 2  # type: ignore[union-attr]
    assert store.lease_holder("j1") == "w1"


def test_update_after_the_lease_expired_writes_nothing(store: JobStore) -> None:
    put_job(store, "j1", next_chunk=2)
    store.claim("j1", "w1", ttl_s=30)
    store.redis.delete(LEASE_KEY.format(job_id="j1"))
    assert not store.update("j1", "w1", {"next_chunk": 3})
    assert store.get("j1").next_chunk == 2  # type: ignore[union-attr]


def test_update_with_release_drops_the_lease(store: JobStore) -> None:
    put_job(store, "j1", next_chunk=2)
    store.claim("j1", "w1", ttl_s=30)
    assert store.update("j1", "w1", {"next_chunk": 3}, expect={"next_chunk": [2]}, release=True)
    assert store.lease_holder("j1") is None
    assert store.claim("j1", "w2", ttl_s=30).record is not None


def test_refused_update_with_release_keeps_the_lease(store: JobStore) -> None:
    put_job(store, "j1", next_chunk=2)
    store.claim("j1", "w1", ttl_s=30)
    assert not store.update("j1", "w1", {"next_chunk": 3}, expect={"next_chunk": [5]}, release=True)
    assert store.lease_holder("j1") == "w1"


def test_operator_update_skips_the_lease_check(store: JobStore) -> None:
    put_job(store, "j1", state=State.UPLOADING)
    store.claim("j1", "w1", ttl_s=30)
    assert store.update("j1", None, {"state": State.CANCELLED}, expect={"state": [State.UPLOADING]})
    assert store.get("j1").state == State.CANCELLED  # type: ignore[union-attr]
    assert store.lease_holder("j1") == "w1"


def test_update_of_a_missing_job_creates_nothing(store: JobStore) -> None:
    assert not store.update("ghost", None, {"state": State.FAILED})
    assert not store.redis.exists(JOB_KEY.format(job_id="ghost"))


def test_update_writes_booleans_and_none_as_text(store: JobStore) -> None:
    put_job(store, "j1", error="boom")
    assert store.update("j1", None, {"error_retryable": True, "video_id": None})
    job = store.get("j1")
    assert job is not None and job.error_retryable and job.video_id is None


def test_renew_extends_only_our_lease(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=5)
    store.redis.hset(JOB_KEY.format(job_id="j1"), "heartbeat_at", "1.0")
    assert store.renew("j1", "w1", ttl_s=60)
    assert store.redis.pttl(LEASE_KEY.format(job_id="j1")) > 5_000
    assert store.get("j1").heartbeat_at > 1.0  # type: ignore[union-attr, operator]
    assert not store.renew("j1", "w2", ttl_s=60)
    assert store.lease_holder("j1") == "w1"


def test_renew_after_losing_the_lease_fails(store: JobStore) -> None:
    put_job(store, "j1")
    assert not store.renew("j1", "w1", ttl_s=60)
    assert store.lease_holder("j1") is None


def test_release_only_by_the_holder(store: JobStore) -> None:
    put_job(store, "j1")
    store.claim("j1", "w1", ttl_s=30)
    assert not store.release("j1", "w2")
    assert store.lease_holder("j1") == "w1"
    assert store.release("j1", "w1")
    assert store.lease_holder("j1") is None


def test_list_is_newest_first_and_filters_by_state(store: JobStore, ticking_clock: None) -> None:
    for job_id, state in (("old", State.DONE), ("mid", State.FAILED), ("new", State.UPLOADING)):
        put_job(store, job_id, state=state)
    assert [j.job_id for j in store.list()] == ["new", "mid", "old"]
    assert [j.job_id for j in store.list(states=[State.FAILED, State.DONE])] == ["mid", "old"]
    assert [j.job_id for j in store.list(states=["uploading"])] == ["new"]
    assert [j.job_id for j in store.list(limit=2)] == ["new", "mid"]


def test_list_and_public_never_carry_the_token(store: JobStore) -> None:
    put_job(store, "j1", token=TOKEN)
    listed = store.list()
    assert len(listed) == 1
    assert TOKEN not in repr(listed[0])
    assert not listed[0].has_token
    job = store.get("j1")
    assert job is not None and job.has_token
    public = job.public()
    assert TOKEN not in json.dumps(public)
    assert public["job_id"] == "j1" and public["state"] == "queued"
    assert TOKEN_FIELD not in public


def test_list_skips_index_entries_without_a_record(store: JobStore) -> None:
    put_job(store, "j1")
    store.redis.zadd(JOB_INDEX_KEY, {"dangling": 1})
    assert [j.job_id for j in store.list()] == ["j1"]


def test_forget_removes_record_lease_and_index_entry(store: JobStore) -> None:
    put_job(store, "j1", token=TOKEN)
    store.claim("j1", "w1", ttl_s=30)
    store.forget("j1")
    assert store.get("j1") is None
    assert store.lease_holder("j1") is None
    assert store.list() == []
    assert store.create("j1", SPEC, None)


def test_set_token_and_add_retry(store: JobStore) -> None:
    put_job(store, "j1")
    store.set_token("j1", TOKEN)
    store.add_retry("j1")
    store.add_retry("j1")
    job = store.get("j1")
    assert store.token("j1") == TOKEN
    assert job is not None and job.retries == 2 and job.has_token


def test_a_claim_for_a_step_already_done_leaves_the_lease_alone(store: JobStore) -> None:
    store.create("j-exp", {"source": "/x"}, "to-secret")
    store.update("j-exp", None, {"state": "uploading", "next_chunk": 3})
    stale = store.claim("j-exp", "dup", 30, expect={"state": ["uploading"], "next_chunk": [1]})
    assert stale.record is None and stale.mismatch == "next_chunk is 3" and stale.holder is None
    assert store.lease_holder("j-exp") is None
    current = store.claim("j-exp", "w1", 30, expect={"state": ["uploading"], "next_chunk": [3]})
    assert current.record is not None and current.token == "to-secret"
    assert "to-secret" not in repr(current)


def test_a_claim_for_the_current_step_held_elsewhere_names_holder_and_time_left(store: JobStore) -> None:
    store.create("j-busy", {"source": "/x"}, None)
    store.claim("j-busy", "w1", 30)
    busy = store.claim("j-busy", "w2", 30, expect={"next_chunk": [0]})
    assert busy.record is None and busy.holder == "w1" and 29 < busy.holder_ttl_s <= 30
