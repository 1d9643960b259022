"""Fixtures for the emulator's tests: a running emulator subprocess and HTTP helpers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:  # `tests.support` must import however pytest was started
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.emulator import Emulator, running_emulator  # noqa: E402

HTTP_TIMEOUT_S = 30.0


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A fresh emulator on its own data dir."""
    with running_emulator(tmp_path / "emulator-data") as emu:
        yield emu


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    """An httpx client on the emulator, authenticated with Basic ``key:``."""
    with httpx.Client(base_url=emulator.url, headers=emulator.auth_header,
                      timeout=HTTP_TIMEOUT_S) as http:
        yield http
