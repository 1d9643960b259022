"""The upload pipeline as plain functions: start, send a chunk, finalize, fail.

Celery-free: the tasks in ``tasks.upload_tasks`` are thin adapters that call these
and enqueue the ``Step`` they return. Every step first claims the job's lease and
reads the record; a step that finds the job elsewhere (another holder, a later
cursor, a final state) returns None and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tasks.apiclient import ALREADY_RECEIVED_SLUGS, ApiClient
from tasks.auth import AccessTokens
from tasks.constants import JOB_METADATA_KEY, TASK_CHUNK, TASK_FINALIZE, TASK_WEBHOOK
from tasks.errors import ApiRejected, Busy, ConfigError, PermanentError, SourceError, Throttled, VuqError
from tasks.jobstore import JobStore
from tasks.observer import NULL_OBSERVER, Observer
from tasks.planning import ChunkPlan, plan_chunks
from tasks.ratelimit import UploadRateLimiter
from tasks.record import JobRecord, State
from tasks.settings import Settings
from tasks.sources import Source, open_source

log = logging.getLogger(__name__)
MINTED_TOKEN_TTL_S = 7 * 24 * 3600
MAX_INLINE_WAIT_S = 2.0
MAX_BUSY_WAIT_S = 5.0


class LeaseLost(VuqError):
    """Another worker took the job over while this one was sending; stop quietly."""


@dataclass(frozen=True)
class Step:
    """The next task to enqueue for a job."""

    task: str
    job_id: str
    chunk: int | None = None
    # the chunk just sent (index, chunks, bytes, seconds): reported once the next step is enqueued,
    # so progress events and metrics stay off the path between two chunks
    sent: tuple[int, int, int, float] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"job_id": self.job_id} if self.chunk is None else {"job_id": self.job_id, "chunk": self.chunk}


def callback_step(job: JobRecord) -> Step | None:
    """The webhook delivery a job that just ended owes its producer, if it asked for one."""
    return Step(TASK_WEBHOOK, job.job_id) if job.spec.get("callback_url") else None


@dataclass
class Pipeline:
    """One worker process's view of the pipeline (its clients are per process)."""

    settings: Settings
    store: JobStore
    api: ApiClient
    tokens: AccessTokens
    http: httpx.Client
    holder: str
    observer: Observer = field(default=NULL_OBSERVER)
    limiter: UploadRateLimiter | None = None

    # -- steps ---------------------------------------------------------------------------
    def start(self, job_id: str) -> Step | None:
        """Stat the source, plan the chunks, make sure the video exists, send chunk 0."""
        # a duplicated start finds the chain under way (next_chunk > 0) and does nothing
        claimed = self._claim(job_id, {"state": [State.QUEUED, State.UPLOADING], "next_chunk": [0]})
        if claimed is None:
            return None
        job, token = claimed
        source = self._source(job)
        info = source.info()
        plan = plan_chunks(info.size, job.spec.get("chunk_size") or self.settings.chunk_size)
        token = token or self._mint_token(job)
        video_id = job.video_id or self._container(job)
        self._write(job_id, {"state": State.UPLOADING, "size": info.size, "chunk_size": plan.chunk_size,
                             "chunks_total": plan.count, "source_identity": info.identity,
                             "video_id": video_id or ""},
                    expect={"state": [State.QUEUED, State.UPLOADING], "next_chunk": [0]})
        self.observer.state(job_id, State.UPLOADING)
        log.info("job %s: %d bytes in %d chunk(s) of %d", job_id, info.size, plan.count, plan.chunk_size)
        return self._send(job_id, 0, plan, source, info.name, video_id, token)

    def chunk(self, job_id: str, index: int) -> Step | None:
        """Send chunk ``index`` if it is the job's next one, then move the cursor."""
        claimed = self._claim(job_id, {"state": [State.UPLOADING], "next_chunk": [index]})
        if claimed is None:
            return None
        job, token = claimed
        source = self._source(job)
        info = source.info()
        if info.identity != job.source_identity:
            raise SourceError(f"source: {source.description} changed since the job started "
                              f"(was {job.size} bytes, now {info.size})")
        plan = ChunkPlan(job.size or 0, job.chunk_size or 0)
        return self._send(job_id, index, plan, source, info.name, job.video_id, token)

    def finalize(self, job_id: str) -> Step | None:
        """Patch the video's metadata with API-key auth and mark the job done."""
        claimed = self._claim(job_id, {"state": [State.FINALIZING]})
        if claimed is None:
            return None
        job, _token = claimed
        video = dict(job.spec.get("video") or {})
        if video or self.tokens.available:
            if not job.video_id:
                raise PermanentError("no video id was recorded for this job")
            video["metadata"] = [*video.get("metadata", []), {"key": JOB_METADATA_KEY, "value": job_id}]
            self.tokens.call(lambda auth: self.api.patch_video(auth, job.video_id or "", video))
        self._write(job_id, {"state": State.DONE, "finished_at": f"{time.time():.6f}", "error": ""},
                    expect={"state": [State.FINALIZING]}, release=True)
        self.observer.state(job_id, State.DONE)
        log.info("job %s: done, video %s", job_id, job.video_id)
        return callback_step(job)

    def fail(self, job_id: str, error: VuqError, retryable: bool) -> Step | None:
        """Record the failure; the record and its cursor stay, so the job can be resumed."""
        changed = self.store.update(
            job_id, None, {"state": State.FAILED, "error": str(error), "error_reason": error.reason,
                           "error_retryable": retryable, "finished_at": f"{time.time():.6f}"},
            expect={"state": [State.QUEUED, State.UPLOADING, State.FINALIZING]})
        self.store.release(job_id, self.holder)
        if not changed:
            return None
        self.observer.state(job_id, State.FAILED)
        log.warning("job %s: failed: %s", job_id, error)
        job = self.store.get(job_id)
        return callback_step(job) if job else None

    def release(self, job_id: str) -> None:
        self.store.release(job_id, self.holder)

    # -- helpers -------------------------------------------------------------------------
    def _claim(self, job_id: str, expect: dict[str, list[Any]]) -> tuple[JobRecord, str | None] | None:
        """Take the job's lease and read its record and token in one round trip, if the record
        is where this step expects it. A stale message (a step already done, a cancelled job)
        returns None without touching the lease; a message for the current step that finds the
        lease held elsewhere is deferred (``Busy``), never dropped: the holder may be a
        duplicate of another step, or dead."""
        claim = self.store.claim(job_id, self.holder, self.settings.lease_ttl_s, expect)
        if claim.record is not None:
            return claim.record, claim.token
        if claim.holder:
            raise Busy(claim.holder, min(max(claim.holder_ttl_s, 0.5), MAX_BUSY_WAIT_S))
        log.info("job %s: nothing to do, %s", job_id, claim.mismatch or "no such job")
        return None

    def _write(self, job_id: str, changes: dict[str, Any], expect: dict[str, Any],
               release: bool = False) -> None:
        if not self.store.update(job_id, self.holder, changes, expect=expect, release=release):
            raise LeaseLost(f"job {job_id}: the record moved on under us (lease lost or cancelled)")

    def _source(self, job: JobRecord) -> Source:
        return open_source(str(job.spec.get("source", "")), self.settings.allowed_roots, self.http)

    def _mint_token(self, job: JobRecord) -> str:
        if not self.tokens.available:
            raise ConfigError("the job has no upload token and the workers hold no API key to mint one")
        token = self.tokens.call(lambda auth: self.api.create_upload_token(auth, MINTED_TOKEN_TTL_S))
        self.store.set_token(job.job_id, token)
        return token

    def _container(self, job: JobRecord) -> str | None:
        """With an API key, create (or find again after a crash) the job's empty video first,
        so a retried chunk 0 fills it instead of creating a second video."""
        if not self.tokens.available:
            return None
        tag = {JOB_METADATA_KEY: job.job_id}
        found = self.tokens.call(lambda auth: self.api.find_videos(auth, tag))
        if found:
            return str(found[0]["videoId"])
        video = job.spec.get("video") or {}
        payload = {"title": video.get("title") or f"vuq job {job.job_id}",
                   "metadata": [{"key": JOB_METADATA_KEY, "value": job.job_id}]}
        created = self.tokens.call(lambda auth: self.api.create_video(auth, payload))
        video_id = str(created["videoId"])
        self._write(job.job_id, {"video_id": video_id}, expect={"next_chunk": [0]})
        return video_id

    def _send(self, job_id: str, index: int, plan: ChunkPlan, source: Source, name: str,
              video_id: str | None, token: str | None) -> Step:
        if not token:
            raise ConfigError("the job's upload token is missing from its record")
        self._pace()
        began = time.monotonic()
        try:
            answer = self.api.upload_chunk(
                token, video_id=video_id, content_range=plan.content_range(index), file_name=name,
                length=plan.length(index),
                blocks=self._heartbeat(job_id, source.blocks(plan.start(index), plan.length(index))))
        except ApiRejected as exc:
            if exc.slug not in ALREADY_RECEIVED_SLUGS or not video_id:
                raise
            log.info("job %s: chunk %d was already received (%s)", job_id, index, exc.slug)
            answer = {"videoId": video_id}
        video_id = video_id or str(answer["videoId"])
        last = index + 1 == plan.count
        self._write(job_id, {"next_chunk": index + 1, "bytes_sent": plan.end(index), "video_id": video_id,
                             "state": State.FINALIZING if last else State.UPLOADING},
                    expect={"state": [State.UPLOADING], "next_chunk": [index]}, release=True)
        sent = (index, plan.count, plan.length(index), time.monotonic() - began)
        log.info("job %s: chunk %d/%d sent (%d bytes)", job_id, index + 1, plan.count, plan.length(index))
        if last:
            return Step(TASK_FINALIZE, job_id, sent=sent)
        return Step(TASK_CHUNK, job_id, index + 1, sent=sent)

    def _pace(self) -> None:
        """Wait briefly for a slot of the cluster-wide upload rate; defer the step if it is far off."""
        if self.limiter is None:
            return
        while (wait_s := self.limiter.acquire()) > 0:
            if wait_s > MAX_INLINE_WAIT_S:
                raise Throttled(wait_s)
            time.sleep(wait_s)  # pacing a request a moment, not retrying: the slot is seconds away

    def _heartbeat(self, job_id: str, blocks: Iterator[bytes]) -> Iterator[bytes]:
        """Pass ``blocks`` through, renewing the lease as the body streams out."""
        every_s = self.settings.lease_ttl_s / 4
        due = time.monotonic() + every_s
        for block in blocks:
            if time.monotonic() >= due:
                if not self.store.renew(job_id, self.holder, self.settings.lease_ttl_s):
                    raise LeaseLost(f"job {job_id}: lease lost while sending; stopping")
                due = time.monotonic() + every_s
            yield block
