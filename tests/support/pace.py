"""Deadlines that follow how fast this machine is right now.

A test times a reference operation in the same run (one small job, one ``vuq health`` call) and
derives its deadlines from it: on an idle machine they stay at their floor (what the test allowed
before), on a busy one they grow with the measurement. A deadline only bounds the wait for something
that must happen; it never decides a pass by itself, so a test still fails when the thing never
happens. Waiting is polling (``wait``), never a guessed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.2


@dataclass(frozen=True)
class Pace:
    """``unit_s``: how long ``what`` took just now (the slowest of the tries)."""

    unit_s: float
    what: str

    def allow(self, units: float, *, floor_s: float, plus_s: float = 0.0) -> float:
        """A deadline: ``plus_s`` (a fixed wait the protocol itself needs) + ``units`` times the measured
        unit, or ``floor_s`` if that is longer."""
        return max(floor_s, plus_s + units * self.unit_s)

    def __str__(self) -> str:
        return f"{self.what}: {self.unit_s:.2f} s"


def measure(operation: Callable[[], T], what: str, tries: int = 1) -> tuple[T, Pace]:
    """Run ``operation`` ``tries`` times; its last result and the pace of its slowest run."""
    assert tries >= 1
    slowest, result = 0.0, None
    for _ in range(tries):
        started = time.monotonic()
        result = operation()
        slowest = max(slowest, time.monotonic() - started)
    return result, Pace(slowest, what)  # type: ignore[return-value]


def wait(probe: Callable[[], T | None], timeout_s: float, what: str, min_tries: int = 2) -> T:
    """Call ``probe`` until it returns something truthy. Give up (``TimeoutError`` naming ``what``)
    only when ``timeout_s`` has passed *and* the probe ran at least ``min_tries`` times, so a probe
    slowed down by a busy machine still gets its looks before the deadline counts."""
    deadline = time.monotonic() + timeout_s
    tries, last = 0, None
    while True:
        last = probe()
        tries += 1
        if last:
            return last
        if time.monotonic() >= deadline and tries >= min_tries:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s and {tries} tries waiting for {what} "
                               f"(last: {last!r})")
        time.sleep(POLL_S)  # between looks, not a guessed wait
