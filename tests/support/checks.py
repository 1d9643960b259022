"""Checks on what the emulator stored."""

from __future__ import annotations

import itertools
from typing import Any

from tasks.constants import JOB_METADATA_KEY


def chunks_in_order(chunks: list[dict[str, Any]]) -> bool:
    """Chunks sorted by offset arrived in that same order, with no gap between them."""
    arrived = [c["arrived"] for c in chunks]
    contiguous = all(b["from"] == a["to"] + 1 for a, b in itertools.pairwise(chunks))
    return arrived == sorted(arrived) and contiguous


def videos_of(videos: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The emulator's videos vuq made for ``job_id`` (tagged with its metadata)."""
    return [v for v in videos if v["metadata"].get(JOB_METADATA_KEY) == job_id]
