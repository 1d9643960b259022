"""A system resolver that never answers for one name (``getaddrinfo`` blocks), for the tests of bounded lookups."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def silent_resolver(monkeypatch: pytest.MonkeyPatch, name: str) -> Iterator[None]:
    """Until the block ends, looking up ``name`` blocks (other names resolve as usual); then it is let go."""
    answer = threading.Event()
    real = socket.getaddrinfo

    def silent(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            answer.wait(30)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    try:
        yield
    finally:
        answer.set()
