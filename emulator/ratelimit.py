"""Per-class fixed one-minute windows behind the ``X-RateLimit-*`` headers (docs/protocol.md).

Each request class (:data:`emulator.limits.CLASSES`) has its own window, which
starts with the class's first request and lasts a minute; the limit to count
against comes from the fault settings (:meth:`emulator.faults.FaultSettings.limit_for`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from emulator.constants import RATE_LIMIT_WINDOW_S
from emulator.limits import CLASS_READ, CLASS_UPLOAD, CLASS_WRITE, CLASSES


def request_class(method: str, path: str) -> str:
    """Which api.video rate-limit class a request belongs to."""
    if method == "POST" and (path == "/upload" or path.endswith("/source")):
        return CLASS_UPLOAD
    return CLASS_READ if method in ("GET", "HEAD") else CLASS_WRITE


@dataclass(frozen=True)
class Verdict:
    """The outcome of counting one request, and the header values to send."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The three ``X-RateLimit-*`` headers (never a standard ``Retry-After``)."""
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-retry-after", str(self.retry_after_s).encode()),
        ]


class Window:
    """A fixed window that starts with its first request and lasts a minute."""

    def __init__(self) -> None:
        self.started = -math.inf
        self.count = 0

    def _expired(self, now: float) -> bool:
        return now - self.started >= RATE_LIMIT_WINDOW_S

    def _retry_after(self, now: float) -> int:
        # The window's age first: ``started + 60 - now`` can round to 60.000…01 and answer 61.
        return max(1, math.ceil(RATE_LIMIT_WINDOW_S - (now - self.started)))

    def hit(self, limit: int, now: float) -> Verdict:
        """Count a request against ``limit``."""
        if self._expired(now):
            self.started, self.count = now, 0
        allowed = self.count < limit
        if allowed:
            self.count += 1
        return Verdict(allowed, limit, max(0, limit - self.count), self._retry_after(now))

    def peek(self, limit: int, now: float) -> Verdict:
        """The header values of this window now, without counting anything."""
        if self._expired(now):
            return Verdict(True, limit, limit, RATE_LIMIT_WINDOW_S)
        return Verdict(self.count < limit, limit, max(0, limit - self.count), self._retry_after(now))


class RateLimiter:
    """One window per request class."""

    def __init__(self) -> None:
        self.windows = {klass: Window() for klass in CLASSES}

    def hit(self, klass: str, limit: int) -> Verdict:
        """Count one request of ``klass`` now against ``limit``."""
        return self.windows[klass].hit(limit, time.monotonic())

    def peek(self, klass: str, limit: int) -> Verdict:
        """Header values for an answer that is not counted (hooks)."""
        return self.windows[klass].peek(limit, time.monotonic())

    def clear(self) -> None:
        """Start every window afresh."""
        self.__init__()  # type: ignore[misc]
