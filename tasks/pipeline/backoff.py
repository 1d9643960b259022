"""How long a retried step waits: exponential backoff with full jitter."""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None = None,
              rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (0 = first retry).

    Full jitter (uniform in [0, min(cap, base·2^attempt)]) spreads a fleet's retries;
    a server-given ``retry_after_s`` (X-RateLimit-Retry-After) is a floor, never cut
    by the cap, plus up to one second of jitter so a fleet does not return at once.
    """
    uniform = (rng or random).uniform
    delay = uniform(0, min(cap_s, base_s * (2 ** min(attempt, 30))))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s + uniform(0, 1.0))
    return delay
