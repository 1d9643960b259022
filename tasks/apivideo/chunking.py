"""Chunk planning: which byte range each chunk covers and the Content-Range it carries.

A file at rest goes up as byte ranges (``bytes a-b/total``). A live one (a file still being written)
goes up as numbered parts (``part n/*``) while its size is unknown, and its last part as ``part N/N``
once a finish gave the size: every part but the last is exactly one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.constants import MAX_CHUNK_BYTES, MAX_PARTS, MIN_CHUNK_BYTES
from tasks.errors import SourceError, SpecError


@dataclass(frozen=True)
class ChunkPlan:
    """A source of ``size`` bytes cut into ``count`` chunks of ``chunk_size`` (the last may be shorter).
    ``parts``: sent as numbered parts (a live upload); its ``size`` is 0 until its finish gave it, and
    until then every chunk is a whole one and none is the last."""

    size: int
    chunk_size: int
    parts: bool = False

    @property
    def known(self) -> bool:
        """Whether the size is final (a file at rest, or a live upload that was finished)."""
        return not self.parts or self.size > 0

    @property
    def count(self) -> int:
        """How many chunks; 0 while a live upload's size is unknown."""
        return -(-self.size // self.chunk_size) if self.size else 0

    def start(self, index: int) -> int:
        self._check(index)
        return index * self.chunk_size

    def length(self, index: int) -> int:
        if not self.known:
            self._check(index)
            return self.chunk_size
        return min(self.chunk_size, self.size - self.start(index))

    def last(self, index: int) -> bool:
        return self.known and index + 1 == self.count

    def end(self, index: int) -> int:
        """Offset one past the last byte of chunk ``index``."""
        return self.start(index) + self.length(index)

    def content_range(self, index: int) -> str | None:
        """The header for chunk ``index``; None when a file at rest goes up in one request."""
        if self.parts:
            self._check(index)
            return f"part {index + 1}/{self.count if self.last(index) else '*'}"
        if self.count == 1:
            return None
        return f"bytes {self.start(index)}-{self.end(index) - 1}/{self.size}"

    def _check(self, index: int) -> None:
        if not 0 <= index < (self.count if self.known else MAX_PARTS):
            raise IndexError(f"chunk {index} is outside 0..{(self.count if self.known else MAX_PARTS) - 1}")


def plan_chunks(size: int, chunk_size: int, parts: bool = False) -> ChunkPlan:
    """Plan the chunks of a source, refusing what api.video would refuse; ``parts`` with ``size`` 0 is
    a live upload whose size is not known yet."""
    if size <= 0 and not parts:
        raise SourceError("the source is empty (0 bytes); there is nothing to upload")
    if parts and -(-size // chunk_size) > MAX_PARTS:
        raise SourceError(f"the source is {size} bytes: more than {MAX_PARTS} parts of {chunk_size} bytes")
    if not MIN_CHUNK_BYTES <= chunk_size <= MAX_CHUNK_BYTES:
        raise SpecError(
            "chunk_size",
            f"{chunk_size} bytes is outside {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES} (5 MiB to 128 MiB)",
        )
    return ChunkPlan(size=size, chunk_size=chunk_size, parts=parts)
