"""tasks.job.scripts through the store, on fakeredis and on a real Redis: what the scripts keep in step with
the records. The per-state indexes through every transition, retention of ended jobs (TTL, expiry
entry, the token erased), the webhook outbox, pruning of expired entries, and the reads over the
indexes (pages with a cursor, active jobs, counts, leases)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from tasks.constants import EXPIRY_KEY, JOB_INDEX_KEY, JOB_KEY, OUTBOX_KEY, STATE_INDEX_KEY
from tasks.job.index import UnknownCursor
from tasks.job.record import JobRecord, State
from tasks.job.spec import UploadSpec
from tasks.job.store import NOW, JobStore
from tests.support.secrets import has_token
from tests.unit.tasks.helpers import assert_indexes_agree, both_backends, expire, put_job, raw, record, wait_until

pytestmark = both_backends

TOKEN = "to1234567890abcdefghijKL"
HOOKED = UploadSpec("/videos/h.mp4", callback_url="https://example.com/hook")
KEEP_DONE_S, KEEP_FAILED_S = 100, 1000


@pytest.fixture
def kept(store: JobStore) -> JobStore:
    """A store on the same Redis with short, distinct retentions."""
    return JobStore(store.redis, keep_done_s=KEEP_DONE_S, keep_failed_s=KEEP_FAILED_S)


def to(store: JobStore, job_id: str, state: State, **changes: object) -> float:
    """Move a job to ``state`` as an operator would (fenced by nothing but its existence)."""
    written = store.update(job_id, None, {"state": state, **changes})
    assert written.ok and written.at is not None, written.why
    return written.at


def ttl_ms(store: JobStore, job_id: str) -> int:
    return int(store.redis.pttl(JOB_KEY.format(job_id=job_id)))


def ids(jobs: Sequence[JobRecord]) -> list[str]:
    return [job.job_id for job in jobs]


# -- the per-state indexes -----------------------------------------------------------------
def test_the_indexes_follow_a_job_from_queued_to_done(store: JobStore) -> None:
    put_job(store, "j1", TOKEN)
    put_job(store, "other")
    assert assert_indexes_agree(store)["queued"] == {"j1", "other"}
    store.claim("j1", "w1", 30)
    assert store.update("j1", "w1", {"state": State.UPLOADING, "chunks_total": 2}, expect={"state": [State.QUEUED]})
    assert assert_indexes_agree(store)["uploading"] == {"j1"}
    assert store.update("j1", "w1", {"state": State.FINALIZING, "next_chunk": 2}, release=True)
    assert assert_indexes_agree(store)["finalizing"] == {"j1"}
    store.claim("j1", "w2", 30)
    assert store.update("j1", "w2", {"state": State.DONE}, expect={"state": [State.FINALIZING]}, release=True)
    by_state = assert_indexes_agree(store)
    assert (by_state["done"], by_state["queued"], by_state["uploading"], by_state["finalizing"]) == (
        {"j1"}, {"other"}, set(), set())
    assert store.counts() == {"queued": 1, "uploading": 0, "finalizing": 0, "done": 1, "failed": 0, "cancelled": 0}


def test_the_indexes_follow_a_failure_a_resume_and_a_cancel(store: JobStore) -> None:
    put_job(store, "j1", TOKEN, state=State.UPLOADING, next_chunk=1)
    to(store, "j1", State.FAILED, error="boom")
    assert assert_indexes_agree(store)["failed"] == {"j1"}
    to(store, "j1", State.UPLOADING, error="")
    assert assert_indexes_agree(store)["uploading"] == {"j1"}
    to(store, "j1", State.CANCELLED)
    by_state = assert_indexes_agree(store)
    assert by_state["cancelled"] == {"j1"} and by_state["failed"] == by_state["uploading"] == set()


def test_jobs_created_in_each_state_are_counted_there(store: JobStore) -> None:
    for state in State:
        put_job(store, f"job-{state}", state=state)
    put_job(store, "second-failed", state=State.FAILED)
    by_state = assert_indexes_agree(store)
    assert by_state == {str(s): {f"job-{s}"} | ({"second-failed"} if s == State.FAILED else set()) for s in State}
    assert store.counts()["failed"] == 2


def test_a_refused_state_change_leaves_the_indexes(store: JobStore) -> None:
    put_job(store, "j1")
    assert not store.update("j1", None, {"state": State.DONE}, expect={"state": [State.UPLOADING]})
    assert assert_indexes_agree(store)["queued"] == {"j1"}


def test_writing_the_same_state_again_changes_no_index(store: JobStore) -> None:
    put_job(store, "j1", state=State.UPLOADING)
    to(store, "j1", State.UPLOADING, next_chunk=1)
    assert assert_indexes_agree(store)["uploading"] == {"j1"}
    assert record(store, "j1").ended_at is None


# -- retention, the token, ended_at ---------------------------------------------------------
@pytest.mark.parametrize(("state", "keep_s"), [(State.DONE, KEEP_DONE_S), (State.CANCELLED, KEEP_DONE_S),
                                               (State.FAILED, KEEP_FAILED_S)])
def test_an_ended_job_expires_after_its_retention(kept: JobStore, state: State, keep_s: int) -> None:
    put_job(kept, "j1", TOKEN, state=State.UPLOADING)
    assert ttl_ms(kept, "j1") == -1  # an active job never expires
    ended = to(kept, "j1", state)
    assert record(kept, "j1").ended_at == ended
    assert (keep_s - 5) * 1000 < ttl_ms(kept, "j1") <= keep_s * 1000
    assert kept.redis.zscore(EXPIRY_KEY, "j1") == pytest.approx(ended + keep_s, abs=1e-3)


def test_a_retention_of_zero_keeps_ended_jobs_forever(store: JobStore) -> None:
    forever = JobStore(store.redis, keep_done_s=0, keep_failed_s=0)
    for job_id, state in (("d", State.DONE), ("f", State.FAILED), ("c", State.CANCELLED)):
        put_job(forever, job_id, state=State.UPLOADING)
        to(forever, job_id, state)
        assert ttl_ms(forever, job_id) == -1
        assert record(forever, job_id).ended_at is not None
    assert forever.redis.zcard(EXPIRY_KEY) == 0


def test_a_job_created_failed_gets_the_failed_retention(kept: JobStore) -> None:
    created = kept.create(UploadSpec("/x", job_id="bad"), state=State.FAILED, error="source: missing")
    assert created.created and created.at is not None
    assert (KEEP_FAILED_S - 5) * 1000 < ttl_ms(kept, "bad") <= KEEP_FAILED_S * 1000
    assert kept.redis.zscore(EXPIRY_KEY, "bad") == pytest.approx(created.at + KEEP_FAILED_S, abs=1e-3)


def test_resuming_a_failed_job_removes_its_retention(kept: JobStore) -> None:
    put_job(kept, "j1", TOKEN, state=State.UPLOADING)
    to(kept, "j1", State.FAILED)
    assert ttl_ms(kept, "j1") > 0 and kept.redis.zscore(EXPIRY_KEY, "j1") is not None
    to(kept, "j1", State.UPLOADING)
    assert ttl_ms(kept, "j1") == -1
    assert kept.redis.zscore(EXPIRY_KEY, "j1") is None
    assert record(kept, "j1").ended_at is None
    assert has_token(kept, "j1")


def test_a_job_that_ends_again_gets_its_retention_again(kept: JobStore) -> None:
    put_job(kept, "j1", state=State.UPLOADING)
    to(kept, "j1", State.FAILED)
    to(kept, "j1", State.UPLOADING)
    ended = to(kept, "j1", State.DONE)
    assert (KEEP_DONE_S - 5) * 1000 < ttl_ms(kept, "j1") <= KEEP_DONE_S * 1000
    assert kept.redis.zscore(EXPIRY_KEY, "j1") == pytest.approx(ended + KEEP_DONE_S, abs=1e-3)


@pytest.mark.parametrize(("state", "keeps_token"), [(State.DONE, False), (State.CANCELLED, False),
                                                    (State.FAILED, True)])
def test_the_token_is_erased_when_a_job_is_done_or_cancelled_and_kept_when_it_failed(
        store: JobStore, state: State, keeps_token: bool) -> None:
    put_job(store, "j1", TOKEN, state=State.UPLOADING)
    to(store, "j1", state)
    assert has_token(store, "j1") is keeps_token
    assert (TOKEN in raw(store, "j1").values()) is keeps_token


# -- the webhook outbox --------------------------------------------------------------------
@pytest.mark.parametrize("state", [State.DONE, State.FAILED, State.CANCELLED])
def test_a_job_with_a_callback_owes_its_webhook_when_it_ends(store: JobStore, state: State) -> None:
    put_job(store, "hooked", spec=HOOKED, state=State.UPLOADING)
    put_job(store, "plain", state=State.UPLOADING)
    assert store.redis.zcard(OUTBOX_KEY) == 0  # owed only once it ends
    ended = to(store, "hooked", state)
    to(store, "plain", state)
    assert store.redis.zscore(OUTBOX_KEY, "hooked") == pytest.approx(ended, abs=1e-3)
    assert store.redis.zscore(OUTBOX_KEY, "plain") is None


def test_a_job_created_without_notify_owes_no_webhook(store: JobStore) -> None:
    assert store.create(replace(HOOKED, job_id="quiet"), notify=False, state=State.FAILED).created
    assert store.create(replace(HOOKED, job_id="quiet2"), notify=False).created
    to(store, "quiet2", State.DONE)
    assert store.redis.zcard(OUTBOX_KEY) == 0


def test_a_job_created_failed_with_a_callback_owes_it_at_once(store: JobStore) -> None:
    created = store.create(replace(HOOKED, job_id="bad"), state=State.FAILED, error="title: too long")
    assert store.redis.zscore(OUTBOX_KEY, "bad") == pytest.approx(created.at, abs=1e-3)


def test_outbox_due_later_and_done(store: JobStore) -> None:
    put_job(store, "j1", spec=HOOKED, state=State.DONE)
    put_job(store, "j2", spec=HOOKED, state=State.DONE)
    assert store.outbox_due(older_than_s=60) == []
    store.redis.zadd(OUTBOX_KEY, {"j1": store.now() - 120})
    assert store.outbox_due(older_than_s=60) == ["j1"]
    assert sorted(store.outbox_due(older_than_s=0)) == ["j1", "j2"]
    store.outbox_later("j1", 30)
    assert store.redis.zscore(OUTBOX_KEY, "j1") == pytest.approx(store.now() + 30, abs=5)
    assert store.outbox_due(older_than_s=0) == ["j2"]
    store.outbox_later("nobody", 0)  # only a webhook that is owed is pushed forward
    assert store.redis.zscore(OUTBOX_KEY, "nobody") is None
    store.outbox_done("j2")
    assert store.redis.zrange(OUTBOX_KEY, 0, -1) == ["j1"]


# -- prune_expired -------------------------------------------------------------------------
def test_prune_forgets_a_record_whose_retention_ran_out(store: JobStore) -> None:
    brief = JobStore(store.redis, keep_done_s=1, keep_failed_s=1)
    put_job(brief, "j1", spec=HOOKED, state=State.UPLOADING)
    put_job(brief, "stays")
    to(brief, "j1", State.DONE)
    assert brief.prune_expired() == 0  # not due yet
    wait_until(lambda: not brief.redis.exists(JOB_KEY.format(job_id="j1")), what="the record's expiry")
    assert brief.prune_expired() == 1
    assert not brief.redis.exists(JOB_KEY.format(job_id="j1"))
    for key in (JOB_INDEX_KEY, STATE_INDEX_KEY.format(state=State.DONE), EXPIRY_KEY, OUTBOX_KEY):
        assert brief.redis.zscore(key, "j1") is None, key
    assert assert_indexes_agree(brief)["queued"] == {"stays"}


def test_prune_forgets_every_entry_of_an_expired_job(store: JobStore) -> None:
    put_job(store, "j1", spec=HOOKED, state=State.FAILED)
    expire(store, "j1")
    assert store.prune_expired() == 1
    for key in (JOB_INDEX_KEY, STATE_INDEX_KEY.format(state=State.FAILED), EXPIRY_KEY, OUTBOX_KEY):
        assert store.redis.zscore(key, "j1") is None, key
    assert sum(store.counts().values()) == 0


def test_prune_leaves_what_is_not_due(store: JobStore) -> None:
    put_job(store, "j1", state=State.DONE)
    store.redis.delete(JOB_KEY.format(job_id="j1"))  # gone early: its entries go when its expiry is due
    assert store.prune_expired() == 0
    assert store.ids_in(State.DONE) == ["j1"]
    assert store.redis.zscore(EXPIRY_KEY, "j1") is not None


def test_prune_takes_at_most_its_limit(store: JobStore) -> None:
    for n in range(3):
        put_job(store, f"j{n}", state=State.DONE)
        expire(store, f"j{n}")
    assert store.prune_expired(limit=2) == 2
    assert len(store.ids_in(State.DONE)) == 1
    assert store.prune_expired(limit=2) == 1
    assert store.ids_in(State.DONE) == []


def test_prune_leaves_an_id_created_anew_alone(store: JobStore) -> None:
    put_job(store, "j1", state=State.DONE)
    expire(store, "j1")
    created = store.create(UploadSpec("/videos/again.mp4", job_id="j1", token=TOKEN))
    assert created.created
    store.prune_expired()
    job = record(store, "j1")
    assert job.state == State.QUEUED and job.spec == UploadSpec("/videos/again.mp4", job_id="j1")
    assert has_token(store, "j1")
    assert store.redis.zscore(JOB_INDEX_KEY, "j1") == created.at
    assert store.ids_in(State.QUEUED) == ["j1"]
    assert store.redis.zscore(EXPIRY_KEY, "j1") is None


def test_an_id_created_anew_is_only_in_its_new_state(store: JobStore) -> None:
    put_job(store, "j1", state=State.DONE)
    expire(store, "j1")
    assert store.create(UploadSpec("/videos/again.mp4", job_id="j1")).created
    store.prune_expired()
    assert store.ids_in(State.DONE) == []
    assert store.counts()["done"] == 0


def test_a_record_that_expires_just_after_its_entry_was_due_is_still_pruned(kept: JobStore) -> None:
    put_job(kept, "j1", state=State.UPLOADING)
    to(kept, "j1", State.DONE)
    kept.redis.zadd(EXPIRY_KEY, {"j1": kept.now() - 0.0005})  # the entry is due; the record lives its last moment
    assert kept.prune_expired() == 0
    again = kept.redis.zscore(EXPIRY_KEY, "j1")  # looked at again when the record's own TTL runs out
    assert again is not None and again > kept.now() and kept.ids_in(State.DONE) == ["j1"]
    kept.redis.delete(JOB_KEY.format(job_id="j1"))  # and now it expires
    kept.redis.zadd(EXPIRY_KEY, {"j1": kept.now() - 0.0005})
    assert kept.prune_expired() == 1
    assert kept.ids_in(State.DONE) == []
    assert kept.counts()["done"] == 0


def test_prune_counts_only_what_it_pruned(store: JobStore) -> None:
    put_job(store, "j1", state=State.DONE)
    expire(store, "j1")
    assert store.create(UploadSpec("/videos/again.mp4", job_id="j1")).created
    assert store.prune_expired() == 0


# -- pages ---------------------------------------------------------------------------------
@pytest.fixture
def history(store: JobStore) -> list[str]:
    """Five jobs created in this order (a oldest): a done, b failed, c uploading, d queued, e cancelled."""
    for job_id, state in (("a", State.DONE), ("b", State.FAILED), ("c", State.UPLOADING), ("d", State.QUEUED),
                          ("e", State.CANCELLED)):
        put_job(store, job_id, TOKEN, state=state)
    created = [record(store, job_id).created_at for job_id in "abcde"]
    assert created == sorted(set(created)), "creation times must increase for these tests"
    return list("abcde")


def test_a_page_is_newest_first(store: JobStore, history: list[str]) -> None:
    assert ids(store.page()) == ["e", "d", "c", "b", "a"]


def test_a_page_filters_by_one_or_several_states(store: JobStore, history: list[str]) -> None:
    assert ids(store.page(states=[State.FAILED, State.DONE])) == ["b", "a"]
    assert ids(store.page(states=["uploading", "queued", "cancelled"])) == ["e", "d", "c"]
    assert ids(store.page(states=["finalizing"])) == []


def test_a_page_has_at_most_limit_jobs(store: JobStore, history: list[str]) -> None:
    assert ids(store.page(limit=2)) == ["e", "d"]
    assert ids(store.page(states=[State.FAILED, State.DONE, State.QUEUED], limit=2)) == ["d", "b"]


def test_before_continues_after_the_cursor(store: JobStore, history: list[str]) -> None:
    assert ids(store.page(limit=2, before="d")) == ["c", "b"]
    assert ids(store.page(before="a")) == []
    assert ids(store.page(states=[State.FAILED, State.DONE], before="c")) == ["b", "a"]  # a cursor of any state


def test_pages_chained_by_their_last_id_list_every_job_once(store: JobStore, history: list[str]) -> None:
    seen: list[str] = []
    before: str | None = None
    while page := store.page(limit=2, before=before):
        seen += ids(page)
        before = page[-1].job_id
    assert seen == ["e", "d", "c", "b", "a"]


def test_pages_of_jobs_created_at_the_same_moment_list_each_once(store: JobStore) -> None:
    for n in range(7):
        put_job(store, f"j{n}", state=State.FAILED if n % 2 else State.DONE)
    same = {f"j{n}": 1_800_000_000.5 for n in range(7)}  # as if all were created in one microsecond
    store.redis.zadd(JOB_INDEX_KEY, same)
    for n in range(7):
        state = State.FAILED if n % 2 else State.DONE
        store.redis.zadd(STATE_INDEX_KEY.format(state=state), {f"j{n}": same[f"j{n}"]})
    for states in (None, [State.DONE, State.FAILED]):
        seen: list[str] = []
        before: str | None = None
        while page := store.page(states=states, limit=3, before=before):
            seen += ids(page)
            before = page[-1].job_id
        assert seen == [f"j{n}" for n in reversed(range(7))], states


def test_a_filtered_page_keeps_the_matching_jobs_newest_first(store: JobStore, history: list[str]) -> None:
    vowels = lambda job: job.job_id in "ae"  # noqa: E731
    assert [ids(found) for found, _ in [store.filtered_page(vowels)]] == [["e", "a"]]
    assert store.filtered_page(vowels, limit=1) == (store.page(limit=1), None)  # full: the caller goes on
    assert ids(store.filtered_page(vowels, states=[State.DONE, State.FAILED])[0]) == ["a"]
    assert ids(store.filtered_page(vowels, before="d")[0]) == ["a"]


def test_a_filtered_scan_that_stops_early_says_where_to_go_on(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing reads at most PAGE_SCAN records for one page; stopping short, it gives the cursor of the
    last one read, and following those cursors finds every match."""
    for n in range(9):
        put_job(store, f"j{n}")
    monkeypatch.setattr("tasks.job.index.PAGE_BATCH", 2)
    monkeypatch.setattr("tasks.job.index.PAGE_SCAN", 4)
    rare = lambda job: job.job_id in ("j0", "j7")  # noqa: E731
    found, go_on = store.filtered_page(rare, limit=5)
    assert (ids(found), go_on) == (["j7"], "j5")  # j8..j5 read, j4 and older not yet
    found, go_on = store.filtered_page(rare, limit=5, before=go_on)
    assert (ids(found), go_on) == ([], "j1")
    assert store.filtered_page(rare, limit=5, before=go_on) == ([record(store, "j0")], None)  # read to the end


def test_an_unknown_cursor_is_refused(store: JobStore, history: list[str]) -> None:
    with pytest.raises(UnknownCursor, match="nope"):
        store.page(before="nope")
    expire(store, "a")
    store.prune_expired()
    with pytest.raises(UnknownCursor):
        store.page(before="a")


def test_a_page_skips_records_that_vanished(store: JobStore, history: list[str]) -> None:
    store.redis.delete(JOB_KEY.format(job_id="c"))
    assert ids(store.page()) == ["e", "d", "b", "a"]
    assert ids(store.page(states=[State.UPLOADING])) == []


def test_reads_never_carry_the_token(store: JobStore, history: list[str]) -> None:
    jobs = store.page() + store.active() + store.records(history)
    assert len(jobs) == 5 + 2 + 5
    assert all(TOKEN not in repr(job) and TOKEN not in repr(job.public()) for job in jobs)


# -- other reads ---------------------------------------------------------------------------
def test_active_reads_the_queued_uploading_and_finalizing_jobs(store: JobStore, history: list[str]) -> None:
    put_job(store, "f", state=State.FINALIZING)
    assert sorted(ids(store.active())) == ["c", "d", "f"]


def test_records_keeps_the_order_and_skips_the_missing(store: JobStore, history: list[str]) -> None:
    assert ids(store.records(["c", "ghost", "a"])) == ["c", "a"]
    assert store.records([]) == []
    assert store.get("ghost") is None


def test_leases_say_which_jobs_are_held(store: JobStore, history: list[str]) -> None:
    store.claim("c", "w1", 30)
    assert store.leases(["c", "d", "ghost"]) == [True, False, False]
    assert store.leases([]) == []
    assert store.lease_holder("c") == "w1" and store.lease_holder("d") is None


def test_now_is_redis_time_and_moves_forward(store: JobStore) -> None:
    put_job(store, "j1")
    first = store.now()
    written = store.update("j1", None, {"heartbeat_at": NOW})
    assert written.at is not None and first <= written.at <= store.now()
