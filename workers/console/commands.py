"""What the ``vuq`` subcommands do, apart from argument parsing.

JSON output is ``JobRecord.public()``: times are seconds since the Unix epoch on Redis's
clock. Tables are for people: sized to the terminal, newest first, one line a job.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

from tasks import (
    cancel_upload,
    enqueue_many,
    enqueue_upload,
    finish_upload,
    redeliver_webhook,
    resume_upload,
    retry_failed_uploads,
)
from tasks.errors import SpecError
from tasks.job import PAGE_SCAN, JobRecord, JobStore, State, UnknownCursor, job_store
from tasks.outbound import check_local_source
from tasks.settings import get_settings
from workers.console.endings import CommandError
from workers.console.listing import describe, table
from workers.console.progress import follow
from workers.process.health import check as check_health

STATES = [str(s) for s in State]


def _store() -> JobStore:
    return job_store(get_settings())


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def enqueue(spec: dict[str, Any], wait: bool, as_json: bool, check_source: bool = True) -> int:
    """Enqueue; print the job id (or the job as JSON), or follow it to its end with ``wait``."""
    settings = get_settings()
    if check_source:  # a file this machine can see, and that the workers would refuse, fails here
        check_local_source(spec["source"], settings.allowed_roots, may_be_missing=bool(spec.get("live")))
    job_id = enqueue_upload(**spec, settings=settings)
    if wait:
        print(f"job {job_id} enqueued", file=sys.stderr)
        return _finish(follow(_store(), job_id), as_json)
    if as_json:
        _print_json(_get(job_id).public())
    else:
        print(job_id)
    return 0


def enqueue_from(path: str, defaults: dict[str, Any], check_source: bool = True) -> int:
    """``vuq enqueue --from FILE.jsonl``: one job spec per line, enqueued in batches; one job id per line
    printed in order (an empty line where a line is refused, the reason on stderr, naming the line). Exit
    status 1 when any line was refused, 0 when every one was enqueued."""
    settings = get_settings()
    lines = _spec_lines(path)
    specs: list[dict[str, Any]] = []
    results: dict[int, str | SpecError] = {}
    for number, raw in lines:
        try:
            spec = {**defaults, **_line_spec(raw)}
            if check_source and isinstance(spec.get("source"), str):
                check_local_source(spec["source"], settings.allowed_roots, may_be_missing=spec.get("live") is True)
            specs.append(spec)
        except SpecError as exc:
            results[number] = exc
    enqueued = iter(enqueue_many(specs, settings=settings))
    refused = 0
    for number, _ in lines:
        outcome = results[number] if number in results else next(enqueued)
        if isinstance(outcome, SpecError):
            refused += 1
            print(f"vuq enqueue: line {number}: {outcome}", file=sys.stderr)
        print(outcome if isinstance(outcome, str) else "", flush=False)
    if refused:
        print(f"vuq enqueue: {refused} of {len(lines)} line(s) refused; the others were enqueued", file=sys.stderr)
    return 1 if refused else 0


def _spec_lines(path: str) -> list[tuple[int, str]]:
    """The non-blank lines of ``path`` ('-': standard input), numbered from 1."""
    try:
        handle = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CommandError(f"cannot read --from {path}: {exc.strerror}") from None
    with handle:
        return [(n, line) for n, line in enumerate(handle, start=1) if line.strip()]


def _line_spec(raw: str) -> dict[str, Any]:
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpecError("spec", f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(spec, dict):
        raise SpecError("spec", f"must be a JSON object, not {type(spec).__name__}")
    if isinstance(spec.get("source"), str) and "://" not in spec["source"] and not os.path.isabs(spec["source"]):
        spec["source"] = os.path.abspath(spec["source"])  # a relative path means the caller's directory
    return spec


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
    _show(job, as_json)
    return 0 if job.state == State.DONE else 1


def status(job_id: str, as_json: bool) -> int:
    _show(_get(job_id), as_json)
    return 0


def _show(job: JobRecord, as_json: bool) -> None:
    if as_json:
        _print_json(job.public())
    else:
        print(describe(job, _store().now()))


def jobs(states: list[str] | None, limit: int, before: str | None, as_json: bool, account: str | None = None,
         tenant: str | None = None) -> int:
    """One page of jobs, newest first; the next page starts ``--before`` the last one shown."""
    store = _store()
    wanted = {"account": account, "tenant": tenant}

    def matches(job: JobRecord) -> bool:
        return (account is None or job.account_shown == account) and (tenant is None or job.tenant == tenant)

    scanned_to = None
    try:
        if account or tenant:
            records, scanned_to = store.filtered_page(matches, states=states, limit=limit, before=before)
        else:
            records = store.page(states=states, limit=limit, before=before)
    except UnknownCursor as exc:
        raise CommandError(str(exc)) from None
    if as_json:
        _print_json([job.public() for job in records])
    else:
        width = shutil.get_terminal_size((120, 24)).columns
        print(table(records, store.now(), width))
    go_on = records[-1].job_id if len(records) == limit else scanned_to
    if go_on:
        filters = [f"--{name} {value}" for name, value in wanted.items() if value]
        more = " ".join([f"--state {s}" for s in states or []] + filters + [f"--limit {limit}", f"--before {go_on}"])
        read = f" (stopped after reading {PAGE_SCAN:,} jobs)" if scanned_to else ""
        print(f"more{read}: vuq jobs {more}", file=sys.stderr)
    return 0


def resume(job_id: str, token: str | None) -> int:
    step = resume_upload(job_id, token)
    where = f"chunk {step.chunk + 1}" if step.chunk is not None else step.task.rsplit(".", 1)[-1]
    print(f"job {job_id}: resumed at {where}" + (" with a new upload token" if token else ""))
    return 0


def cancel(job_id: str, keep_video: bool) -> int:
    print(f"job {job_id}: cancelled; video: {cancel_upload(job_id, keep_video)}")
    return 0


def finish(job_id: str, size: int | None) -> int:
    print(finish_upload(job_id, size))
    return 0


def webhook(job_id: str) -> int:
    redeliver_webhook(job_id)
    print(f"job {job_id}: its webhook will be delivered again")
    return 0


def health(idle_s: int | None, node: str | None) -> int:
    healthy, line = check_health(get_settings(), idle_s, node)
    if not healthy:
        raise CommandError(line)
    print(line)
    return 0


def retry_failed(include_permanent: bool) -> int:
    outcome = retry_failed_uploads(include_permanent)
    for job_id in outcome.resumed:
        print(job_id)
    skipped = sum(outcome.skipped.values())
    why = "; ".join(f"{n} {reason}" for reason, n in sorted(outcome.skipped.items()))
    print(f"{len(outcome.resumed)} job(s) resumed, {skipped} skipped" + (f": {why}" if why else ""), file=sys.stderr)
    return 0

