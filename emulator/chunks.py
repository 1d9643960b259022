"""The chunk rules of docs/protocol.md: what a video's upload state accepts next.

:class:`UploadState` is plain data plus pure checks. A chunk goes through two
steps: ``admit_*`` before its body is read (header-only rules; reserves the
range so concurrent chunks cannot overlap) and ``accept_*`` once the body's
size is known (size rules; records the chunk). ``release`` drops a reservation
of a chunk that failed, so a rejected chunk never counts as received.

Reservations count as sent for the header rules: while a ``bytes`` chunk is in
flight a ``part`` is refused and the other way round, and a part number or a
range in flight collides like a received one. ``accept_*`` checks the header
rules again against what was recorded meanwhile (concurrent chunks of the same
video), so the forms never mix and a total, once recorded, never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator import errors
from emulator.constants import MAX_SINGLE_UPLOAD_BYTES, MIN_CHUNK_BYTES
from emulator.content_range import HEADER_NAME, ByteRange, PartRange
from emulator.errors import ApiError

MODE_BYTES = "bytes"
MODE_PART = "part"
MODE_SINGLE = "single"


@dataclass
class Chunk:
    """One received chunk: its arrival order, size, and either a byte offset or a part number."""

    arrived: int
    size: int
    first: int | None = None
    part: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for persistence."""
        return {"arrived": self.arrived, "size": self.size, "first": self.first, "part": self.part}


def _range_error(error: errors.Slug, detail: str | None = None) -> ApiError:
    return ApiError(error, 400, name=HEADER_NAME, detail=detail)


@dataclass
class UploadState:
    """What a video has received so far, and the reservations of chunks in flight."""

    mode: str | None = None
    total: int | None = None
    chunks: list[Chunk] = field(default_factory=list)
    pending_ranges: list[tuple[int, int]] = field(default_factory=list)
    pending_parts: set[int] = field(default_factory=set)

    # ---- persistence -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (reservations are not persisted)."""
        return {"mode": self.mode, "total": self.total, "chunks": [c.to_dict() for c in self.chunks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UploadState:
        """Inverse of :meth:`to_dict`."""
        chunks = [Chunk(**c) for c in data.get("chunks", [])]
        return cls(mode=data.get("mode"), total=data.get("total"), chunks=chunks)

    # ---- derived facts -----------------------------------------------------
    @property
    def started(self) -> bool:
        """True once any chunk was received or is in flight."""
        return bool(self.chunks or self.pending_ranges or self.pending_parts)

    @property
    def complete(self) -> bool:
        """True once the chunks cover the whole source."""
        if self.mode == MODE_SINGLE:
            return bool(self.chunks)
        if self.total is None:
            return False
        if self.mode == MODE_PART:
            return {c.part for c in self.chunks} == set(range(1, self.total + 1))
        return self.received_bytes() == self.total and self._contiguous()

    def received_bytes(self) -> int:
        """Total bytes received (all modes)."""
        return sum(c.size for c in self.chunks)

    def filesize(self) -> int | None:
        """Size of the source once known (complete, or a byte total was given)."""
        if self.mode == MODE_BYTES:
            return self.total
        return self.received_bytes() if self.complete else None

    def _contiguous(self) -> bool:
        end = 0
        for first, last in sorted((c.first or 0, (c.first or 0) + c.size - 1) for c in self.chunks):
            if first != end:
                return False
            end = last + 1
        return True

    def spans(self) -> list[tuple[int | None, int | None, Chunk]]:
        """(from, to, chunk) per chunk sorted by offset; part offsets once earlier sizes are known."""
        if self.mode != MODE_PART:
            ordered = sorted(self.chunks, key=lambda c: c.first or 0)
            return [(c.first or 0, (c.first or 0) + c.size - 1, c) for c in ordered]
        sizes = {c.part: c.size for c in self.chunks}
        out: list[tuple[int | None, int | None, Chunk]] = []
        for chunk in sorted(self.chunks, key=lambda c: c.part or 0):
            number = chunk.part or 0
            known = all(n in sizes for n in range(1, number))
            first = sum(sizes[n] for n in range(1, number)) if known else None
            last = None if first is None else first + chunk.size - 1
            out.append((first, last, chunk))
        return out

    # ---- admission (before the body) ----------------------------------------
    def admit_single(self) -> None:
        """A request without Content-Range: only valid while nothing was sent."""
        if self.started:
            raise _range_error(errors.RANGE_ALREADY_INITIATED)

    def admit_bytes(self, rng: ByteRange) -> None:
        """Header rules for ``bytes a-b/T``; reserves the range."""
        self._check_bytes(rng)
        self.pending_ranges.append((rng.first, rng.last))

    def admit_part(self, rng: PartRange) -> None:
        """Header rules for ``part n/N``; reserves the part number."""
        self._check_part(rng)
        self.pending_parts.add(rng.number)

    def _form(self) -> str | None:
        """The form this upload started with: its recorded chunks', else its reservations'."""
        if self.mode is not None:
            return self.mode
        if self.pending_parts:
            return MODE_PART
        return MODE_BYTES if self.pending_ranges else None

    def _check_bytes(self, rng: ByteRange) -> None:
        form = self._form()
        if form == MODE_PART:
            raise _range_error(errors.RANGE_STARTED_WITH_PART)
        if form == MODE_SINGLE:
            raise _range_error(errors.RANGE_ALREADY_INITIATED)
        total = self._settled_total(rng.total, self._highest_byte(), errors.BYTES_DIFFERENT_TOTAL,
                                    errors.BYTES_TOTAL_TOO_LOW, "total_bytes")
        if total is not None and rng.last >= total:
            raise _range_error(errors.BYTES_TO_TOO_HIGH_TOTAL)
        if any(a <= rng.last and rng.first <= b for a, b in self._byte_spans()):
            raise _range_error(errors.BYTES_RANGE_OVERLAP)
        is_last = total is not None and rng.last == total - 1
        if rng.length < MIN_CHUNK_BYTES and not is_last:
            raise _range_error(errors.BYTES_RANGE_TOO_SMALL)

    def _check_part(self, rng: PartRange) -> None:
        form = self._form()
        if form == MODE_BYTES:
            raise _range_error(errors.RANGE_STARTED_WITH_BYTES)
        if form == MODE_SINGLE:
            raise _range_error(errors.RANGE_ALREADY_INITIATED)
        sent = self._sent_parts()
        if rng.number in sent:  # first: a part sent again collides, whatever total it carries
            detail = f"The part number {rng.number} has already been sent."
            raise _range_error(errors.PART_ALREADY_SENT, detail)
        total = self._settled_total(rng.total, max(sent, default=0), errors.PART_DIFFERENT_TOTAL,
                                    errors.PART_TOTAL_TOO_LOW, "total_parts")
        if total is not None and rng.number > total:
            raise _range_error(errors.PART_TOO_HIGH_TOTAL)

    def _sent_parts(self) -> set[int]:
        """Part numbers received or in flight."""
        return {c.part or 0 for c in self.chunks} | self.pending_parts

    def _settled_total(self, given: int | None, highest: int, different: errors.Slug,
                       too_low: errors.Slug, label: str) -> int | None:
        if given is None or given == self.total:
            return self.total
        if self.total is not None:
            detail = f'The "{label}" you already set for this video is {self.total}.'
            raise _range_error(different, detail)
        if given <= highest:  # "lower than or equal to" the highest byte index or part number sent
            raise _range_error(too_low)
        return given

    def _highest_byte(self) -> int:
        return max([b for _, b in self._byte_spans()], default=-1)

    def _byte_spans(self) -> list[tuple[int, int]]:
        done = [(c.first or 0, (c.first or 0) + c.size - 1) for c in self.chunks]
        return done + self.pending_ranges

    # ---- acceptance (after the body) ---------------------------------------
    def release(self, rng: ByteRange | PartRange | None) -> None:
        """Drop the reservation of a chunk whose request failed or finished."""
        if isinstance(rng, ByteRange) and (rng.first, rng.last) in self.pending_ranges:
            self.pending_ranges.remove((rng.first, rng.last))
        if isinstance(rng, PartRange):
            self.pending_parts.discard(rng.number)

    def accept_single(self, size: int) -> Chunk:
        """Record a whole-file upload of ``size`` bytes."""
        _check_not_empty(size)
        if size > MAX_SINGLE_UPLOAD_BYTES:
            raise ApiError(errors.FILE_TOO_LARGE, 400, name="file")
        self.admit_single()
        self.mode = MODE_SINGLE
        return self._record(Chunk(arrived=0, size=size, first=0))

    def accept_bytes(self, rng: ByteRange, size: int) -> Chunk:
        """Record a byte-range chunk whose file part had ``size`` bytes (reservation held)."""
        self.release(rng)
        self._check_bytes(rng)  # again: a concurrent chunk may have been recorded meanwhile
        _check_not_empty(size)
        if size != rng.length:
            detail = (f"The size of the file you sent is {size} bytes but the range length you "
                      f"set is {rng.length}.")
            raise _range_error(errors.BYTES_RANGE_MISMATCH, detail)
        self.mode = MODE_BYTES
        self.total = rng.total if rng.total is not None else self.total
        return self._record(Chunk(arrived=0, size=size, first=rng.first))

    def accept_part(self, rng: PartRange, size: int) -> Chunk:
        """Record a part whose file had ``size`` bytes (reservation held)."""
        self.release(rng)
        self._check_part(rng)  # again: a concurrent part may have been recorded meanwhile
        _check_not_empty(size)
        total = rng.total if rng.total is not None else self.total
        if size < MIN_CHUNK_BYTES and rng.number != total:
            raise ApiError(errors.PART_FILE_TOO_SMALL, 400, name="file")
        self.mode = MODE_PART
        self.total = total
        return self._record(Chunk(arrived=0, size=size, part=rng.number))

    def _record(self, chunk: Chunk) -> Chunk:
        chunk.arrived = max([c.arrived for c in self.chunks], default=0) + 1
        self.chunks.append(chunk)
        return chunk


def _check_not_empty(size: int) -> None:
    if size == 0:
        raise ApiError(errors.FILE_EMPTY, 400, name="file")
