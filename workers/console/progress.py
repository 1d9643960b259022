"""A terminal progress bar for one job, drawn from its record."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tasks.job import JobRecord, JobStore, format_size

BAR_WIDTH = 30
POLL_S = 0.25


def render(job: JobRecord) -> str:
    """The bar counts the acknowledged bytes plus those of the chunk on its way; a live job's, until its
    finish gives the size, shows the bytes sent and no percentage."""
    size = job.size or 0
    moving = job.chunk_bytes if job.state == "uploading" else 0
    if job.live and not size:
        return (f"[{'live'.center(BAR_WIDTH, '~')}]  {format_size(job.bytes_sent + moving)} sent, "
                f"{job.next_chunk} part(s)  {job.state}, {'finished' if job.finished_at else 'recording'}").rstrip()
    fraction = min(1.0, (job.bytes_sent + moving) / size) if size else 0.0
    filled = int(fraction * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    chunks = f"chunk {min(job.next_chunk, job.chunks_total or 0)}/{job.chunks_total}" if job.chunks_total else ""
    sizes = f"{format_size(job.bytes_sent + moving)} / {format_size(size)}" if size else ""
    return f"[{bar}] {fraction:6.1%}  {sizes}  {chunks}  {job.state}".rstrip()


def follow(store: JobStore, job_id: str, out: TextIO = sys.stderr, poll_s: float = POLL_S) -> JobRecord:
    """Redraw the bar until the job reaches a final state; return the final record."""
    last = ""
    tty = out.isatty()
    while True:
        job = store.get(job_id)
        if job is None:
            raise LookupError(f"no job {job_id!r}")
        line = render(job)
        if line != last:
            out.write(("\r" + line.ljust(len(last))) if tty else line + "\n")
            out.flush()
            last = line
        if job.state.final:
            if tty:
                out.write("\n")
            return job
        time.sleep(poll_s)  # polling a record for display, not synchronisation
