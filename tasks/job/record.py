"""The job record: its states, its fields and its public (secret-free) form."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from tasks.apivideo.accounts import DEFAULT_ACCOUNT
from tasks.apivideo.chunking import ChunkPlan
from tasks.constants import NEEDS_TOKEN
from tasks.job.spec import UploadSpec
from tasks.redact import mask_url
from tasks.telemetry.context import parse_traceparent


class State(StrEnum):
    QUEUED = "queued"
    UPLOADING = "uploading"
    FINALIZING = "finalizing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES

    @property
    def final(self) -> bool:
        return self in (State.DONE, State.FAILED, State.CANCELLED)


ACTIVE_STATES = (State.QUEUED, State.UPLOADING, State.FINALIZING)
# The one hash field that holds a secret; it never leaves the job store, and it is erased
# the moment a job is done or cancelled (a failed job keeps it: it may be resumed).
TOKEN_FIELD = "secret:token"


@dataclass(frozen=True)
class JobRecord:
    """A read of the Redis hash ``vuq:job:{id}``, without the token. Times are seconds since
    the epoch on Redis's clock."""

    job_id: str
    state: State
    spec: UploadSpec
    size: int | None = None
    chunk_size: int | None = None
    chunks_total: int | None = None
    next_chunk: int = 0
    bytes_sent: int = 0
    chunk_bytes: int = 0  # of the chunk being sent now, as last reported
    video_id: str | None = None
    retries: int = 0
    last_retry_reason: str | None = None
    error: str | None = None
    error_retryable: bool = False  # whether `vuq resume` can help
    error_reason: str | None = None  # the error's class (bad_source, api_rejected, ...)
    error_needs: str | None = None  # what a resume needs first (NEEDS_TOKEN)
    created_at: float = 0.0
    updated_at: float = 0.0
    ended_at: float | None = None
    heartbeat_at: float | None = None  # a worker's last sign of life on this job
    handoff_at: float | None = None  # when the message for its next step was published
    wake_at: float | None = None  # when a deferred or retried step is due
    step_starts: int = 0  # claims of the current step since it last stopped in order
    source_identity: str | None = None
    token_minted: bool = False
    container_pending: bool = False  # a container was asked for; after a crash, look for it
    verify_upload: bool = False  # a chunk was taken as "already received": check before done
    callback: str | None = None
    cleanup: str | None = None  # what cancel did with the partial video
    queue: str | None = None  # the queue its steps go to (the janitor of that queue watches it)
    account: str | None = None  # the account it runs in, chosen at its start (None with token_only, or not yet)
    token_only: bool = False  # its token belongs to no account the workers hold a key for: no key is sent
    nonce: str | None = None  # tags the video it made, with its id: no other job adopts or deletes it
    token_expires_at: float | None = None  # when a token vuq minted for it expires (Redis's clock)
    callback_attempts: int = 0  # deliveries of its webhook tried since it ended
    callback_again: bool = False  # an operator asked for its webhook to be delivered again
    finished_at: float | None = None  # a live job: when its finish came (its size is final from then on)
    live_seen: int | None = None  # a live job: its file's size when a step last looked
    live_grew_at: float | None = None  # a live job: when its file was last seen growing (or its wait began)
    moved_at: float | None = None  # when the step holding it began, or last moved a byte (`vuq health`)
    traceparent: str | None = None  # its trace's root span, W3C (tasks.telemetry.context); None: not traced

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> JobRecord:
        def num(name: str) -> int | None:
            return int(data[name]) if data.get(name) else None

        def real(name: str) -> float | None:
            return float(data[name]) if data.get(name) else None

        def text(name: str) -> str | None:
            return data.get(name) or None

        return cls(
            job_id=data["job_id"], state=State(data["state"]),
            spec=UploadSpec.from_json(json.loads(data.get("spec") or "{}")),
            size=num("size"), chunk_size=num("chunk_size"), chunks_total=num("chunks_total"),
            next_chunk=num("next_chunk") or 0, bytes_sent=num("bytes_sent") or 0,
            chunk_bytes=num("chunk_bytes") or 0, video_id=text("video_id"), retries=num("retries") or 0,
            last_retry_reason=text("last_retry_reason"), error=text("error"),
            error_retryable=data.get("error_retryable") == "1", error_reason=text("error_reason"),
            error_needs=text("error_needs"), created_at=real("created_at") or 0.0,
            updated_at=real("updated_at") or 0.0, ended_at=real("ended_at"), heartbeat_at=real("heartbeat_at"),
            handoff_at=real("handoff_at"), wake_at=real("wake_at"), step_starts=num("step_starts") or 0,
            source_identity=text("source_identity"),
            token_minted=data.get("token_minted") == "1", container_pending=data.get("container_pending") == "1",
            verify_upload=data.get("verify_upload") == "1", callback=text("callback"), cleanup=text("cleanup"),
            queue=text("queue"), account=text("account"), token_only=data.get("token_only") == "1",
            nonce=text("nonce"), token_expires_at=real("token_expires_at"),
            callback_attempts=num("callback_attempts") or 0, callback_again=data.get("callback_again") == "1",
            finished_at=real("finished_at"), live_seen=num("live_seen"), live_grew_at=real("live_grew_at"),
            moved_at=real("moved_at"),
            traceparent=text("traceparent"),
        )

    @property
    def title(self) -> str | None:
        return self.spec.video.title

    @property
    def file_name(self) -> str:
        """The source's file name, for people (never its query string)."""
        return file_name(self.spec.source)

    @property
    def plan(self) -> ChunkPlan:
        """The chunks its start recorded (size and chunk size); a live job's size is 0 until its finish."""
        return ChunkPlan(self.size or 0, self.chunk_size or 0, parts=self.spec.live)

    @property
    def live(self) -> bool:
        return self.spec.live

    @property
    def progress(self) -> float:
        """Share of the bytes api.video acknowledged (0..1); 0 until the size is known."""
        return min(1.0, self.bytes_sent / self.size) if self.size else 0.0

    def resume_hint(self) -> str | None:
        """How a person continues this failed job, or None when a resume cannot help."""
        if self.state != State.FAILED or not self.error_retryable:
            return None
        return resume_command(self.job_id, self.error_needs)

    def public(self) -> dict[str, Any]:
        """What `vuq status --json`, listings and webhooks show: never a secret. A source or
        callback URL keeps its scheme, host and path; its user info and query are masked."""
        return {
            "job_id": self.job_id,
            "state": str(self.state),
            "video_id": self.video_id,
            "title": self.title,
            "file": self.file_name,
            "size": self.size,
            "bytes_sent": self.bytes_sent,
            "chunk_size": self.chunk_size,
            "chunks_total": self.chunks_total,
            "next_chunk": self.next_chunk,
            "retries": self.retries,
            "last_retry_reason": self.last_retry_reason,
            "error": self.error,
            "error_reason": self.error_reason,  # the error's class, stable for programs: bad_source, ...
            "error_retryable": self.error_retryable if self.error else None,
            "resume": self.resume_hint(),
            "source": mask_url(self.spec.source) or None,
            "video": self.spec.video.to_json(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ended_at": self.ended_at,
            "heartbeat_at": self.heartbeat_at,
            "callback_url": mask_url(self.spec.callback_url) if self.spec.callback_url else None,
            "callback": self.callback,
            "cleanup": self.cleanup,
            "account": self.account_shown,
            "tenant": self.tenant,
            "priority": self.spec.priority,
            "live": self.spec.live,
            "finished_at": self.finished_at,
            "trace_id": self.trace_id,
        }

    @property
    def trace_id(self) -> str | None:
        """The id of the job's OpenTelemetry trace (32 hex digits, as trace backends search for it), or None
        when the job is not traced."""
        parsed = parse_traceparent(self.traceparent)
        return f"{parsed[0]:032x}" if parsed else None

    @property
    def whose(self) -> tuple[str, str]:
        """(account, tenant) for reports: the account it runs in (or names), the tenant whose share it takes."""
        return self.account_shown or DEFAULT_ACCOUNT, self.tenant

    @property
    def tenant(self) -> str:
        """Whose share of its account's budget it takes: its spec's ``tenant``, else the account it runs
        in (once its start chose), else the one it names, else ``default``."""
        return self.spec.tenant or self.account or self.spec.share

    @property
    def account_shown(self) -> str | None:
        """The account the job runs in (``token-only`` when it has no key), or the one it names until
        its start chose."""
        if self.token_only:
            return "token-only"
        return self.account or self.spec.account


def file_name(source: str) -> str:
    """A source's file name, for people (never its query string)."""
    path = urlsplit(source).path if "://" in source else source
    return os.path.basename(path.rstrip("/")) or "-"


def resume_command(job_id: str, needs: str | None = None) -> str:
    """The command that continues a failed job (``needs``: what the resume needs first)."""
    if needs == NEEDS_TOKEN:
        return f"vuq resume {job_id} --token-file FILE (a new upload token)"
    return f"vuq resume {job_id}"
