"""The Redis job store: records, leases and fenced updates.

Every write that changes a job is one Lua script (``tasks.job.scripts``): atomic, one round trip,
and fenced. A worker's write names its lease (``holder``); an operator's or the janitor's
names the state (and cursor) it expects. A write whose fence does not hold changes
nothing, so a duplicated, late or stale message can never move a job it does not hold.
A step whose lease lapsed while nobody else took the job may ``reclaim`` it, provided the
record is still where the step expects it. Reads and listings are in ``tasks.job.index``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, NamedTuple, cast

import redis

from tasks.constants import (
    DEFAULT_FAILED_JOB_RETENTION_S,
    DEFAULT_JOB_RETENTION_S,
    DELAYED_KEY,
    EXPIRY_KEY,
    JOB_INDEX_KEY,
    JOB_KEY,
    LEASE_KEY,
    LIVE_WAITING_KEY,
    OUTBOX_KEY,
    REJECTED_KEY,
    REVOKE_KEY,
    REVOKE_TOKEN_KEY,
    STATE_INDEX_KEY,
    TAKEN_KEY,
    TAKEN_STEP_TIMEOUT_S,
    UNREADABLE_KEY,
)
from tasks.job import scripts
from tasks.job.connections import SentinelOptions, redis_client
from tasks.job.index import JobIndex
from tasks.job.record import TOKEN_FIELD, JobRecord, State
from tasks.job.spec import UploadSpec

if TYPE_CHECKING:
    from tasks.settings import Settings

Expect = Mapping[str, Iterable[object]]
REPLICATION_WAIT_MS = 1000
NOW = "\x00@now"  # a field value written as Redis's current time (no real value starts with NUL)


@dataclass(frozen=True)
class Claim:
    """The outcome of ``claim``: the record if the lease is ours, else who holds it."""

    record: JobRecord | None
    holder: str | None = None  # who holds the lease, when it is not ours
    holder_ttl_s: float = 0.0
    mismatch: str | None = None  # which expectation the record did not meet ("next_chunk is 7")
    token: str | None = field(default=None, repr=False)  # read in the same round trip as the record


@dataclass(frozen=True)
class Written:
    """The outcome of a fenced write: whether it happened, why not, and Redis's time if it did."""

    ok: bool
    why: str = ""
    at: float | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Created:
    """The outcome of ``create``: new, or the existing job's spec hash and state."""

    created: bool
    at: float | None = None
    spec_hash: str = ""
    state: str = ""
    replicated: int = 0

    def __bool__(self) -> bool:
        return self.created

    def conflicts(self, spec_hash: str) -> bool:
        """The id was in use by a job with another spec (an idempotency key used twice)."""
        return not self.created and bool(self.spec_hash) and self.spec_hash != spec_hash


class Due(NamedTuple):
    """What ``pop_due`` took: Redis's time, the steps, and the seconds until the earliest one left is due
    (None: none is left)."""

    now: float
    members: list[str]
    next_in: float | None


class JobStore(JobIndex):
    """Job records in Redis. ``client`` must decode responses (``decode_responses=True``).
    Ended jobs expire after ``keep_done_s`` (done, cancelled) or ``keep_failed_s`` (failed); 0 keeps."""

    def __init__(self, client: redis.Redis, keep_done_s: int = DEFAULT_JOB_RETENTION_S,
                 keep_failed_s: int = DEFAULT_FAILED_JOB_RETENTION_S) -> None:
        super().__init__(client)
        self.keep = [keep_done_s, keep_failed_s]
        self._create = client.register_script(scripts.CREATE)
        self._enqueue = client.register_script(scripts.ENQUEUE)
        self._count_attempt = client.register_script(scripts.COUNT_ATTEMPT)
        self._claim = client.register_script(scripts.CLAIM)
        self._renew = client.register_script(scripts.RENEW)
        self._update = client.register_script(scripts.UPDATE)
        self._schedule = client.register_script(scripts.SCHEDULE)
        self._pop_due = client.register_script(scripts.POP_DUE)
        self._forget = client.register_script(scripts.FORGET)

    def create(self, spec: UploadSpec, notify: bool = True, replicas: int = 0, fingerprint: str | None = None,
               **fields: object) -> Created:
        """Create the queued job ``spec.job_id`` atomically (or, with ``state=…`` in ``fields``, one that
        starts there): its spec as JSON, its token apart. An id in use is left alone and its spec's
        fingerprint and state returned. ``notify``: the job owes its ``callback_url`` a webhook when it
        ends. ``replicas``: wait (up to a second) until that many replicas hold the write
        (``Created.replicated`` says how many did). ``fingerprint``: "" records none."""
        job_id = _job_id(spec)
        args: list[str | int] = [*self.keep, job_id, *_flatten(_values(spec, notify, fingerprint, fields))]
        if replicas:  # WAIT covers the writes of its own connection: one pipeline, one connection
            pipe = self.redis.pipeline(transaction=False)
            self._create(keys=job_keys(job_id), args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, REPLICATION_WAIT_MS)
            result, acked = pipe.execute()
        else:
            result, acked = self._create(keys=job_keys(job_id), args=args), 0
        return _created(result, acked)

    def create_many(self, jobs: Sequence[tuple[UploadSpec, str]], queue_key: str,
                    each: Sequence[Mapping[str, object]] = (), **fields: object) -> list[Created]:
        """Create every job of ``jobs`` (a spec and its start message) and push each new one's message on
        the broker's list ``queue_key`` (the broker is this Redis), in one script call; an id in use is
        left alone and gets no message, as ``create`` does. ``each``: more fields of each job, in order."""
        if not jobs:
            return []
        args: list[str | int] = [*self.keep, JOB_KEY.format(job_id=""), LEASE_KEY.format(job_id=""),
                                 REVOKE_TOKEN_KEY.format(job_id="")]
        for index, (spec, message) in enumerate(jobs):
            own = {**fields, **(each[index] if index < len(each) else {})}
            values = "\0".join(_flatten(_values(spec, True, None, own)))
            if values.count("\0") % 2 == 0:  # an odd count of separators: an even count of items
                raise ValueError(f"job {spec.job_id}: a field holds a NUL byte")
            args += [_job_id(spec), message, values]
        keys = [*job_keys(""), queue_key]
        return [Created(True) if not result else _in_use(str(result)) for result in self._enqueue(keys=keys, args=args)]

    def forget(self, job_id: str) -> bool:
        """Undo a create whose start message could not be sent (a queued job nobody picked up)."""
        return bool(self._forget(keys=job_keys(job_id), args=[]))

    def claim(self, job_id: str, holder: str, ttl_s: float, expect: Expect | None = None) -> Claim:
        """Take (or extend) the job's lease and read its record, in one step; only if every
        ``expect`` field has one of its values (so a stale message never holds the lease)."""
        args = [holder, _ms(ttl_s), *_expectations(expect)]
        status, *rest = self._claim(keys=job_keys(job_id), args=args)
        if status == 1:
            data = dict(zip(rest[0][::2], rest[0][1::2], strict=True))
            return Claim(JobRecord.from_hash(data), token=data.get(TOKEN_FIELD) or None)
        if status == 2:
            return Claim(None, mismatch=rest[0])
        if status == 0:
            return Claim(None, holder=rest[0], holder_ttl_s=max(0, int(rest[1])) / 1000)
        return Claim(None, mismatch="no such job")

    def renew(self, job_id: str, holder: str, ttl_s: float, expect: Expect | None = None,
              streamed: int | None = None) -> int:
        """Extend our lease and beat the heartbeat (noting ``streamed`` bytes of the current chunk):
        1 renewed, 2 reclaimed (it had lapsed, nobody took it, ``expect`` holds), 0 lost, -1 gone."""
        args = [holder, _ms(ttl_s), "" if streamed is None else streamed, *_expectations(expect)]
        return int(self._renew(keys=job_keys(job_id), args=args))

    def update(self, job_id: str, holder: str | None, changes: Mapping[str, object], expect: Expect | None = None,
               release: bool = False, reclaim: bool = False, exclusive: bool = False, ttl_s: float = 60) -> Written:
        """Write ``changes`` if the fence holds: ``holder`` holds the lease (or, with ``reclaim``, it
        lapsed and nobody took it) and every ``expect`` field has one of its values. ``holder=None``
        is an operator's or the janitor's write, fenced by ``expect`` alone (``exclusive``: and only
        while no worker holds the job). A state change moves the indexes and applies retention."""
        flags = ("r" if release else "") + ("c" if reclaim else "") + ("x" if exclusive else "")
        args = [*self.keep, holder or "", flags, _ms(ttl_s), *_expectations(expect), *_flatten(changes)]
        return _written(*self._update(keys=job_keys(job_id), args=args))

    def schedule(self, job_id: str, holder: str, member: str, delay_s: float, expect: Expect | None = None,
                 retry_reason: str | None = None) -> Written:
        """Put ``member`` (a step, as the pump reads it) in the delayed set for ``delay_s`` (Redis's clock)
        and release our lease, in one write; ``retry_reason`` counts it as a retry. Fenced like ``update``."""
        args = [holder, f"{max(0.0, delay_s):.3f}", member, "1" if retry_reason else "0", retry_reason or "",
                *_expectations(expect)]
        return _written(*self._schedule(keys=job_keys(job_id), args=args))

    def later(self, member: str, delay_s: float) -> None:
        """Publish ``member`` (a step) again in ``delay_s`` (Redis's clock), touching nothing of the job's
        (its lease belongs to another worker)."""
        self.redis.zadd(DELAYED_KEY, {member: self.now() + delay_s})

    def give_back(self, members: list[str]) -> None:
        """Put delayed steps taken by ``pop_due`` but not published back in the set, due at once."""
        if members:
            pipe = self.redis.pipeline()  # MULTI: in one set or the other, never both or neither
            pipe.zrem(TAKEN_KEY, *members)
            pipe.zadd(DELAYED_KEY, dict.fromkeys(members, 0))
            pipe.execute()

    def pop_due(self, limit: int = 100, taken_timeout_s: float = TAKEN_STEP_TIMEOUT_S) -> Due:
        """Take the delayed steps that are due (each once, fleet-wide, until ``confirm``): Redis's time,
        them, and the seconds until the earliest step left is due. Steps taken over ``taken_timeout_s`` ago
        and never confirmed are due again."""
        now, due, next_in = self._pop_due(keys=[DELAYED_KEY, TAKEN_KEY, UNREADABLE_KEY],
                                          args=[limit, JOB_KEY.format(job_id=""), taken_timeout_s])
        return Due(float(now), list(due), float(next_in) if next_in else None)

    def count_callback_attempt(self, job_id: str) -> int:
        """One more delivery attempt of the job's webhook: how many there were (0: the record is gone)."""
        return int(self._count_attempt(keys=[JOB_KEY.format(job_id=job_id)], args=[]))

    def set_aside(self, member: str) -> None:
        """A taken step nobody can publish (not a step vuq wrote): out of the way, kept for a person to see."""
        pipe = self.redis.pipeline()
        pipe.zrem(TAKEN_KEY, member)
        pipe.zadd(UNREADABLE_KEY, {member: self.now()})
        pipe.execute()

    def wake(self, job_id: str) -> str | None:
        """Take the job's deferred step out of the delayed set, for the caller to publish at once (a live
        job's finish need not wait for its next look); the step's member, or None when none waits (it
        runs, or a pump took it: it looks again anyway)."""
        member = self.redis.hget(JOB_KEY.format(job_id=job_id), "wake_member")
        return str(member) if member and self.redis.zrem(DELAYED_KEY, member) else None

    def live_waiting(self, job_id: str, waiting: bool, now: float = 0.0) -> None:
        """Note whether a live job waits for its file to grow (``vuq_live_waiting``), since ``now``."""
        if waiting:
            self.redis.zadd(LIVE_WAITING_KEY, {job_id: now}, nx=True)
        else:
            self.redis.zrem(LIVE_WAITING_KEY, job_id)

    def live_waiting_count(self) -> int:
        """How many live jobs wait for their files to grow; entries of jobs no longer active are dropped."""
        waiting = [str(job_id) for job_id in cast(list[str], self.redis.zrange(LIVE_WAITING_KEY, 0, -1))]
        active = {job.job_id for job in self.records(waiting) if job.state.active}
        gone = set(waiting) - active
        if gone:
            self.redis.zrem(LIVE_WAITING_KEY, *gone)
        return len(active)

    def unreadable_steps(self) -> int:
        """How many delayed steps were set aside as unreadable (a metric)."""
        return int(self.redis.zcard(UNREADABLE_KEY))

    def confirm(self, member: str) -> None:
        """A step taken by ``pop_due`` was published: it leaves the taken set."""
        self.redis.zrem(TAKEN_KEY, member)

    def reject(self, message_id: str, claimed_id: str, spec: object, error: str, ttl_s: int) -> None:
        """Keep a spec refused for an id already in use under its own record; the job is untouched."""
        key = REJECTED_KEY.format(message_id=message_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"job_id": claimed_id, "error": error, "spec": json.dumps(spec, sort_keys=True)})
        if ttl_s > 0:
            pipe.expire(key, ttl_s)
        pipe.execute()


def job_store(settings: Settings) -> JobStore:
    """The store of these settings' Redis and retention: one per process (one connection pool),
    whoever asks (producers, the tasks, operator commands, the delayed-step pump, metrics)."""
    return _store(settings.redis_url, settings.sentinel, settings.job_retention_s, settings.failed_job_retention_s)


@cache
def _store(redis_url: str, sentinel: SentinelOptions | None, keep_done_s: int, keep_failed_s: int) -> JobStore:
    return JobStore(redis_client(redis_url, sentinel), keep_done_s, keep_failed_s)


def _job_id(spec: UploadSpec) -> str:
    if not spec.job_id:
        raise ValueError("a job's spec must name its job_id before it is stored")
    return spec.job_id


def _values(spec: UploadSpec, notify: bool, fingerprint: str | None, fields: Mapping[str, object]) -> dict[str, object]:
    """A new record's fields: the spec as JSON, its fingerprint, its token apart, the cursor at 0."""
    values: dict[str, object] = {"spec": json.dumps(spec.to_json(), sort_keys=True), "next_chunk": 0,
                                 "bytes_sent": 0, "retries": 0,
                                 "spec_hash": spec.fingerprint() if fingerprint is None else fingerprint, **fields}
    if notify and spec.callback_url:
        values["webhook"] = "1"
    if spec.token:
        values[TOKEN_FIELD] = spec.token
    return values


def _created(result: list[object], acked: object = 0) -> Created:
    """A create script's reply: {1, Redis's time} new, else {0, spec hash, state}."""
    if result[0] == 1:
        return Created(True, at=float(str(result[1])), replicated=int(str(acked)))
    return Created(False, spec_hash=str(result[1]), state=str(result[2]))


def job_keys(job_id: str) -> list[str]:
    """KEYS of every job script, in the order ``tasks.job.scripts`` reads them."""
    return [JOB_KEY.format(job_id=job_id), LEASE_KEY.format(job_id=job_id), JOB_INDEX_KEY,
            *(STATE_INDEX_KEY.format(state=s) for s in State), EXPIRY_KEY, OUTBOX_KEY, DELAYED_KEY, REVOKE_KEY,
            REVOKE_TOKEN_KEY.format(job_id=job_id)]


def _expectations(expect: Expect | None) -> list[str | int]:
    """``{field: allowed values}`` as the scripts read it: count, then field, n, values…"""
    args: list[str | int] = [len(expect or {})]
    for name, allowed in (expect or {}).items():
        values = [_text(v) for v in allowed]
        args += [name, len(values), *values]
    return args


def _written(status: int, why: str) -> Written:
    """A fenced script's reply: {1, Redis's time} written, else {0 or -1, why not}."""
    return Written(True, at=float(why)) if status == 1 else Written(False, why=str(why))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _in_use(result: str) -> Created:
    """The bulk script's answer for an id in use: its spec hash and state, a newline between."""
    spec_hash, _, state = result.partition("\n")
    return Created(False, spec_hash=spec_hash, state=state)


def _flatten(fields: Mapping[str, object]) -> list[str]:
    return [item for name, value in fields.items() for item in (name, _text(value))]
