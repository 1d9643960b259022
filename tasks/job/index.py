"""Reading the job store: one record, pages of history, the active jobs, counts by state.

Every job is in the index of its state (a sorted set by creation time, kept by the same
scripts that change states), so what runs periodically or per scrape reads only the active
jobs, and a page of history reads only that page, however much history there is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import cast

import redis

from tasks.constants import (
    EXPIRY_KEY,
    JOB_INDEX_KEY,
    JOB_KEY,
    LEASE_KEY,
    OUTBOX_KEY,
    REVOKE_KEY,
    REVOKE_TOKEN_KEY,
    STATE_INDEX_KEY,
)
from tasks.job import scripts
from tasks.job.record import ACTIVE_STATES, JobRecord, State

# Every field a read returns; the token is never among them.
RECORD_FIELDS = ("job_id", "state", "spec", "size", "chunk_size", "chunks_total", "next_chunk", "bytes_sent",
                 "chunk_bytes", "video_id", "retries", "last_retry_reason", "error", "error_retryable",
                 "error_reason", "error_needs", "created_at", "updated_at", "ended_at", "heartbeat_at",
                 "handoff_at", "wake_at", "step_starts", "source_identity", "token_minted", "container_pending",
                 "verify_upload", "callback", "cleanup", "queue", "account", "token_only", "nonce",
                 "token_expires_at", "callback_attempts", "callback_again", "finished_at", "live_seen",
                 "live_grew_at", "moved_at", "traceparent")
PRUNE_BATCH = 1000
PAGE_BATCH = 200  # records read at a time for a filtered listing
PAGE_SCAN = 20_000  # a filtered listing reads at most this many records for one page
log = logging.getLogger(__name__)
MissingRecordHook = Callable[[str, str], None]  # (job id, index key)
_missing_record_hooks: list[MissingRecordHook] = []


class UnknownCursor(LookupError):
    """``before`` names a job that is not (or no longer) in the listing."""


class JobIndex:
    """Reads over the records and their indexes."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._now = client.register_script(scripts.NOW)
        self._prune = client.register_script(scripts.PRUNE)

    @staticmethod
    def on_missing_record(hook: MissingRecordHook) -> Callable[[], None]:
        """Call ``hook(job_id, index)`` for every id a listing found in an index with no record behind
        it (the workers count them in a metric); returns what removes the hook again."""
        _missing_record_hooks.append(hook)
        return lambda: _missing_record_hooks.remove(hook)

    def now(self) -> float:
        """Redis's clock: the one every time in a record is compared with."""
        return float(self._now(keys=[], args=[]))

    def get(self, job_id: str) -> JobRecord | None:
        records = self.records([job_id])
        return records[0] if records else None

    def lease_holder(self, job_id: str) -> str | None:
        holder = self.redis.get(LEASE_KEY.format(job_id=job_id))
        return str(holder) if holder else None

    def records(self, job_ids: Sequence[str], indexes: Mapping[str, str] | None = None) -> list[JobRecord]:
        """The records of ``job_ids`` that exist, in order (one round trip). ``indexes`` names the index
        each id was read from: an id there whose record is gone is logged and reported."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(JOB_KEY.format(job_id=job_id), RECORD_FIELDS)
        found, missing = [], {}
        for job_id, values in zip(job_ids, pipe.execute() if job_ids else [], strict=True):
            data = {k: v for k, v in zip(RECORD_FIELDS, values, strict=True) if v is not None}
            if data.get("job_id") and data.get("state"):
                found.append(JobRecord.from_hash(data))
            elif indexes and job_id in indexes:
                missing[job_id] = indexes[job_id]
        for job_id in self._lost(list(missing)):
            _missing_record(job_id, missing[job_id])
        return found

    def _lost(self, job_ids: list[str]) -> list[str]:
        """Those of ``job_ids`` whose record is gone before its retention ran out (a record that expired
        keeps its index entries until the janitor's next prune: not lost)."""
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.zscore(EXPIRY_KEY, job_id)
        expiries, now = pipe.execute(), self.now()
        return [job_id for job_id, at in zip(job_ids, expiries, strict=True) if at is None or float(at) > now + 1]

    def page(self, states: Iterable[str] | None = None, limit: int = 100, before: str | None = None) -> list[JobRecord]:
        """Newest first, at most ``limit``, optionally only in ``states``, only older than the job ``before``
        (a cursor: the last id of the previous page)."""
        return self._page(list(states) if states else None, limit, before)

    def filtered_page(self, matches: Callable[[JobRecord], bool], states: Iterable[str] | None = None,
                      limit: int = 100, before: str | None = None) -> tuple[list[JobRecord], str | None]:
        """Like ``page``, only those ``matches`` keeps (an account, a tenant): read ``PAGE_BATCH`` records at a
        time until enough match, at most ``PAGE_SCAN``. Also the cursor to go on from when the scan stopped
        short of ``limit`` with records left to read (None: nothing left, or the page is full)."""
        states = list(states) if states else None
        found: list[JobRecord] = []
        scanned = 0
        while len(found) < limit:
            if scanned >= PAGE_SCAN:
                return found, before
            batch = self._page(states, PAGE_BATCH, before)
            found += [job for job in batch if matches(job)]
            scanned += len(batch)
            if len(batch) < PAGE_BATCH:
                break
            before = batch[-1].job_id
        return found[:limit], None

    def _page(self, states: list[str] | None, limit: int, before: str | None) -> list[JobRecord]:
        keys = [STATE_INDEX_KEY.format(state=State(s)) for s in states] if states else [JOB_INDEX_KEY]
        top = "+inf"
        if before is not None:
            score = self.redis.zscore(JOB_INDEX_KEY, before)
            if score is None:
                raise UnknownCursor(f"no job {before!r} to list from")
            top = repr(score)
        entries: list[tuple[float, str]] = []
        sources: dict[str, str] = {}
        for key in keys:
            found = cast(list[tuple[str, float]],
                         self.redis.zrevrangebyscore(key, top, "-inf", start=0, num=limit + 64, withscores=True))
            entries += [(float(score), str(job_id)) for job_id, score in found]
            sources.update((str(job_id), key) for job_id, _ in found)
        entries.sort(reverse=True)
        if before is not None:  # entries with the cursor's own score come first; skip to past it
            cursor_score = float(top)
            entries = [e for e in entries if e[0] < cursor_score or (e[0] == cursor_score and e[1] < before)]
        return self.records([job_id for _, job_id in entries[:limit]], sources)

    def active(self) -> list[JobRecord]:
        """Every queued, uploading or finalizing job: what the janitor and the metrics read."""
        sources: dict[str, str] = {}
        for state in ACTIVE_STATES:
            sources.update((job_id, STATE_INDEX_KEY.format(state=state)) for job_id in self.ids_in(state))
        return self.records(list(sources), sources)

    def ids_in(self, state: State) -> list[str]:
        return [str(i) for i in cast(list[str], self.redis.zrange(STATE_INDEX_KEY.format(state=state), 0, -1))]

    def counts(self) -> dict[str, int]:
        """Jobs by state (a failed or done job counts until its record expires)."""
        pipe = self.redis.pipeline(transaction=False)
        for state in State:
            pipe.zcard(STATE_INDEX_KEY.format(state=state))
        return {str(state): int(n) for state, n in zip(State, pipe.execute(), strict=True)}

    def leases(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job's lease is held right now."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(LEASE_KEY.format(job_id=job_id))
        return [bool(n) for n in pipe.execute()] if job_ids else []

    def prune_expired(self, limit: int = PRUNE_BATCH) -> int:
        """Forget the index entries of records whose retention ran out; how many were pruned."""
        keys = [JOB_INDEX_KEY, *(STATE_INDEX_KEY.format(state=s) for s in State), EXPIRY_KEY, OUTBOX_KEY]
        return int(self._prune(keys=keys, args=[limit, JOB_KEY.format(job_id="")]))

    # -- tokens vuq minted, owed their deletion at api.video once their job ended ------------------
    def revocations_due(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Jobs whose minted token has waited ``older_than_s`` for its deletion (its worker went away)."""
        until = self.now() - older_than_s
        return [str(i) for i in cast(list[str], self.redis.zrangebyscore(REVOKE_KEY, "-inf", repr(until), start=0,
                                                                          num=limit))]

    def revocation(self, job_id: str) -> tuple[str, str] | None:
        """The minted token an ended job owes the deletion of, and its account; None when none is owed."""
        owed = cast(dict[str, str], self.redis.hgetall(REVOKE_TOKEN_KEY.format(job_id=job_id)))
        return (owed["token"], owed.get("account", "")) if owed.get("token") else None

    def revoked(self, job_id: str) -> None:
        """The token was deleted at api.video (or is gone there): nothing is owed any more."""
        pipe = self.redis.pipeline()
        pipe.delete(REVOKE_TOKEN_KEY.format(job_id=job_id))
        pipe.zrem(REVOKE_KEY, job_id)
        pipe.execute()

    # -- the webhook outbox: completion webhooks a job owes, recorded with its final state ------
    def outbox_due(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Jobs whose webhook has been owed, with no delivery attempt, for ``older_than_s``."""
        until = self.now() - older_than_s
        return [str(i) for i in cast(list[str], self.redis.zrangebyscore(OUTBOX_KEY, "-inf", repr(until), start=0,
                                                                          num=limit))]

    def outbox_later(self, job_id: str, in_s: float) -> None:
        """A delivery is under way (or due in ``in_s``): the janitor waits from then on."""
        self.redis.zadd(OUTBOX_KEY, {job_id: self.now() + in_s}, xx=True)

    def outbox_owed(self, job_id: str) -> None:
        """The job owes its webhook (again) from now on."""
        self.redis.zadd(OUTBOX_KEY, {job_id: self.now()})

    def outbox_done(self, job_id: str) -> None:
        """The webhook was delivered, or will never be."""
        self.redis.zrem(OUTBOX_KEY, job_id)


def _missing_record(job_id: str, index: str) -> None:
    """An index entry with no record behind it: the scripts keep both in one write, so this is a
    Redis that lost keys (eviction, a restart without AOF) or a hand-made edit."""
    log.warning("job %s is listed in %s but its record is gone", job_id, index)
    for hook in list(_missing_record_hooks):
        try:
            hook(job_id, index)
        except Exception:  # a counter must never break a listing
            log.exception("the missing-record hook %r failed", hook)
