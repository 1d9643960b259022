"""The job record: its states, its fields and its public (secret-free) form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


ACTIVE_STATES = frozenset({State.QUEUED, State.UPLOADING, State.FINALIZING})
# The one hash field that holds a secret; it never leaves the job store.
TOKEN_FIELD = "secret:token"


@dataclass(frozen=True)
class JobRecord:
    """A read of the Redis hash ``vuq:job:{id}``, without the token."""

    job_id: str
    state: State
    spec: dict[str, Any]
    size: int | None
    chunk_size: int | None
    chunks_total: int | None
    next_chunk: int
    bytes_sent: int
    video_id: str | None
    retries: int
    error: str | None
    error_retryable: bool
    created_at: float
    updated_at: float
    heartbeat_at: float | None
    wake_at: float | None
    source_identity: str | None
    has_token: bool
    callback: str | None = None

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> JobRecord:
        def num(name: str) -> int | None:
            return int(data[name]) if data.get(name) else None

        def real(name: str) -> float | None:
            return float(data[name]) if data.get(name) else None

        return cls(
            job_id=data["job_id"],
            state=State(data["state"]),
            spec=json.loads(data.get("spec") or "{}"),
            size=num("size"),
            chunk_size=num("chunk_size"),
            chunks_total=num("chunks_total"),
            next_chunk=num("next_chunk") or 0,
            bytes_sent=num("bytes_sent") or 0,
            video_id=data.get("video_id") or None,
            retries=num("retries") or 0,
            error=data.get("error") or None,
            error_retryable=data.get("error_retryable") == "1",
            created_at=real("created_at") or 0.0,
            updated_at=real("updated_at") or 0.0,
            heartbeat_at=real("heartbeat_at"),
            wake_at=real("wake_at"),
            source_identity=data.get("source_identity") or None,
            has_token=bool(data.get(TOKEN_FIELD)),
            callback=data.get("callback") or None,
        )

    def public(self) -> dict[str, Any]:
        """What `vuq status --json`, listings and callbacks show: never a secret."""
        return {
            "job_id": self.job_id,
            "state": str(self.state),
            "video_id": self.video_id,
            "size": self.size,
            "bytes_sent": self.bytes_sent,
            "chunk_size": self.chunk_size,
            "chunks_total": self.chunks_total,
            "next_chunk": self.next_chunk,
            "retries": self.retries,
            "error": self.error,
            "error_retryable": self.error_retryable if self.error else None,
            "source": self.spec.get("source"),
            "video": self.spec.get("video", {}),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "heartbeat_at": self.heartbeat_at,
            "callback_url": self.spec.get("callback_url"),
            "callback": self.callback,
        }
