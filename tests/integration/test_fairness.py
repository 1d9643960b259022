"""Fairness: a big upload does not starve small jobs enqueued after it. Each step goes to the back of
the queue when the one before it is done, so jobs take turns; the small jobs' p95 completion with the
big one running stays within 2x of without it (asserted: 1.5x).

Completion is counted in turns, not seconds: the api.video requests the emulator received between a
round's enqueue and a job's last request (its metadata PATCH). A busy machine slows every request
alike and leaves the counts as they are, whereas a big job that jumps the queue or keeps a slot for
itself takes more of the turns and the small jobs' counts grow: the starvation this guards against.
The big job's share of the uploads while the small ones ran is checked as well (taking turns, it
gets about one in ``SMALL_JOBS + 1``). Seconds are printed for the record; deadlines follow the pace
measured in the same run (``tests/support/pace.py``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.constants import MIB
from tasks.job.record import JobRecord, State
from tests.support.pace import Pace, measure
from tests.support.stack import Stack, running_stack

SMALL_JOBS = 12
SMALL_SIZE = 6 * MIB  # two chunks of 5 MiB: with start and finalize, four steps a job
BIG_SIZE = 300 * MIB  # 60 chunks: it runs all through the second round
STEPS_PER_SMALL_JOB = 4
FAIR_SHARE = 1 / (SMALL_JOBS + 1)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered) + 0.5) - 1)]


@dataclass
class Round:
    """Small jobs enqueued together: the request serial just before, their records, the seconds taken."""

    start: int
    jobs: list[JobRecord]
    seconds: float


def _last_serial(stack: Stack) -> int:
    log = stack.emulator.requests_log()
    return int(log[-1]["n"]) if log else 0


def _prepared(stack: Stack, tag: str, count: int = SMALL_JOBS) -> list[tuple[Path, str]]:
    """Sources and upload tokens, made before a round starts: neither is a turn, nor takes the big job's time."""
    with ThreadPoolExecutor(4) as pool:  # each token costs the emulator's 150 ms of latency
        tokens = list(pool.map(lambda _: stack.emulator.create_upload_token(), range(count)))
    return [(stack.file(f"{tag}-{i}.mp4", SMALL_SIZE, seed=i)[0], tokens[i]) for i in range(count)]


def _small_jobs(stack: Stack, jobs: list[tuple[Path, str]], deadline_s: float) -> Round:
    start, started = _last_serial(stack), time.monotonic()
    ids = [stack.enqueue(path, chunk_size="5MiB", token=token) for path, token in jobs]
    jobs = [stack.wait_final(job_id, deadline_s) for job_id in ids]
    assert [j.state for j in jobs] == [State.DONE] * len(jobs), [(j.job_id, j.error) for j in jobs]
    return Round(start, jobs, time.monotonic() - started)


def _turns(log: list[dict[str, Any]], round_: Round) -> list[int]:
    """Each job's completion in turns: requests received from the round's start to its last PATCH."""
    last = {e["video_id"]: int(e["n"]) for e in log
            if e["n"] > round_.start and e["method"] == "PATCH" and e["video_id"]}
    return [last[j.video_id or ""] - round_.start for j in round_.jobs]


def _uploads_of_size(log: list[dict[str, Any]], first: int, last: int, total: int) -> int:
    """Upload requests received in (first, last] whose Content-Range names a file of ``total`` bytes."""
    return sum(1 for e in log if first < e["n"] <= last and e["class"] == "upload"
               and str(e.get("content_range") or "").endswith(f"/{total}"))


def test_a_big_upload_does_not_starve_small_jobs_enqueued_after_it(tmp_path: Path, redis_url: str) -> None:
    # one worker, two slots, 150 ms per api.video request: the slots, not the network, are what jobs share
    latency = ("--latency-ms", "150,150")
    with running_stack(tmp_path, redis_url, workers=1, concurrency=2, emulator_args=latency) as stack:
        # one small job alone: how fast this machine moves a job now (and the access token is cached)
        first = _prepared(stack, "pace", count=1)
        _, job_pace = measure(lambda: _small_jobs(stack, first, 180), "one small job alone")
        alone = _small_jobs(stack, _prepared(stack, "alone"), job_pace.allow(3 * SMALL_JOBS, floor_s=180))
        step = Pace(alone.seconds / (SMALL_JOBS * STEPS_PER_SMALL_JOB / 2), "one step on one of two slots")
        big_path, big_digest = stack.file("big.mp4", BIG_SIZE, seed=99)
        second = _prepared(stack, "shared")
        big_id = stack.enqueue(big_path, chunk_size="5MiB")
        shared = _small_jobs(stack, second, job_pace.allow(6 * SMALL_JOBS, floor_s=180))
        big = stack.store.get(big_id)
        assert big is not None and big.state.active, "the big upload must still run while the small ones finish"
        log = stack.emulator.requests_log()
        big = stack.wait_final(big_id, step.allow(4 * BIG_SIZE // (5 * MIB), floor_s=240))
        assert big.state == State.DONE and stack.emulator.video(big.video_id or "")["sha256"] == big_digest
    alone_turns, shared_turns = _turns(log, alone), _turns(log, shared)
    end = shared.start + max(shared_turns)
    big_uploads = _uploads_of_size(log, shared.start, end, BIG_SIZE)
    small_uploads = _uploads_of_size(log, shared.start, end, SMALL_SIZE)
    share = big_uploads / (big_uploads + small_uploads)
    print(f"small jobs' p95: {p95(shared_turns)} turns with the big upload running, {p95(alone_turns)} without "
          f"({shared.seconds:.1f} s and {alone.seconds:.1f} s for the rounds; {job_pace}); the big job's share "
          f"of the uploads meanwhile: {big_uploads}/{big_uploads + small_uploads}")
    # Taking turns costs the small jobs about one turn in thirteen (1.04-1.06x measured); a big job
    # that keeps a slot for itself made it 1.9x and took 65% of the uploads (tried by hand).
    assert p95(shared_turns) <= 1.5 * p95(alone_turns), (shared_turns, alone_turns)
    assert small_uploads == 2 * SMALL_JOBS, small_uploads  # no retries here: every upload is counted once
    assert share <= 3 * FAIR_SHARE, f"the big job took {share:.0%} of the uploads, {FAIR_SHARE:.0%} would be fair"
