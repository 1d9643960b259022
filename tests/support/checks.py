"""Checks on what the emulator stored."""

from __future__ import annotations

import itertools
from typing import Any


def chunks_in_order(chunks: list[dict[str, Any]]) -> bool:
    """Chunks sorted by offset arrived in that same order, with no gap between them."""
    arrived = [c["arrived"] for c in chunks]
    contiguous = all(b["from"] == a["to"] + 1 for a, b in itertools.pairwise(chunks))
    return arrived == sorted(arrived) and contiguous
