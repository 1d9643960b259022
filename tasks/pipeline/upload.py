"""The upload pipeline, Celery-free: ``Pipeline.run`` runs one step (start, chunk, finalize) and
says how it ended (``tasks.pipeline.outcomes``).

The Celery tasks in ``tasks.uploads`` are thin adapters: they build the ``Step`` from their message
and map the ``Outcome`` to Celery. Every step first claims the job's lease and reads the record: a
step the record no longer expects (a duplicate, a late message, a cancelled job) stops and changes
nothing; one that finds another worker holding the job raises ``Busy`` (it is deferred, not
dropped). While a step runs, the process's ``LeaseKeeper`` renews its lease every second; every
write is fenced.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import httpx

from tasks import telemetry
from tasks.apivideo.chunking import plan_chunks
from tasks.apivideo.client import ALREADY_RECEIVED_SLUGS, UPLOAD, ApiClient
from tasks.apivideo.keyring import Account, Keyring
from tasks.apivideo.limiter import Turn
from tasks.apivideo.upload_status import chunk_received, first_missing_chunk
from tasks.constants import MAX_CHUNK_BYTES, TASK_CHUNK, TASK_FINALIZE, TASK_START
from tasks.errors import (
    ApiRejected,
    Busy,
    ConfigError,
    LeaseLost,
    PermanentError,
    RangeArriving,
    SourceError,
    SourceMissing,
    StepKeepsDying,
    StepTimedOut,
    TokenNeeded,
    WaitingForBytes,
)
from tasks.job.record import JobRecord, State
from tasks.job.store import NOW, Expect, JobStore, Written
from tasks.outbound.sources import Source, open_source
from tasks.pipeline import live, minted, video
from tasks.pipeline.job_account import account_of, choose_account, turn_of
from tasks.pipeline.leases import Held, LeaseKeeper, new_holder
from tasks.pipeline.message import Step, callback_step, step_for
from tasks.pipeline.outcomes import Attempt, Continue, Ending, Outcome, Stop
from tasks.pipeline.reports import NULL_REPORTER, Reporter, Whose
from tasks.pipeline.sending import ChunkInFlight
from tasks.settings import Settings

log = logging.getLogger(__name__)
MAX_BUSY_WAIT_S = 5.0
BUDGET_BINDS_AT = 0.5  # share of a minute's upload budget that the requests in hand must reach


def expectation(task: str, chunk: int | None = None) -> Expect:
    """Where the record must be for ``task`` to run: the fence of every write the step makes."""
    if task == TASK_START:
        return {"state": [State.QUEUED, State.UPLOADING], "next_chunk": [0]}
    if task == TASK_CHUNK:
        return {"state": [State.UPLOADING], "next_chunk": [chunk]}
    return {"state": [State.FINALIZING]}


@dataclass(frozen=True)
class Holding:
    """What a step that holds its job's lease works with: the record, its upload token, the lease, and
    whose turn its requests take."""

    job: JobRecord
    token: str | None
    held: Held
    turn: Turn
    retried: bool = False  # the step ran before (a retry, or a claim that died): its chunk may be there

    @property
    def holder(self) -> str:
        return self.held.holder


@dataclass
class Pipeline:
    """One worker process's view of the pipeline; its clients are per process and thread-safe,
    so a threads pool shares it. ``sources`` is the SSRF-guarded client for sources."""

    settings: Settings
    store: JobStore
    api: ApiClient
    sources: httpx.Client
    keyring: Keyring | None = None  # the accounts of the settings' keyring if not given
    reporter: Reporter = field(default=NULL_REPORTER)
    leases: LeaseKeeper | None = None  # the process's; made from the store and the lease TTL if not given

    def __post_init__(self) -> None:
        if self.leases is None:
            self.leases = LeaseKeeper(self.store, self.settings.lease_ttl_s)
        if self.keyring is None:
            self.keyring = Keyring(self.store.redis, self.api, self.settings.keyring, self.settings.rate_limits)

    def run(self, step: Step, attempt: Attempt | None = None,
            interruptions: tuple[type[BaseException], ...] = ()) -> Outcome:
        """Run ``step`` under a lease holder id of its own and say how it ended. ``interruptions``: the
        exceptions a task runner raises inside a step that ran out of time (retried)."""
        holder, expect, attempt = new_holder(), expectation(step.task, step.chunk), attempt or Attempt()
        with telemetry.step(step.task, step.job_id, step.chunk, attempt.retries):  # its span: once claimed
            try:
                following = self._step(step, holder, attempt.retries > 0)
            except Exception as exc:
                if isinstance(exc, interruptions):
                    exc = StepTimedOut()
                ending = Ending(self.store, self.settings, self.reporter, self.revoke_token)
                return ending.after(step, holder, expect, attempt, exc)
        if following is None:
            return Stop("nothing to do")
        if following.sent is not None:
            self.reporter.chunk_sent(step.job_id, *vars(following.sent).values())
        return Continue(following)

    def _step(self, step: Step, holder: str, retried: bool = False) -> Step | None:
        """Claim the job for ``step`` and run it; None when the record no longer expects it."""
        expect = expectation(step.task, step.chunk)
        with self._holding(step.job_id, holder, expect, retried) as holding:
            if holding is None:
                return None
            if step.task == TASK_START:
                return self._start(holding, expect)
            if step.task == TASK_CHUNK:
                return self._chunk(holding, int(step.chunk or 0), expect)
            return self._finalize(holding, expect)

    def start(self, job_id: str, holder: str) -> Step | None:
        """Stat the source, plan the chunks, make sure the video exists, send chunk 0."""
        return self._step(Step(TASK_START, job_id), holder)

    def chunk(self, job_id: str, index: int, holder: str) -> Step | None:
        """Send chunk ``index`` if it is the job's next one, then move the cursor."""
        return self._step(Step(TASK_CHUNK, job_id, index), holder)

    def finalize(self, job_id: str, holder: str) -> Step | None:
        """Check the upload is whole where a chunk was taken as already received, patch the video's
        metadata with API-key auth, and mark the job done."""
        return self._step(Step(TASK_FINALIZE, job_id), holder)

    def revoke_token(self, job_id: str) -> bool:
        """Delete the token vuq minted for an ended job (see ``tasks.pipeline.minted``)."""
        assert self.keyring is not None
        return minted.revoke(self.store, self.keyring, job_id)

    # -- steps ---------------------------------------------------------------------------
    def _start(self, holding: Holding, expect: Expect) -> Step:
        account = self._choose(holding, expect)  # before the source is read, before anything is created
        try:
            source = self._source(holding.job)
        except SourceMissing:
            if not holding.job.live:
                raise
            self._wait(holding, expect, live.waiting_for_file(holding.job, self._now(holding), self._idle_s), 0)
        with source:  # opened once for the step; every read goes through it
            return self._start_with(holding, expect, source, account)

    def _start_with(self, holding: Holding, expect: Expect, source: Source, account: Account) -> Step:
        job, holder = holding.job, holding.holder
        info = source.info()
        # a retried start keeps the plan its first attempt recorded: chunk 0 may already be at api.video
        chunk_size = job.chunk_size or job.spec.chunk_size or (
            self.settings.chunk_size if job.live else self._fitted_chunk_size(info.size, account))
        plan = plan_chunks(0 if job.live else info.size, chunk_size, parts=job.live)
        token = holding.token or self._mint_token(job, holder, expect, account, holding.turn, info.size)
        video_id = job.video_id or self._ensure_video(job, holder, expect, account, holding.turn)
        changes = {"state": State.UPLOADING, "chunk_size": plan.chunk_size, "source_identity": info.identity,
                   "video_id": video_id or ""}
        if not job.live:
            changes.update({"size": info.size, "chunks_total": plan.count})
        self._write(job.job_id, holder, changes, expect)
        log.info("job %s: %s in chunk(s) of %d", job.job_id, "live, parts" if job.live
                 else f"{info.size} bytes, {plan.count}", plan.chunk_size)
        job = replace(job, state=State.UPLOADING, size=job.size if job.live else info.size,
                      chunk_size=plan.chunk_size, chunks_total=job.chunks_total if job.live else plan.count,
                      video_id=video_id, source_identity=info.identity)
        chunk = ChunkInFlight(job, 0, source, info.name, token, holding.held, account, holding.turn)
        if job.live:  # the first part goes now if it is there, else chunk 0's step waits for it
            return self._live(replace(holding, job=job), expectation(TASK_CHUNK, 0), chunk, info.size, wait=False)
        return self._send(chunk)

    def _chunk(self, holding: Holding, index: int, expect: Expect) -> Step:
        account = account_of(self._keyring, holding.job, holding.token)
        with self._source(holding.job) as source:  # opened once for the step; every read goes through it
            return self._chunk_with(holding, index, expect, source, account)

    def _chunk_with(self, holding: Holding, index: int, expect: Expect, source: Source, account: Account) -> Step:
        job = holding.job
        info = source.info()
        if not info.same_source(job.source_identity):
            raise SourceError(f"source: {source.description} changed since the job started "
                              f"(was {job.size} bytes, now {info.size})")
        token = self._fresh_token(holding, expect, account, holding.token) if holding.token \
            else self._token_again(holding, expect, account)
        chunk = ChunkInFlight(job, index, source, info.name, token, holding.held, account, holding.turn)
        if job.live:
            return self._live(holding, expect, chunk, info.size)
        return self._send(chunk)

    def _finalize(self, holding: Holding, expect: Expect) -> Step | None:
        job, holder = holding.job, holding.holder
        account = account_of(self._keyring, job, holding.token)
        missing = self._missing_chunk(job, account, holding.turn)
        if missing is not None:
            log.warning("job %s: api.video lacks chunk %d; sending it again", job.job_id, missing + 1)
            written = self._write(job.job_id, holder, {"state": State.UPLOADING, "next_chunk": missing,
                                                       "bytes_sent": job.plan.start(missing), "verify_upload": "",
                                                       "handoff_at": NOW}, expect, release=True)
            return replace(step_for(job, TASK_CHUNK, missing), handoff_at=written.at)
        if account.keyed:  # a token-only job set nothing a key could set (refused at its start)
            if not job.video_id:
                raise PermanentError("no video id was recorded for this job")
            account.with_key(holding.turn).patch_video(job.video_id, video.tagged(job).to_json())
        done = self._write(job.job_id, holder, {"state": State.DONE, "error": ""}, expect, release=True)
        telemetry.job_ended(job, State.DONE, done.at)
        self.reporter.state(job.job_id, State.DONE, Whose(*job.whose))
        log.info("job %s: done, video %s", job.job_id, job.video_id)
        if job.token_minted:
            self.revoke_token(job.job_id)
        return callback_step(job)

    # -- live jobs ---------------------------------------------------------------------------
    def _live(self, holding: Holding, expect: Expect, chunk: ChunkInFlight, size: int, wait: bool = True) -> Step:
        """Send the live job's chunk if its file holds it (``tasks.pipeline.live``), else wait: the step
        goes to the delayed set (``wait``), or is handed on as the chunk's own step (the job's start)."""
        job = chunk.job
        seen = live.look(job, chunk.index, size, self._now(holding), self._idle_s)
        if not seen.ready:
            if wait:
                self._wait(holding, expect, seen.changes, size)
            written = self._write(job.job_id, holding.holder, {**seen.changes, "handoff_at": NOW}, expect,
                                  release=True)
            return replace(step_for(job, TASK_CHUNK, chunk.index), handoff_at=written.at)
        self.store.live_waiting(job.job_id, False)
        if seen.changes:
            self._write(job.job_id, holding.holder, seen.changes, expect)
            if "finished_at" in seen.changes:
                log.info("job %s: live, its file did not grow for %d s: finished at %d bytes", job.job_id,
                         job.spec.finish_when_idle_s, seen.plan.size)
        chunk.job = replace(job, size=seen.plan.size or None, chunks_total=seen.plan.count or None)
        if holding.retried and self._part_arrived(chunk):
            return self._sent(chunk, trusted=False)
        return self._send(chunk)

    def _wait(self, holding: Holding, expect: Expect, changes: dict[str, Any], size: int) -> NoReturn:
        """A live job waits for its file: note what was seen, count it as waiting, defer the step."""
        if changes:
            self._write(holding.job.job_id, holding.holder, changes, expect)
        self.store.live_waiting(holding.job.job_id, True, self._now(holding))
        raise WaitingForBytes(holding.job.job_id, size, live.LIVE_POLL_S)

    def _part_arrived(self, chunk: ChunkInFlight) -> bool:
        """Before a live part goes again (its step ran before: the answer may have been lost), ask
        api.video whether it holds that part; only an API key can ask."""
        if not chunk.account.keyed or not chunk.job.video_id:
            return False
        status = chunk.account.with_key(chunk.turn).video_status(chunk.job.video_id)
        if chunk_received(status, chunk.plan, chunk.index):
            log.info("job %s: part %d had arrived; not sent again", chunk.job.job_id, chunk.index + 1)
            return True
        return False

    def _now(self, holding: Holding) -> float:
        """Redis's time when the step claimed its job."""
        return holding.job.heartbeat_at or self.store.now()

    @property
    def _idle_s(self) -> int:
        return self.settings.live_idle_timeout_s

    # -- holding the job -----------------------------------------------------------------
    @contextmanager
    def _holding(self, job_id: str, holder: str, expect: Expect, retried: bool) -> Iterator[Holding | None]:
        """Claim the lease (yield None for a step the record no longer expects), keep it renewed
        while the body runs, and refuse a step that keeps dying half-way."""
        claim = self.store.claim(job_id, holder, self.settings.lease_ttl_s, expect)
        if claim.record is None:
            if claim.holder:
                raise Busy(claim.holder, min(max(claim.holder_ttl_s, 0.5), MAX_BUSY_WAIT_S))
            log.info("job %s: nothing to do, %s", job_id, claim.mismatch)
            yield None
            return
        telemetry.joined(claim.record, _chunk_bytes(claim.record, expect))
        if claim.record.step_starts > self.settings.max_retries + 1:
            raise StepKeepsDying(claim.record.step_starts - 1)
        assert self.leases is not None
        turn = turn_of(claim.record, self.settings.tenant_weights)
        with self.leases.hold(job_id, holder, expect) as held:
            yield Holding(claim.record, claim.token, held, turn, retried or claim.record.step_starts > 1)

    def _write(self, job_id: str, holder: str, changes: dict[str, Any], expect: Expect,
               release: bool = False) -> Written:
        written = self.store.update(job_id, holder, changes, expect=expect, release=release, reclaim=True,
                                    ttl_s=self.settings.lease_ttl_s)
        if not written:
            raise LeaseLost(f"job {job_id}: the record moved on under this step ({written.why})")
        return written

    # -- starting a job ------------------------------------------------------------------
    @property
    def _keyring(self) -> Keyring:
        assert self.keyring is not None
        return self.keyring

    def _choose(self, holding: Holding, expect: Expect) -> Account:
        """The account the job runs in: chosen once, before any request that creates or uploads, and
        recorded (a retried start keeps what its first attempt chose)."""
        job = holding.job
        if job.account is not None or job.token_only:
            return account_of(self._keyring, job, holding.token)
        account = choose_account(self._keyring, job.spec, holding.token, holding.turn)
        self._write(job.job_id, holding.holder, {"account": account.name, "token_only": not account.keyed}, expect)
        return account

    def _fitted_chunk_size(self, size: int, account: Account) -> int:
        """The chunk size of a job of ``size`` bytes whose producer did not pin one: the largest when
        its account's upload budget binds, the configured default when it is idle. It binds when the
        requests in hand (the account's uploads of the last minute, the turns waiting for a slot, and
        this job's own at the default size) would use half a minute's budget or more: a big job is many
        requests by itself. See the README, "Chunk size and the upload budget"."""
        default = self.settings.chunk_size
        in_hand, limit = account.limiter.usage(UPLOAD)
        if not limit:  # not known yet: nothing to fit to
            return default
        in_hand += plan_chunks(size, default).count
        return MAX_CHUNK_BYTES if in_hand >= limit * BUDGET_BINDS_AT else default

    def _source(self, job: JobRecord) -> Source:
        return open_source(job.spec.source, self.settings.allowed_roots, self.sources, self.settings.source_limits,
                           growing=job.live)

    def _mint_token(self, job: JobRecord, holder: str, expect: Expect, account: Account, turn: Turn,
                    remaining_bytes: int) -> str:
        if not account.keyed:
            raise ConfigError("the job has no upload token and no API key of its account to mint one")
        token, ttl_s = minted.mint(account, turn, remaining_bytes)
        self._write(job.job_id, holder, {"secret:token": token, "token_minted": True,
                                         "token_expires_at": (job.heartbeat_at or 0.0) + ttl_s}, expect)
        return token

    def _token_again(self, holding: Holding, expect: Expect, account: Account) -> str:
        """A job resumed without a token (the one vuq minted was deleted when it failed): a new one of its
        account; a job whose account holds no key needs one from its producer."""
        job = holding.job
        if not account.keyed:
            raise TokenNeeded("the job's upload token is missing from its record, and its account holds no key "
                              "to mint one")
        log.info("job %s: resumed without its token (a minted one is deleted when a job fails); minting another",
                 job.job_id)
        return self._mint_token(job, holding.holder, expect, account, holding.turn, (job.size or 0) - job.bytes_sent)

    def _fresh_token(self, holding: Holding, expect: Expect, account: Account, token: str) -> str:
        """The job's token, or a new one when the one vuq minted for it runs short (the old one deleted)."""
        job = holding.job
        if not (job.token_minted and job.token_expires_at and job.heartbeat_at) \
                or job.token_expires_at - job.heartbeat_at > minted.RENEW_BEFORE_S:
            return token
        fresh = self._mint_token(job, holding.holder, expect, account, holding.turn, (job.size or 0) - job.bytes_sent)
        minted.replaced(account, holding.turn, token)
        telemetry.event("vuq.token.renewed", reason="expiring")
        log.info("job %s: its minted token was about to expire; replaced", job.job_id)
        return fresh

    def _ensure_video(self, job: JobRecord, holder: str, expect: Expect, account: Account, turn: Turn
                      ) -> str | None:
        """With an API key, create the job's empty video first, so a retried chunk 0 fills it instead of
        creating a second one; tagged with the job's id and nonce (``tasks.pipeline.video``). Only a start
        that may have crashed after asking for it (``container_pending``) looks for it again."""
        if not account.keyed:
            return None
        api = account.with_key(turn)
        if job.container_pending and job.nonce:
            found = video.find(api, job)
            if found:
                return self._record_video(job, holder, expect, found)
        if not job.nonce:
            job = replace(job, nonce=secrets.token_hex(8))
        self._write(job.job_id, holder, {"container_pending": True, "nonce": job.nonce}, expect)
        created = api.create_video(video.container(job))
        return self._record_video(job, holder, expect, str(created["videoId"]))

    def _record_video(self, job: JobRecord, holder: str, expect: Expect, video_id: str) -> str:
        self._write(job.job_id, holder, {"video_id": video_id, "container_pending": ""}, expect)
        return video_id

    # -- sending a chunk -----------------------------------------------------------------
    def _send(self, chunk: ChunkInFlight) -> Step:
        """Send the chunk, move the cursor past it (fenced), and return the step that follows."""
        job, index, holder = chunk.job, chunk.index, chunk.held.holder
        expect = expectation(TASK_CHUNK, index)
        trusted = False
        try:
            answer = self._upload(chunk)
        except ApiRejected as exc:
            if exc.token_refused and chunk.account.keyed:  # once: a second refusal fails
                # the token is of the job's account (checked at its start, or minted there): a new one of the
                # same account may replace it; a token-only job's is never replaced
                log.warning("job %s: api.video refused the upload token; minting a new one", job.job_id)
                telemetry.event("vuq.token.renewed", reason="refused")
                chunk.token = self._mint_token(job, holder, expect, chunk.account, chunk.turn,
                                               max(chunk.length, chunk.plan.size - chunk.plan.start(index)))
                answer = self._upload(chunk)
            elif exc.slug in ALREADY_RECEIVED_SLUGS and job.video_id:
                trusted = self._confirm_received(chunk)
                answer = {"videoId": job.video_id}
            else:
                raise
        if chunk.held.lost.is_set():
            raise LeaseLost(f"job {job.job_id}: lease lost while sending chunk {index + 1}; stopping")
        return self._sent(chunk, trusted, str(answer["videoId"]))

    def _sent(self, chunk: ChunkInFlight, trusted: bool, answered_id: str = "") -> Step:
        """Move the cursor past the chunk api.video holds now (fenced) and return the step that follows."""
        job, index, holder = chunk.job, chunk.index, chunk.held.holder
        expect = expectation(TASK_CHUNK, index)
        video_id = job.video_id or answered_id
        changes: dict[str, Any] = {"next_chunk": index + 1, "bytes_sent": chunk.plan.end(index),
                                   "video_id": video_id, "chunk_bytes": 0, "handoff_at": NOW,
                                   "state": State.FINALIZING if chunk.last else State.UPLOADING}
        if trusted:
            changes["verify_upload"] = True
        written = self._write(job.job_id, holder, changes, expect, release=True)
        log.info("job %s: %s %d/%s sent (%d bytes)", job.job_id, "part" if chunk.plan.parts else "chunk", index + 1,
                 chunk.plan.count or "*", chunk.length)
        job = replace(job, video_id=video_id)
        step = step_for(job, TASK_FINALIZE) if chunk.last else step_for(job, TASK_CHUNK, index + 1)
        return replace(step, sent=chunk.sent(), handoff_at=written.at)

    def _upload(self, chunk: ChunkInFlight) -> dict[str, Any]:
        return chunk.account.uploads(chunk.turn).upload_chunk(chunk.token, video_id=chunk.job.video_id,
                                     content_range=chunk.plan.content_range(chunk.index), file_name=chunk.name,
                                     length=chunk.length, blocks=chunk.blocks(self.reporter))

    def _confirm_received(self, chunk: ChunkInFlight) -> bool:
        """A re-sent chunk was answered "already received". With an API key, ask api.video whether
        it holds the range (it may still be arriving through another request: then wait and ask
        again); without one, trust the answer and say so (``verify_upload``). Returns whether trusted."""
        job, index = chunk.job, chunk.index
        if not chunk.account.keyed:
            log.info("job %s: chunk %d taken as already received (no API key to check)", job.job_id, index + 1)
            return True
        status = chunk.account.with_key(chunk.turn).video_status(job.video_id or "")
        if not chunk_received(status, chunk.plan, index):
            raise RangeArriving(job.job_id, index)
        log.info("job %s: chunk %d was already received", job.job_id, index + 1)
        return False

    def _missing_chunk(self, job: JobRecord, account: Account, turn: Turn) -> int | None:
        """The first chunk api.video lacks, when a chunk was taken on trust and a key can check."""
        if not job.verify_upload or not account.keyed or not job.video_id:
            return None
        return first_missing_chunk(account.with_key(turn).video_status(job.video_id), job.plan)


def _chunk_bytes(job: JobRecord, expect: Expect) -> int | None:
    """The bytes of the chunk a chunk step sends (None for other steps, or before the plan is known)."""
    index = next(iter(expect.get("next_chunk", ())), None)
    if index is None or not job.size or not job.chunk_size or expect.get("state") != [State.UPLOADING]:
        return None
    return job.plan.length(int(str(index)))
