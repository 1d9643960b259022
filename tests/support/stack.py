"""A whole vuq system for integration tests: ``workers.lab.localstack`` with fast retries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.workers import TEST_RETRIES
from workers.lab.localstack import DEFAULT_API_KEY, LocalStack
from workers.lab.localstack import running_stack as _running_stack

API_KEY = DEFAULT_API_KEY
Stack = LocalStack
__all__ = ["API_KEY", "Stack", "running_stack"]


@contextmanager
def running_stack(tmp: Path, redis_url: str, **options: Any) -> Iterator[LocalStack]:
    """``workers.lab.localstack.running_stack`` with the tests' fast retries (options may override them)."""
    env = {**TEST_RETRIES, **{k: v for k, v in options.items() if k.startswith("VUQ_")}}
    rest = {k: v for k, v in options.items() if not k.startswith("VUQ_")}
    with _running_stack(tmp, redis_url, **rest, **env) as stack:
        yield stack
