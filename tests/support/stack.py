"""A whole vuq system for integration tests: ``workers.lab.localstack`` with fast retries."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.workers import TEST_RETRIES
from workers.lab.localstack import DEFAULT_API_KEY, LocalStack
from workers.lab.localstack import running_stack as _running_stack

API_KEY = DEFAULT_API_KEY
Stack = LocalStack
__all__ = ["API_KEY", "Stack", "running_stack", "vuq"]


@contextmanager
def running_stack(tmp: Path, redis_url: str, **options: Any) -> Iterator[LocalStack]:
    """``workers.lab.localstack.running_stack`` with the tests' fast retries (options may override them)."""
    env = {**TEST_RETRIES, **{k: v for k, v in options.items() if k.startswith("VUQ_")}}
    rest = {k: v for k, v in options.items() if not k.startswith("VUQ_")}
    with _running_stack(tmp, redis_url, **rest, **env) as stack:
        yield stack


def vuq(stack: LocalStack, *args: str, check: bool = False, timeout: float = 120,
        **env: str) -> subprocess.CompletedProcess[str]:
    """``vuq ARGS`` as a user runs it against ``stack`` (``env``: more of its environment)."""
    return subprocess.run([sys.executable, "-m", "workers.console", *args], env={**stack.env, **env},
                          capture_output=True, text=True, timeout=timeout, check=check)
