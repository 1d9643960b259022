from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Stack]:
    """The emulator and two worker processes (concurrency 2), shared by a test module."""
    tmp = Path(tmp_path_factory.mktemp("stack"))
    (tmp / "logs").mkdir()
    with running_stack(tmp, redis_url) as system:
        yield system
