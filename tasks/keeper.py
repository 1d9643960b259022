"""Keeping a step's lease while the step runs: a timer thread that renews it every second.

It runs for as long as the step does, also while the request body is done and the worker
waits for api.video's answer, and it notes how many bytes of the chunk went out (``vuq
watch`` shows them). A lease that lapsed while nobody else took the job (a network
partition, a long pause) is taken back as long as the record is where the step expects it;
one held by another worker marks the lease ``lost``. A job cancelled meanwhile keeps its
lease until the step ends: its chunk in flight finishes, and its cursor write is refused.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import redis

from tasks.jobstore import Expect, JobStore

log = logging.getLogger(__name__)
MAX_RENEW_INTERVAL_S = 1.0
RENEWED, RECLAIMED, LOST = 1, 2, 0


class LeaseKeeper:
    """``with LeaseKeeper(store, job_id, holder, ttl_s, expect) as keeper:`` renews on a timer."""

    def __init__(self, store: JobStore, job_id: str, holder: str, ttl_s: float, expect: Expect) -> None:
        self.store, self.job_id, self.holder, self.ttl_s, self.expect = store, job_id, holder, ttl_s, expect
        self.interval_s = min(MAX_RENEW_INTERVAL_S, ttl_s / 4)
        self.streamed: int | None = None  # bytes of the current chunk sent so far
        self.lost = threading.Event()
        self.reclaims = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        unreachable = False
        while not self._stop.wait(self.interval_s):
            try:
                result = self.store.renew(self.job_id, self.holder, self.ttl_s, self.expect, self.streamed)
            except redis.RedisError as exc:  # a partition: keep the step going, try again next tick
                if not unreachable:
                    log.warning("job %s: cannot renew the lease (%s); the step goes on", self.job_id,
                                type(exc).__name__)
                unreachable = True
                continue
            if unreachable:
                log.info("job %s: Redis answers again", self.job_id)
                unreachable = False
            if result == RECLAIMED:
                self.reclaims += 1
                log.warning("job %s: the lease had lapsed and nobody took the job; taken back", self.job_id)
            elif result != RENEWED:
                self.lost.set()
                log.info("job %s: the lease is lost (another worker holds the job, or it moved on)", self.job_id)
                return
