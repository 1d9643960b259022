"""Test source files with known contents."""

from __future__ import annotations

import hashlib
from pathlib import Path

from workers.lab.localstack import sample_file as make_file

__all__ = ["make_file", "sha256_of"]
_BLOCK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
