"""What the ``vuq`` subcommands do, apart from argument parsing."""

from __future__ import annotations

import json
import sys
from typing import Any

from tasks.jobstore import JobStore
from tasks.operations import OperationError
from tasks.operations import cancel as cancel_job
from tasks.operations import resume as resume_job
from tasks.operations import retry_failed as retry_failed_jobs
from tasks.producer import enqueue_upload, job_store, send_step
from tasks.record import JobRecord, State
from tasks.settings import get_settings
from tasks.sizes import format_size
from tasks.sources import check_local_source
from workers.clierrors import CommandError
from workers.progress import follow

STATES = [str(s) for s in State]


def _store() -> JobStore:
    return job_store(get_settings().redis_url)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def enqueue(spec: dict[str, Any], wait: bool, as_json: bool, check_source: bool = True) -> int:
    """Enqueue; print the job id (or the job as JSON), or follow it to its end with ``wait``."""
    settings = get_settings()
    if check_source:  # a file this machine can see, and that the workers would refuse, fails here
        check_local_source(spec["source"], settings.allowed_roots)
    job_id = enqueue_upload(**spec, settings=settings)
    if wait:
        print(f"job {job_id} enqueued", file=sys.stderr)
        return _finish(follow(_store(), job_id), as_json)
    if as_json:
        _print_json(_get(job_id).public())
    else:
        print(job_id)
    return 0


def _get(job_id: str) -> JobRecord:
    job = _store().get(job_id)
    if job is None:
        raise CommandError(f"no job {job_id!r}")
    return job


def watch(job_id: str, as_json: bool) -> int:
    try:
        return _finish(follow(_store(), job_id), as_json)
    except LookupError as exc:
        raise CommandError(str(exc)) from None


def _finish(job: JobRecord, as_json: bool) -> int:
    if as_json:
        _print_json(job.public())
    else:
        print(describe(job))
    return 0 if job.state == State.DONE else 1


def status(job_id: str, as_json: bool) -> int:
    job = _get(job_id)
    if as_json:
        _print_json(job.public())
    else:
        print(describe(job))
    return 0


def jobs(states: list[str] | None, limit: int, as_json: bool) -> int:
    records = _store().list(states=states, limit=limit)
    if as_json:
        _print_json([job.public() for job in records])
        return 0
    print(f"{'JOB':34} {'STATE':10} {'PROGRESS':>9} {'SIZE':>10} {'VIDEO':26} ERROR")
    for job in records:
        done = f"{job.bytes_sent / job.size:.0%}" if job.size else "-"
        size = format_size(job.size) if job.size else "-"
        print(f"{job.job_id:34} {job.state:10} {done:>9} {size:>10} {job.video_id or '-':26} {job.error or ''}")
    return 0


def describe(job: JobRecord) -> str:
    lines = [f"job      {job.job_id}", f"state    {job.state}", f"video    {job.video_id or '-'}"]
    if job.size:
        lines.append(f"progress {format_size(job.bytes_sent)} of {format_size(job.size)}, "
                     f"chunk {job.next_chunk}/{job.chunks_total} sent")
    if job.spec.get("video", {}).get("title"):
        lines.append(f"title    {job.spec['video']['title']}")
    if job.error:
        hint = " (resumable: vuq resume " + job.job_id + ")" if job.state == State.FAILED else ""
        lines.append(f"error    {job.error}{hint}")
    return "\n".join(lines)


def resume(job_id: str) -> int:
    try:
        step = resume_job(_store(), job_id, send_step)
    except OperationError as exc:
        raise CommandError(str(exc)) from None
    print(f"job {job_id}: resumed at {step.task}" + (f" chunk {step.chunk}" if step.chunk is not None else ""))
    return 0


def cancel(job_id: str) -> int:
    try:
        cancel_job(_store(), job_id, send_step)
    except OperationError as exc:
        raise CommandError(str(exc)) from None
    print(f"job {job_id}: cancelled")
    return 0


def retry_failed(include_permanent: bool) -> int:
    resumed = retry_failed_jobs(_store(), send_step, include_permanent)
    for job_id in resumed:
        print(job_id)
    print(f"{len(resumed)} job(s) resumed", file=sys.stderr)
    return 0
