"""Keeping the leases of the steps a process runs: one timer thread renews them all, every second.

A step ``hold``s its lease for as long as it runs, also while the request body is done and
the worker waits for api.video's answer; the keeper notes how many bytes of the chunk went out
(``vuq watch`` shows them). A lease that lapsed while nobody else took the job (a network
partition, a long pause) is taken back as long as the record is where the step expects it; one
held by another worker marks it ``lost``. A job cancelled meanwhile keeps its lease until the
step ends: its chunk in flight finishes, and its cursor write is refused. One thread per process
(not one per step): registering a step costs microseconds, and the step's end waits only for a
renewal of its own lease that is under way, so none happens after it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from tasks.job.store import Expect, JobStore
from tasks.telemetry import StepState, current, event_on

log = logging.getLogger(__name__)
MAX_RENEW_INTERVAL_S = 1.0
RENEWED, RECLAIMED, LOST = 1, 2, 0


def new_holder() -> str:
    """A lease holder id unique to one task execution (threads and gevent pools share a process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"


@dataclass(eq=False)
class Held:
    """One step's lease while the step runs."""

    job_id: str
    holder: str
    expect: Expect
    streamed: int | None = None  # bytes of the current chunk sent so far
    lost: threading.Event = field(default_factory=threading.Event)
    active: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)
    unreachable: bool = False
    step: StepState | None = None  # the step holding it, whose span notes a reclaimed lease


class LeaseKeeper:
    """The process's lease keeper: ``with keeper.hold(job_id, holder, expect) as held:``."""

    def __init__(self, store: JobStore, ttl_s: float) -> None:
        self.store, self.ttl_s = store, ttl_s
        self.interval_s = min(MAX_RENEW_INTERVAL_S, ttl_s / 4)
        self._held: set[Held] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, job_id: str, holder: str, expect: Expect) -> Iterator[Held]:
        held = Held(job_id, holder, expect, step=current())
        with self._lock:
            self._held.add(held)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vuq-leases", daemon=True)
                self._thread.start()
        try:
            yield held
        finally:
            with held.lock:  # a renewal of this lease under way ends first; none starts after
                held.active = False
            with self._lock:
                self._held.discard(held)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)  # the keeper's own pace
            with self._lock:
                held = list(self._held)
            for one in held:
                self._renew(one)

    def _renew(self, held: Held) -> None:
        with held.lock:
            if not held.active or held.lost.is_set():
                return
            try:
                result = self.store.renew(held.job_id, held.holder, self.ttl_s, held.expect, held.streamed)
            except redis.RedisError as exc:  # a partition: keep the step going, try again next tick
                if not held.unreachable:
                    log.warning("job %s: cannot renew the lease (%s); the step goes on", held.job_id,
                                type(exc).__name__)
                held.unreachable = True
                return
        if held.unreachable:
            log.info("job %s: Redis answers again", held.job_id)
            held.unreachable = False
        if result == RECLAIMED:
            event_on(held.step, "vuq.lease.reclaimed")
            log.warning("job %s: the lease had lapsed and nobody took the job; taken back", held.job_id)
        elif result != RENEWED:
            held.lost.set()
            log.info("job %s: the lease is lost (another worker holds the job, or it moved on)", held.job_id)
