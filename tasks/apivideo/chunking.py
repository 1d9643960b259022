"""Chunk planning: which byte range each chunk covers and the Content-Range it carries."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.constants import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES
from tasks.errors import SourceError, SpecError


@dataclass(frozen=True)
class ChunkPlan:
    """A source of ``size`` bytes cut into ``count`` chunks of ``chunk_size`` (the last may be shorter)."""

    size: int
    chunk_size: int

    @property
    def count(self) -> int:
        return -(-self.size // self.chunk_size)

    def start(self, index: int) -> int:
        self._check(index)
        return index * self.chunk_size

    def length(self, index: int) -> int:
        return min(self.chunk_size, self.size - self.start(index))

    def end(self, index: int) -> int:
        """Offset one past the last byte of chunk ``index``."""
        return self.start(index) + self.length(index)

    def content_range(self, index: int) -> str | None:
        """The header for chunk ``index``; None when the whole file goes up in one request."""
        if self.count == 1:
            return None
        return f"bytes {self.start(index)}-{self.end(index) - 1}/{self.size}"

    def _check(self, index: int) -> None:
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} is outside 0..{self.count - 1}")


def plan_chunks(size: int, chunk_size: int) -> ChunkPlan:
    """Plan the chunks of a source, refusing what api.video would refuse."""
    if size <= 0:
        raise SourceError("the source is empty (0 bytes); there is nothing to upload")
    if not MIN_CHUNK_BYTES <= chunk_size <= MAX_CHUNK_BYTES:
        raise SpecError(
            "chunk_size",
            f"{chunk_size} bytes is outside {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES} (5 MiB to 128 MiB)",
        )
    return ChunkPlan(size=size, chunk_size=chunk_size)
