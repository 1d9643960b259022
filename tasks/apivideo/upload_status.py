"""What api.video says it holds of an upload (``GET /videos/{id}/status``), against our chunks.

The server owns the offset: after a chunk is answered "already received", before a live part whose
answer may have been lost goes again, or before a job whose upload took such an answer on trust is
declared done, its status tells which byte ranges (``receivedBytes``) or part numbers
(``receivedParts``) really arrived; those still arriving through another request are not listed.
"""

from __future__ import annotations

from typing import Any

from tasks.apivideo.chunking import ChunkPlan

COMPLETE_STATUSES = frozenset({"uploaded", "ingesting", "ingested"})


def _spans(status: dict[str, Any]) -> list[tuple[int, int]]:
    """The received byte ranges, merged where they touch or overlap."""
    ingest = status.get("ingest") or {}
    ranges = sorted((int(r["from"]), int(r["to"])) for r in ingest.get("receivedBytes") or [])
    merged: list[tuple[int, int]] = []
    for first, last in ranges:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _complete(status: dict[str, Any]) -> bool:
    return (status.get("ingest") or {}).get("status") in COMPLETE_STATUSES


def range_received(status: dict[str, Any], first: int, last: int) -> bool:
    """Whether api.video holds every byte from ``first`` to ``last`` (inclusive)."""
    return _complete(status) or any(a <= first and last <= b for a, b in _spans(status))


def part_received(status: dict[str, Any], number: int) -> bool:
    """Whether api.video holds part ``number`` (1-based) of a part upload."""
    parts = ((status.get("ingest") or {}).get("receivedParts") or {}).get("parts") or []
    return _complete(status) or number in parts


def chunk_received(status: dict[str, Any], plan: ChunkPlan, index: int) -> bool:
    """Whether api.video holds chunk ``index`` of ``plan`` (its part, or its byte range)."""
    if plan.parts:
        return part_received(status, index + 1)
    return range_received(status, plan.start(index), plan.end(index) - 1)


def first_missing_chunk(status: dict[str, Any], plan: ChunkPlan) -> int | None:
    """The first chunk of ``plan`` api.video does not hold, or None when it holds them all."""
    if _complete(status):
        return None
    for index in range(plan.count):
        if not chunk_received(status, plan, index):
            return index
    return None
