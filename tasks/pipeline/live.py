"""Live jobs: a file still being written goes up part by part as it grows, until a finish gives its size.

* **Hold back.** Part n (chunk n-1) goes once the file holds more than n whole chunks: at least one byte
  is always left for the last part, whatever the final size (also an exact multiple of the chunk size).
* **The end is given, never guessed.** A file that stops growing may be a writer that paused; only a
  finish (``vuq finish``, ``finish_upload``, the task ``vuq.upload.finish``, or the job's own
  ``finish_when_idle_s``) gives the final size. From then on the plan is a file's of that size: the rest
  goes as whole parts and the last as ``part N/N``.
* **Waiting holds nothing.** While the next part is not there, the step waits in the delayed set on
  Redis's clock and looks again about three times a second (``LIVE_POLL_S``; the pump publishes it when due): no
  worker slot held, no loop in a worker. A finish takes the waiting step out and publishes it at once.
* **Silence ends.** A file that neither grows nor is finished for ``VUQ_LIVE_IDLE_TIMEOUT_S`` (also one
  that never appears) fails the job, resumable: ``vuq finish`` or ``vuq resume`` continues it. A job with
  ``finish_when_idle_s`` and a file that is not empty finishes instead, whichever is longer.

``look`` decides from the record and the file's size now; it writes nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.apivideo.chunking import ChunkPlan, plan_chunks
from tasks.constants import MAX_PARTS
from tasks.errors import LiveIdle, LiveSizeError
from tasks.job.record import JobRecord

LIVE_POLL_S = 0.3  # a waiting live job looks again this much later (the pump publishes it when it is due)
FINISH_GRACE_S = 30.0  # a finished file short of its size may still be landing (at most the idle timeout)


@dataclass(frozen=True)
class Look:
    """What a live step makes of its file now: the plan to send by, whether chunk ``index`` can go, and
    what the record learns (the size seen, when it last grew, a finish by idleness)."""

    plan: ChunkPlan
    ready: bool
    changes: dict[str, Any] = field(default_factory=dict)


def look(job: JobRecord, index: int, size: int, now: float, idle_timeout_s: int) -> Look:
    """The live job's chunk ``index`` against its file of ``size`` bytes at ``now`` (Redis's clock)."""
    floor = max(job.bytes_sent, job.live_seen or 0)
    if size < floor:
        raise LiveSizeError(f"live: the file shrank to {size} bytes (it had {floor}); the parts sent are kept")
    grew_at = now if job.live_grew_at is None or size != job.live_seen else job.live_grew_at
    changes: dict[str, Any] = {"live_seen": size, "live_grew_at": grew_at} \
        if (size, grew_at) != (job.live_seen, job.live_grew_at) else {}
    final = job.size or None
    if job.finished_at and final is None:  # finished without a size: the file's size is the final one
        final = changes["size"] = size
    elif job.finished_at is None and job.spec.finish_when_idle_s and size \
            and now - grew_at >= job.spec.finish_when_idle_s:
        final = changes["size"] = size
        changes["finished_at"] = now
    chunk_size = int(job.chunk_size or 0)
    if final is not None:
        still_s = now - max(grew_at, job.finished_at or 0.0)
        return _finished(job, size, final, chunk_size, changes, still_s, min(FINISH_GRACE_S, idle_timeout_s))
    ready = size > (index + 1) * chunk_size and index + 1 < MAX_PARTS  # part 10,000 can only be the last
    finishes_itself = bool(job.spec.finish_when_idle_s and size)  # it ends when idle: it never times out
    if not ready and not finishes_itself and now - grew_at >= idle_timeout_s:
        what = "did not appear" if job.live_seen is None and not size else "neither grew nor was finished"
        raise LiveIdle(f"live: the file {what} for {idle_timeout_s} s (VUQ_LIVE_IDLE_TIMEOUT_S); "
                       f"vuq finish {job.job_id} ends it at its size now")
    return Look(ChunkPlan(0, chunk_size, parts=True), ready, changes)


def waiting_for_file(job: JobRecord, now: float, idle_timeout_s: int) -> dict[str, Any]:
    """A live job whose file does not exist yet: what the record learns (when the wait began), or
    ``LiveIdle`` once it waited its timeout."""
    began = job.live_grew_at if job.live_grew_at is not None else now
    if now - began >= idle_timeout_s:
        raise LiveIdle(f"live: the file did not appear for {idle_timeout_s} s (VUQ_LIVE_IDLE_TIMEOUT_S)")
    return {} if job.live_grew_at is not None else {"live_grew_at": now}


def _finished(job: JobRecord, size: int, final: int, chunk_size: int, changes: dict[str, Any],
              still_s: float, grace_s: float) -> Look:
    if final <= job.bytes_sent:
        raise LiveSizeError(f"live: its finish gave {final} bytes, and {job.bytes_sent} were sent already as whole "
                            "parts; the last part cannot be empty")
    if size > final:
        raise LiveSizeError(f"live: the file has {size} bytes, more than the {final} its finish gave "
                            f"(vuq finish {job.job_id} --size {size} if the file is right)")
    plan = plan_chunks(final, chunk_size, parts=True)
    if plan.count != job.chunks_total:
        changes["chunks_total"] = plan.count
    if size < final:  # the last writes may still be landing (shared storage): wait, then say so
        if still_s >= grace_s:
            raise LiveSizeError(f"live: its finish gave {final} bytes, but the file has {size} and has not grown "
                                f"for {grace_s:.0f} s (vuq finish {job.job_id} --size {size} if the file is right)")
        return Look(plan, False, changes)
    return Look(plan, True, changes)
