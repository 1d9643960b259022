"""Per-account, per-class fixed one-minute windows behind the ``X-RateLimit-*`` headers (docs/protocol.md).

Each account (:mod:`emulator.accounts`) has one window per request class
(:data:`emulator.limits.CLASSES`), which starts with that account's first
request of the class and lasts a minute; requests whose credentials name no
account share the windows of :data:`ANONYMOUS`. The limit to count against is
global, from the fault settings (:meth:`emulator.faults.FaultSettings.limit_for`),
and applies to each account alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from emulator.constants import RATE_LIMIT_WINDOW_S
from emulator.limits import CLASS_READ, CLASS_UPLOAD, CLASS_WRITE

ANONYMOUS = None  # the account of a request with missing or unknown credentials


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
    """One window per account and request class, made on first use."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str | None, str], Window] = {}

    def hit(self, request_class: str, limit: int, account: str | None = ANONYMOUS) -> Verdict:
        """Count one request of ``request_class`` for ``account`` now against ``limit``."""
        window = self.windows.setdefault((account, request_class), Window())
        return window.hit(limit, time.monotonic())

    def peek(self, request_class: str, limit: int, account: str | None = ANONYMOUS) -> Verdict:
        """Header values of ``account``'s ``request_class`` window for an answer that is not counted (hooks)."""
        return self.windows.get((account, request_class), Window()).peek(limit, time.monotonic())

    def clear(self, account: str | None = None) -> None:
        """Start the windows of ``account`` afresh, or every window (anonymous ones too) without it."""
        self.windows = {key: w for key, w in self.windows.items()
                        if account is not None and key[0] != account}
