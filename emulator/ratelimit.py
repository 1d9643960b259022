"""Per-class fixed one-minute windows behind the ``X-RateLimit-*`` headers (PROTOCOL.md §8)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from emulator.constants import (
    GENEROUS_READ_LIMIT_PER_MINUTE,
    GENEROUS_UPLOAD_LIMIT_PER_MINUTE,
    GENEROUS_WRITE_LIMIT_PER_MINUTE,
    RATE_LIMIT_WINDOW_S,
)

CLASS_UPLOAD = "upload"
CLASS_WRITE = "write"
CLASS_READ = "read"


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

    def hit(self, limit: int, now: float) -> Verdict:
        """Count a request against ``limit``."""
        if now - self.started >= RATE_LIMIT_WINDOW_S:
            self.started, self.count = now, 0
        retry_after = max(1, math.ceil(self.started + RATE_LIMIT_WINDOW_S - now))
        allowed = self.count < limit
        if allowed:
            self.count += 1
        return Verdict(allowed, limit, max(0, limit - self.count), retry_after)


class RateLimiter:
    """One window per request class; the upload limit is the fault setting when set."""

    def __init__(self) -> None:
        self.windows = {name: Window() for name in (CLASS_UPLOAD, CLASS_WRITE, CLASS_READ)}

    def hit(self, klass: str, upload_limit_per_minute: int) -> Verdict:
        """Count one request of ``klass`` now."""
        limits = {
            CLASS_UPLOAD: upload_limit_per_minute or GENEROUS_UPLOAD_LIMIT_PER_MINUTE,
            CLASS_WRITE: GENEROUS_WRITE_LIMIT_PER_MINUTE,
            CLASS_READ: GENEROUS_READ_LIMIT_PER_MINUTE,
        }
        return self.windows[klass].hit(limits[klass], time.monotonic())

    def peek(self, klass: str) -> Verdict:
        """Header values for an answer that was not counted (hooks)."""
        window = self.windows[klass]
        now = time.monotonic()
        retry = max(1, math.ceil(window.started + RATE_LIMIT_WINDOW_S - now)) if window.count else 60
        return Verdict(True, GENEROUS_READ_LIMIT_PER_MINUTE, GENEROUS_READ_LIMIT_PER_MINUTE, retry)

    def clear(self) -> None:
        """Start every window afresh."""
        self.__init__()  # type: ignore[misc]
