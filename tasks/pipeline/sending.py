"""A chunk in flight: one object for everything sending one chunk needs, from the source's bytes to
the lease it is sent under."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tasks.apivideo.chunking import ChunkPlan
from tasks.apivideo.keyring import Account
from tasks.apivideo.limiter import Turn
from tasks.errors import LeaseLost
from tasks.job.record import JobRecord
from tasks.outbound.sources import Source
from tasks.pipeline.leases import Held
from tasks.pipeline.message import Sent
from tasks.pipeline.reports import Reporter, Whose

PROGRESS_EVERY_S = 1.0


@dataclass
class ChunkInFlight:
    """Chunk ``index`` of ``job``: its bytes come from ``source`` (``name`` titles the multipart part),
    it goes up with ``token`` under the lease ``held``, in ``account`` on the job's ``turn``."""

    job: JobRecord
    index: int
    source: Source
    name: str
    token: str
    held: Held
    account: Account
    turn: Turn
    began: float = field(default_factory=time.monotonic)

    @property
    def plan(self) -> ChunkPlan:
        return self.job.plan

    @property
    def length(self) -> int:
        return self.plan.length(self.index)

    @property
    def last(self) -> bool:
        return self.plan.last(self.index)

    def blocks(self, reporter: Reporter) -> Iterator[bytes]:
        """The chunk's bytes from the source: stop if the lease is lost, note the bytes sent for the
        lease keeper, and report progress at most once a second (Flower's PROGRESS, ``vuq watch``)."""
        streamed, due = 0, time.monotonic() + PROGRESS_EVERY_S
        for block in self.source.blocks(self.plan.start(self.index), self.length):
            if self.held.lost.is_set():
                raise LeaseLost(f"job {self.job.job_id}: lease lost while sending; stopping")
            yield block
            streamed += len(block)
            self.held.streamed = streamed
            if time.monotonic() >= due:
                reporter.progress(self.job.job_id, self.index, self.plan.count, streamed, self.length)
                due = time.monotonic() + PROGRESS_EVERY_S

    def sent(self) -> Sent:
        """What to report once api.video acknowledged it."""
        return Sent(self.index, self.plan.count, self.length, time.monotonic() - self.began, Whose(*self.job.whose))
