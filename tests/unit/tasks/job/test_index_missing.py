"""tasks.job.index: an id an index lists whose record is gone is logged (once per listing, with the
index) and reported to the hook the workers count it with; an expired record is not "missing"."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tasks.constants import JOB_INDEX_KEY, JOB_KEY, STATE_INDEX_KEY
from tasks.job.record import State
from tasks.job.store import JobStore
from tests.unit.tasks.helpers import expire, put_job

Missing = list[tuple[str, str]]


@pytest.fixture
def reported() -> Iterator[Missing]:
    found: Missing = []
    remove = JobStore.on_missing_record(lambda job_id, index: found.append((job_id, index)))
    yield found
    remove()


def lose(store: JobStore, job_id: str) -> None:
    """What an evicting Redis (or a restart without AOF) does: the record goes, its index entries stay."""
    store.redis.delete(JOB_KEY.format(job_id=job_id))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "tasks.job.index"]


def test_a_lost_active_record_is_logged_once_per_listing_and_reported(
        store: JobStore, reported: Missing, caplog: pytest.LogCaptureFixture) -> None:
    put_job(store, "kept")
    put_job(store, "lost", state=State.UPLOADING)
    lose(store, "lost")
    uploading = STATE_INDEX_KEY.format(state=State.UPLOADING)
    with caplog.at_level(logging.WARNING, logger="tasks.job.index"):
        assert [job.job_id for job in store.active()] == ["kept"]
    assert reported == [("lost", uploading)]
    assert warnings(caplog) == [f"job lost is listed in {uploading} but its record is gone"]
    with caplog.at_level(logging.WARNING, logger="tasks.job.index"):
        store.active()
    assert len(reported) == 2 and len(warnings(caplog)) == 2  # once per call, every call


def test_a_page_names_the_index_it_read(store: JobStore, reported: Missing) -> None:
    put_job(store, "a")
    put_job(store, "b", state=State.FAILED)
    lose(store, "b")
    assert [job.job_id for job in store.page()] == ["a"]
    assert [job.job_id for job in store.page(states=[State.FAILED, State.QUEUED])] == ["a"]
    assert reported == [("b", JOB_INDEX_KEY), ("b", STATE_INDEX_KEY.format(state=State.FAILED))]


def test_an_expired_record_is_not_missing(store: JobStore, reported: Missing,
                                          caplog: pytest.LogCaptureFixture) -> None:
    put_job(store, "old", state=State.DONE)
    expire(store, "old")  # its retention ran out; the janitor's next prune forgets its entries
    with caplog.at_level(logging.WARNING, logger="tasks.job.index"):
        assert store.page() == []
    assert reported == [] and warnings(caplog) == []


def test_a_direct_lookup_of_an_unknown_id_is_not_missing(store: JobStore, reported: Missing,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tasks.job.index"):
        assert store.get("nobody") is None
        assert store.records(["nobody"]) == []
    assert reported == [] and warnings(caplog) == []


def test_a_failing_hook_never_breaks_a_listing(store: JobStore, reported: Missing) -> None:
    def broken(job_id: str, index: str) -> None:
        raise RuntimeError("counter gone")

    remove = JobStore.on_missing_record(broken)
    try:
        put_job(store, "lost")
        lose(store, "lost")
        assert store.active() == []
    finally:
        remove()
    assert reported == [("lost", STATE_INDEX_KEY.format(state=State.QUEUED))]  # the other hooks still ran
