"""Parse the ``Content-Range`` header of an upload (docs/protocol.md) into a typed value.

Only checks that need nothing but the header itself live here; the rules that
depend on what a video already received live in :mod:`emulator.chunks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from emulator import errors
from emulator.constants import MAX_PARTS, MAX_RANGE_BYTES, MAX_TO_BYTE, MAX_TOTAL_BYTES
from emulator.errors import ApiError

HEADER_NAME = "Content-Range"
_PATTERN = re.compile(r"^(?:bytes (\d+)-(\d+)|part (\d+))/(\d+|\*)$")


@dataclass(frozen=True)
class ByteRange:
    """``bytes first-last/total``: an inclusive byte range; ``total`` is None for ``*``."""

    first: int
    last: int
    total: int | None

    @property
    def length(self) -> int:
        """Number of bytes the range covers."""
        return self.last - self.first + 1


@dataclass(frozen=True)
class PartRange:
    """``part number/total``: a 1-based part; ``total`` is None for ``*``."""

    number: int
    total: int | None


ContentRange = ByteRange | PartRange


def _fail(error: errors.Slug) -> ApiError:
    return ApiError(error, 400, name=HEADER_NAME)


def parse_content_range(header: str | None) -> ContentRange | None:
    """Parse a header value; None means a single-request upload (no header)."""
    if header is None:
        return None
    text = unquote(header.strip()) if "%" in header else header.strip()
    match = _PATTERN.match(text)
    if match is None:
        raise _fail(errors.RANGE_MALFORMED)
    first, last, part, total_text = match.groups()
    total = None if total_text == "*" else int(total_text)
    if part is not None:
        return _checked_part(PartRange(int(part), total))
    return _checked_bytes(ByteRange(int(first), int(last), total))


def _checked_bytes(rng: ByteRange) -> ByteRange:
    if rng.first > rng.last:
        raise _fail(errors.BYTES_FROM_TOO_HIGH)
    if rng.last > MAX_TO_BYTE:
        raise _fail(errors.BYTES_TO_TOO_HIGH_ALLOWED)
    if rng.total is not None:
        if rng.total == 0:
            raise _fail(errors.BYTES_TOTAL_ZERO)
        if rng.total > MAX_TOTAL_BYTES:
            raise _fail(errors.BYTES_TOTAL_TOO_HIGH)
        if rng.last >= rng.total:
            raise _fail(errors.BYTES_TO_TOO_HIGH_TOTAL)
    if rng.length > MAX_RANGE_BYTES:
        raise _fail(errors.BYTES_RANGE_TOO_LARGE)
    return rng


def _checked_part(rng: PartRange) -> PartRange:
    if rng.number == 0:
        raise _fail(errors.PART_ZERO)
    if rng.number > MAX_PARTS:
        raise _fail(errors.PART_TOO_HIGH_ALLOWED)
    if rng.total is not None:
        if rng.total == 0:
            raise _fail(errors.PART_TOTAL_ZERO)
        if rng.total > MAX_PARTS:
            raise _fail(errors.PART_TOTAL_TOO_HIGH)
        if rng.number > rng.total:
            raise _fail(errors.PART_TOO_HIGH_TOTAL)
    return rng
