"""Jobs as people read them: one job described, and a table of jobs sized to the terminal.

What a producer, a receiver or a file name put in a record (titles, file names, sources, errors)
reaches the terminal only through ``printable``: a control character (an escape sequence, a carriage
return that overwrites the line, a backspace) or a bidirectional control (text that displays other
than it reads) is shown as its escape, ``\x1b`` or ``\u202e``, never acted on. New specs cannot hold
them (``tasks.job.spec`` refuses them); records written before, error messages quoting a file name
and answers from elsewhere can.
"""

from __future__ import annotations

import re

from tasks.job import JobRecord, State, format_size
from tasks.redact import mask_url

# C0 and C1 controls and DEL, the line and paragraph separators, and every bidirectional control
# (ALM, LRM/RLM, the embeddings and overrides U+202A..U+202E, the isolates U+2066..U+2069).
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

# column: (header, minimum width); the title, file and error columns share what is left
_FIXED = (("JOB", 12), ("STATE", 10), ("PROGRESS", 12), ("SIZE", 10), ("AGE", 5))
_ELASTIC = (("TITLE", 6), ("FILE", 6), ("ERROR", 5))


def age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def progress(job: JobRecord) -> str:
    """``45% 3/7``: bytes acknowledged, and the chunk being sent (or all sent); ``live 3`` for a live job
    whose size is not known yet (its parts sent so far)."""
    if job.live and not job.chunks_total:
        return f"live {job.next_chunk}"
    if not job.chunks_total:
        return "-"
    chunk = min(job.next_chunk + (0 if job.state.final or job.state == State.FINALIZING else 1), job.chunks_total)
    return f"{job.progress:.0%} {chunk}/{job.chunks_total}"


def printable(text: str) -> str:
    """``text`` with every control and bidirectional character shown as its escape (``\x1b``, ``\u202e``)."""
    return _UNSHOWABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                           else f"\\u{ord(m.group()):04x}", text)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def table(jobs: list[JobRecord], now: float, width: int = 120) -> str:
    """A table of ``jobs`` no wider than ``width`` (the title, file and error are cut to fit)."""
    ids = max([len(j.job_id) for j in jobs] + [3])
    fixed = [("JOB", min(ids, 34)), *_FIXED[1:]]
    spare = width - sum(w + 1 for _, w in fixed)  # what the title, file and error share
    title_w = file_w = max(_ELASTIC[0][1], spare // 4)
    error_w = max(_ELASTIC[2][1], spare - title_w - file_w - 2)
    widths = [w for _, w in fixed] + [title_w, file_w, error_w]
    head = [h for h, _ in fixed] + [h for h, _ in _ELASTIC]
    rows = [head]
    for job in jobs:
        size = format_size(job.size) if job.size else "live" if job.live else "-"
        rows.append([job.job_id, str(job.state), progress(job), size, age(now - job.created_at), job.title or "-",
                     job.file_name, job.error or ""])
    return "\n".join(" ".join(_cut(printable(cell), w).ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def describe(job: JobRecord, now: float) -> str:
    """One job, for people: what it uploads, how far it is, and what to do if it failed."""
    lines = [f"job       {job.job_id}", f"state     {job.state}"]
    if job.title:
        lines.append(f"title     {job.title}")
    lines.append(f"source    {mask_url(job.spec.source)}")
    account, tenant = job.whose
    lines.append(f"account   {account}" + (f", tenant {tenant}" if tenant != account else "")
                 + f", {job.spec.priority} priority")
    if job.live:
        lines.append("live      " + (f"finished at {format_size(job.size)}" if job.size else "finished" if
                                     job.finished_at else "recording: parts go as the file grows; vuq finish ends it"))
    if job.live and not job.size:
        lines.append(f"progress  {format_size(job.bytes_sent)} sent, {job.next_chunk} part(s), size not known yet")
    elif job.size:
        inflight = f" (+{format_size(job.chunk_bytes)} of chunk {job.next_chunk + 1} on its way)" \
            if job.chunk_bytes and job.state == State.UPLOADING else ""
        lines.append(f"progress  {format_size(job.bytes_sent)} of {format_size(job.size)}, "
                     f"{min(job.next_chunk, job.chunks_total or 0)}/{job.chunks_total} chunks sent{inflight}")
    lines.append(f"video     {job.video_id or '-'}")
    lines.append(f"age       {age(now - job.created_at)} (updated {age(now - job.updated_at)} ago)")
    if job.retries:
        lines.append(f"retries   {job.retries} (last: {job.last_retry_reason or '-'})")
    if job.error:
        lines.append(f"error     {job.error}")
    hint = job.resume_hint()
    if hint:
        lines.append(f"resume    {hint}")
    elif job.state == State.FAILED:
        lines.append("resume    not resumable: the source, spec or request must change")
    if job.cleanup:
        lines.append(f"cleanup   {job.cleanup}")
    if job.callback:
        lines.append(f"webhook   {job.callback}")
    if job.trace_id:
        lines.append(f"trace     {job.trace_id}")
    return "\n".join(printable(line) for line in lines)
