"""The upload pipeline as plain functions: start, send a chunk, finalize, fail.

Celery-free: the tasks in ``tasks.uploads`` are thin adapters that call these with a
holder id unique to the task execution and enqueue the ``Step`` they return. Every step
first claims the job's lease and reads the record: a step the record no longer expects
(a duplicate, a late message, a cancelled job) returns None and changes nothing; one that
finds another worker holding the job raises ``Busy`` (it is deferred, not dropped). While
a step runs, a ``LeaseKeeper`` renews its lease every second; every write is fenced.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from tasks.apivideo.access_tokens import AccessTokens
from tasks.apivideo.chunking import ChunkPlan, plan_chunks
from tasks.apivideo.client import ALREADY_RECEIVED_SLUGS, TOKEN_REJECTED_SLUGS, UPLOAD, ApiClient
from tasks.apivideo.limiter import FleetLimiter
from tasks.apivideo.upload_status import first_missing_chunk, range_received
from tasks.constants import JOB_METADATA_KEY, MAX_CHUNK_BYTES, TASK_CHUNK, TASK_FINALIZE, TASK_START, TASK_WEBHOOK
from tasks.errors import ApiRejected, Busy, ConfigError, PermanentError, RetryableError, SourceError, VuqError
from tasks.job.record import ACTIVE_STATES, JobRecord, State, resume_command
from tasks.job.store import NOW, Expect, JobStore, Written
from tasks.outbound.sources import Source, open_source
from tasks.pipeline.leases import Held, LeaseKeeper
from tasks.pipeline.message import Sent, Step, step_for
from tasks.pipeline.reports import NULL_REPORTER, Reporter
from tasks.settings import Settings

log = logging.getLogger(__name__)
MINTED_TOKEN_TTL_S = 7 * 24 * 3600
MAX_BUSY_WAIT_S = 5.0
PROGRESS_EVERY_S = 1.0
BUDGET_BINDS_AT = 0.5  # share of a minute's upload budget that the requests in hand must reach


class LeaseLost(VuqError):
    """Another worker took the job over, or it was cancelled, while this step ran; stop quietly."""


def expectation(task: str, chunk: int | None = None) -> Expect:
    """Where the record must be for ``task`` to run: the fence of every write the step makes."""
    if task == TASK_START:
        return {"state": [State.QUEUED, State.UPLOADING], "next_chunk": [0]}
    if task == TASK_CHUNK:
        return {"state": [State.UPLOADING], "next_chunk": [chunk]}
    return {"state": [State.FINALIZING]}


def callback_step(job: JobRecord) -> Step | None:
    """The webhook delivery a job that just ended owes its producer, if it asked for one."""
    return Step(TASK_WEBHOOK, job.job_id) if job.spec.get("callback_url") else None


@dataclass
class Pipeline:
    """One worker process's view of the pipeline; its clients are per process and thread-safe,
    so a threads pool shares it. ``sources`` is the SSRF-guarded client for sources."""

    settings: Settings
    store: JobStore
    api: ApiClient
    tokens: AccessTokens
    sources: httpx.Client
    limiter: FleetLimiter | None = None
    reporter: Reporter = field(default=NULL_REPORTER)
    keeper: LeaseKeeper | None = None  # the process's; made from the store and the lease TTL if not given

    def __post_init__(self) -> None:
        if self.keeper is None:
            self.keeper = LeaseKeeper(self.store, self.settings.lease_ttl_s)

    # -- steps ---------------------------------------------------------------------------
    def start(self, job_id: str, holder: str) -> Step | None:
        """Stat the source, plan the chunks, make sure the video exists, send chunk 0."""
        expect = expectation(TASK_START)
        with self._holding(job_id, holder, expect) as held:
            if held is None:
                return None
            job, token, keeper = held
            source = self._source(job)
            info = source.info()
            # a retried start keeps the plan its first attempt recorded: chunk 0 may already be at api.video
            chunk_size = job.chunk_size or job.spec.get("chunk_size") or self._fitted_chunk_size(info.size)
            plan = plan_chunks(info.size, chunk_size)
            token = token or self._mint_token(job, holder, expect)
            video_id = job.video_id or self._container(job, holder, expect)
            changes = {"state": State.UPLOADING, "size": info.size, "chunk_size": plan.chunk_size,
                       "chunks_total": plan.count, "source_identity": info.identity, "video_id": video_id or ""}
            self._write(job_id, holder, changes, expect)
            log.info("job %s: %d bytes in %d chunk(s) of %d", job_id, info.size, plan.count, plan.chunk_size)
            job = replace(job, state=State.UPLOADING, size=info.size, chunk_size=plan.chunk_size,
                          chunks_total=plan.count, video_id=video_id)
            return self._send(job, 0, plan, source, info.name, token, holder, keeper)

    def chunk(self, job_id: str, index: int, holder: str) -> Step | None:
        """Send chunk ``index`` if it is the job's next one, then move the cursor."""
        with self._holding(job_id, holder, expectation(TASK_CHUNK, index)) as held:
            if held is None:
                return None
            job, token, keeper = held
            source = self._source(job)
            info = source.info()
            if info.identity != job.source_identity:
                raise SourceError(f"source: {source.description} changed since the job started "
                                  f"(was {job.size} bytes, now {info.size})")
            return self._send(job, index, job.plan, source, info.name, token, holder, keeper)

    def finalize(self, job_id: str, holder: str) -> Step | None:
        """Check the upload is whole where a chunk was taken as already received, patch the video's
        metadata with API-key auth, and mark the job done."""
        expect = expectation(TASK_FINALIZE)
        with self._holding(job_id, holder, expect) as held:
            if held is None:
                return None
            job, _token, _keeper = held
            missing = self._missing_chunk(job)
            if missing is not None:
                log.warning("job %s: api.video lacks chunk %d; sending it again", job_id, missing + 1)
                written = self._write(job_id, holder, {"state": State.UPLOADING, "next_chunk": missing,
                                                       "bytes_sent": job.plan.start(missing), "verify_upload": "",
                                                       "handoff_at": NOW}, expect, release=True)
                return replace(step_for(job, TASK_CHUNK, missing), handoff_at=written.at)
            video = dict(job.spec.get("video") or {})
            if video or self.tokens.available:
                if not job.video_id:
                    raise PermanentError("no video id was recorded for this job")
                video["metadata"] = [*video.get("metadata", []), {"key": JOB_METADATA_KEY, "value": job_id}]
                self.tokens.call(lambda authorization: self.api.patch_video(authorization, job.video_id or "", video))
            self._write(job_id, holder, {"state": State.DONE, "error": ""}, expect, release=True)
            self.reporter.state(job_id, State.DONE)
            log.info("job %s: done, video %s", job_id, job.video_id)
            return callback_step(job)

    def fail(self, job_id: str, holder: str, error: VuqError, resumable: bool, expect: Expect,
             needs: str | None = None) -> tuple[bool, Step | None]:
        """Record the failure, fenced like the step's own writes (a stale holder cannot fail a job
        another worker moves); the record and its cursor stay, so the job can be resumed.
        Returns whether it was recorded, and the webhook step the job then owes."""
        changes = {"state": State.FAILED, "error": str(error), "error_reason": error.reason,
                   "error_retryable": resumable, "error_needs": needs or ""}
        fence = {"state": [s for s in ACTIVE_STATES if s in expect.get("state", ACTIVE_STATES)],
                 **{k: v for k, v in expect.items() if k != "state"}}
        written = self.store.update(job_id, holder, changes, expect=fence, release=True, reclaim=True)
        if not written:
            log.info("job %s: not marked failed (%s): %s", job_id, written.why, error)
            return False, None
        self.reporter.state(job_id, State.FAILED)
        hint = f"resumable: {resume_command(job_id, needs)}" if resumable else "not resumable"
        log.warning("job %s: failed: %s (%s)", job_id, error, hint)
        job = self.store.get(job_id)
        return True, callback_step(job) if job else None

    # -- holding the job -----------------------------------------------------------------
    @contextmanager
    def _holding(self, job_id: str, holder: str, expect: Expect
                 ) -> Iterator[tuple[JobRecord, str | None, Held] | None]:
        """Claim the lease (yield None for a step the record no longer expects), keep it renewed
        while the body runs, and refuse a step that keeps dying half-way."""
        claim = self.store.claim(job_id, holder, self.settings.lease_ttl_s, expect)
        if claim.record is None:
            if claim.holder:
                raise Busy(claim.holder, min(max(claim.holder_ttl_s, 0.5), MAX_BUSY_WAIT_S))
            log.info("job %s: nothing to do, %s", job_id, claim.mismatch)
            yield None
            return
        if claim.record.step_starts > self.settings.max_retries + 1:
            raise StepKeepsDying(claim.record.step_starts - 1)
        assert self.keeper is not None
        with self.keeper.hold(job_id, holder, expect) as held:
            yield claim.record, claim.token, held

    def _write(self, job_id: str, holder: str, changes: dict[str, Any], expect: Expect,
               release: bool = False) -> Written:
        written = self.store.update(job_id, holder, changes, expect=expect, release=release, reclaim=True,
                                    ttl_s=self.settings.lease_ttl_s)
        if not written:
            raise LeaseLost(f"job {job_id}: the record moved on under this step ({written.why})")
        return written

    # -- pieces of a step ----------------------------------------------------------------
    def _fitted_chunk_size(self, size: int) -> int:
        """The chunk size of a job of ``size`` bytes whose producer did not pin one: the largest when
        the fleet's upload budget binds, the configured default when it is idle. It binds when the
        requests in hand (the last minute's uploads, one for each other active job, and this job's
        own at the default size) would use half a minute's budget or more: a big job is many requests
        by itself, whatever was enqueued after it. See the README, "Chunk size and the upload budget"."""
        default = self.settings.chunk_size
        if self.limiter is None:
            return default
        used, limit = self.limiter.usage(UPLOAD)
        if not limit:  # not known yet: nothing to fit to
            return default
        others = sum(self.store.counts()[str(s)] for s in ACTIVE_STATES) - 1  # this job is active too
        in_hand = used + max(0, others) + plan_chunks(size, default).count
        return MAX_CHUNK_BYTES if in_hand >= limit * BUDGET_BINDS_AT else default

    def _source(self, job: JobRecord) -> Source:
        return open_source(str(job.spec.get("source", "")), self.settings.allowed_roots, self.sources)

    def _mint_token(self, job: JobRecord, holder: str, expect: Expect) -> str:
        if not self.tokens.available:
            raise ConfigError("the job has no upload token and the workers hold no API key to mint one")
        token = self.tokens.call(lambda authorization: self.api.create_upload_token(authorization, MINTED_TOKEN_TTL_S))
        self._write(job.job_id, holder, {"secret:token": token, "token_minted": True}, expect)
        return token

    def _container(self, job: JobRecord, holder: str, expect: Expect) -> str | None:
        """With an API key, create the job's empty video first, so a retried chunk 0 fills it
        instead of creating a second one. Only a start that may have crashed after asking for it
        (``container_pending``) looks for it again: no read the record already answers."""
        if not self.tokens.available:
            return None
        tag = {JOB_METADATA_KEY: job.job_id}
        if job.container_pending:
            found = self.tokens.call(lambda authorization: self.api.find_videos(authorization, tag))
            if found:
                return self._keep_container(job, holder, expect, str(found[0]["videoId"]))
        self._write(job.job_id, holder, {"container_pending": True}, expect)
        video = job.spec.get("video") or {}
        payload = {"title": video.get("title") or f"vuq job {job.job_id}",
                   "metadata": [{"key": JOB_METADATA_KEY, "value": job.job_id}]}
        created = self.tokens.call(lambda authorization: self.api.create_video(authorization, payload))
        return self._keep_container(job, holder, expect, str(created["videoId"]))

    def _keep_container(self, job: JobRecord, holder: str, expect: Expect, video_id: str) -> str:
        self._write(job.job_id, holder, {"video_id": video_id, "container_pending": ""}, expect)
        return video_id

    def _send(self, job: JobRecord, index: int, plan: ChunkPlan, source: Source, name: str, token: str | None,
              holder: str, keeper: Held) -> Step:
        if not token:
            raise ConfigError("the job's upload token is missing from its record")
        expect = expectation(TASK_CHUNK, index)
        began = time.monotonic()
        trusted = False
        try:
            answer = self._upload(job, index, plan, source, name, token, keeper)
        except ApiRejected as exc:
            if exc.slug in TOKEN_REJECTED_SLUGS and self.tokens.available:  # once: a second refusal fails
                log.warning("job %s: api.video refused the upload token; minting a new one", job.job_id)
                token = self._mint_token(job, holder, expect)
                answer = self._upload(job, index, plan, source, name, token, keeper)
            elif exc.slug in ALREADY_RECEIVED_SLUGS and job.video_id:
                trusted = self._confirm_received(job, index, plan)
                answer = {"videoId": job.video_id}
            else:
                raise
        if keeper.lost.is_set():
            raise LeaseLost(f"job {job.job_id}: lease lost while sending chunk {index + 1}; stopping")
        video_id = job.video_id or str(answer["videoId"])
        last = index + 1 == plan.count
        changes: dict[str, Any] = {"next_chunk": index + 1, "bytes_sent": plan.end(index), "video_id": video_id,
                                   "chunk_bytes": 0, "handoff_at": NOW,
                                   "state": State.FINALIZING if last else State.UPLOADING}
        if trusted:
            changes["verify_upload"] = True
        written = self._write(job.job_id, holder, changes, expect, release=True)
        sent = Sent(index, plan.count, plan.length(index), time.monotonic() - began)
        log.info("job %s: chunk %d/%d sent (%d bytes)", job.job_id, index + 1, plan.count, plan.length(index))
        job = replace(job, video_id=video_id)
        step = step_for(job, TASK_FINALIZE) if last else step_for(job, TASK_CHUNK, index + 1)
        return replace(step, sent=sent, handoff_at=written.at)

    def _upload(self, job: JobRecord, index: int, plan: ChunkPlan, source: Source, name: str, token: str,
                keeper: Held) -> dict[str, Any]:
        blocks = self._streaming(job, index, plan, source.blocks(plan.start(index), plan.length(index)), keeper)
        return self.api.upload_chunk(token, video_id=job.video_id, content_range=plan.content_range(index),
                                     file_name=name, length=plan.length(index), blocks=blocks)

    def _confirm_received(self, job: JobRecord, index: int, plan: ChunkPlan) -> bool:
        """A re-sent chunk was answered "already received". With an API key, ask api.video whether
        it holds the range (it may still be arriving through another request: then wait and ask
        again); without one, trust the answer and say so (``verify_upload``). Returns whether trusted."""
        if not self.tokens.available:
            log.info("job %s: chunk %d taken as already received (no API key to check)", job.job_id, index + 1)
            return True
        if not range_received(self._status(job), plan.start(index), plan.end(index) - 1):
            raise ChunkInFlight(job.job_id, index)
        log.info("job %s: chunk %d was already received", job.job_id, index + 1)
        return False

    def _missing_chunk(self, job: JobRecord) -> int | None:
        """The first chunk api.video lacks, when a chunk was taken on trust and a key can check."""
        if not job.verify_upload or not self.tokens.available or not job.video_id:
            return None
        return first_missing_chunk(self._status(job), job.plan)

    def _status(self, job: JobRecord) -> dict[str, Any]:
        """What api.video holds of the job's upload (API-key auth)."""
        return self.tokens.call(lambda authorization: self.api.video_status(authorization, job.video_id or ""))

    def _streaming(self, job: JobRecord, index: int, plan: ChunkPlan, blocks: Iterator[bytes],
                   keeper: Held) -> Iterator[bytes]:
        """Pass ``blocks`` through: stop if the lease is lost, note the bytes sent for the keeper,
        and report progress at most once a second (Flower's PROGRESS, ``vuq watch``)."""
        streamed, due = 0, time.monotonic() + PROGRESS_EVERY_S
        for block in blocks:
            if keeper.lost.is_set():
                raise LeaseLost(f"job {job.job_id}: lease lost while sending; stopping")
            yield block
            streamed += len(block)
            keeper.streamed = streamed
            if time.monotonic() >= due:
                self.reporter.progress(job.job_id, index, plan.count, streamed, plan.length(index))
                due = time.monotonic() + PROGRESS_EVERY_S


class ChunkInFlight(RetryableError):
    """api.video answered "already received" for a range it does not hold yet: another request is
    still delivering it. Retried shortly; the cursor does not move until api.video holds it."""

    reason = "in_flight"

    def __init__(self, job_id: str, index: int) -> None:
        super().__init__(f"job {job_id}: chunk {index + 1} is still arriving through another request",
                         reason=self.reason)


class StepKeepsDying(PermanentError):
    """The same step was started again and again and never finished: its worker died each time
    (out of memory, killed). The job fails, resumable, instead of looping."""

    reason = "worker_lost"

    def __init__(self, starts: int) -> None:
        super().__init__(f"this step was started {starts} times and never finished: its worker died each time "
                         "(out of memory? killed?); look at the workers, then resume")
