"""Fault injection settings and the deterministic per-request decision.

The decision for the Nth api.video request is a pure function of
(settings, N): ``random.Random(f"{seed}:{n}")`` drives it, so the same seed
and rates give the same faults on every run. Rate limiting is not random: the
settings hold the per-class limits (:mod:`emulator.limits`), the windows live
in :mod:`emulator.ratelimit`.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from emulator.limits import CLASS_UPLOAD, CLASSES, GENEROUS, ClassLimits

KIND_NONE = "none"
KIND_ERROR = "error"
KIND_RESET = "reset"
KIND_RATE_LIMITED = "rate_limited"
ERROR_STATUSES = (500, 503)
MAX_RESET_READ_BYTES = 2 * 1024 * 1024  # a cut connection reads up to this much body first


@dataclass(frozen=True)
class FaultSettings:
    """What to inject; all zero means a well-behaved server."""

    seed: int = 0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    rate_limit_per_minute: int = 0  # > 0 overrides limits.upload; 0 leaves it
    limits: ClassLimits = GENEROUS  # per class, from --limits or the faults hook
    ingest_mib_per_s: float = 0.0  # > 0: each upload's body is read no faster (a link, not loopback)

    def limit_for(self, request_class: str) -> int:
        """The effective limit of request class ``request_class``."""
        if request_class == CLASS_UPLOAD and self.rate_limit_per_minute > 0:
            return self.rate_limit_per_minute
        return self.limits.of(request_class)

    def effective_limits(self) -> ClassLimits:
        """``limits`` with the ``rate_limit_per_minute`` override applied."""
        return ClassLimits(*(self.limit_for(request_class) for request_class in CLASSES))

    def to_json(self) -> dict[str, Any]:
        """JSON form as served by ``GET /_emulator/faults`` (``limits`` are the effective ones)."""
        data = asdict(self)
        data["latency_ms"] = list(self.latency_ms)
        data["limits"] = self.effective_limits().to_json()
        return data

    def updated(self, changes: dict[str, Any]) -> FaultSettings:
        """A copy with the given JSON fields changed (validated); raises ValueError."""
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        fields = dict(changes)
        if "latency_ms" in fields:
            low, high = (float(v) for v in fields["latency_ms"])
            fields["latency_ms"] = (low, high)
        if "limits" in fields:
            fields["limits"] = self.limits.updated(fields["limits"])
        settings = replace(self, **fields)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ValueError on rates outside 0..1, a bad latency range or a negative upload override."""
        for rate in (self.error_rate, self.reset_rate):
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError("rates must be between 0 and 1")
        if self.error_rate + self.reset_rate > 1.0:
            raise ValueError("error_rate + reset_rate must not exceed 1")
        low, high = self.latency_ms
        if low < 0 or high < low:
            raise ValueError("latency_ms must be [min, max] with 0 <= min <= max")
        rate = self.rate_limit_per_minute
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
            raise ValueError("rate_limit_per_minute must be an integer >= 0")
        if isinstance(self.ingest_mib_per_s, bool) or not isinstance(self.ingest_mib_per_s, int | float) \
                or self.ingest_mib_per_s < 0:
            raise ValueError("ingest_mib_per_s must be a number >= 0 (0: as fast as it comes)")


@dataclass(frozen=True)
class Decision:
    """The fault chosen for one request."""

    kind: str
    latency_ms: float
    status: int = 0
    reset_after_bytes: int = 0


def decide(settings: FaultSettings, n: int) -> Decision:
    """The fault for the ``n``th api.video request: a pure function of (settings, n)."""
    rng = random.Random(f"{settings.seed}:{n}")
    roll = rng.random()
    low, high = settings.latency_ms
    latency = rng.uniform(low, high) if high > 0 else 0.0
    if roll < settings.error_rate:
        return Decision(KIND_ERROR, latency, status=rng.choice(ERROR_STATUSES))
    if roll < settings.error_rate + settings.reset_rate:
        return Decision(KIND_RESET, latency, reset_after_bytes=rng.randrange(MAX_RESET_READ_BYTES))
    return Decision(KIND_NONE, latency)


@dataclass
class FaultState:
    """Current settings, the api.video request counter and counters of injected faults."""

    settings: FaultSettings = field(default_factory=FaultSettings)
    requests_seen: int = 0
    injected: dict[str, int] = field(
        default_factory=lambda: {KIND_ERROR: 0, KIND_RESET: 0, KIND_RATE_LIMITED: 0}
    )
    rate_limited_by_class: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))

    def next_decision(self) -> Decision:
        """Count one api.video request and decide its fault."""
        self.requests_seen += 1
        return decide(self.settings, self.requests_seen)

    def count(self, kind: str) -> None:
        """Record that a fault of ``kind`` was injected."""
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def count_rate_limited(self, request_class: str) -> None:
        """Record a 429 answered to a request of class ``request_class``."""
        self.count(KIND_RATE_LIMITED)
        self.rate_limited_by_class[request_class] += 1

    def to_json(self) -> dict[str, Any]:
        """``GET /_emulator/faults`` body."""
        injected: dict[str, Any] = {**self.injected,
                                    "rate_limited_by_class": dict(self.rate_limited_by_class)}
        return {**self.settings.to_json(), "requests": self.requests_seen, "injected": injected}

    def reset_counters(self) -> None:
        """Zero the request counter and the injected-fault counters."""
        self.requests_seen = 0
        self.injected = dict.fromkeys(self.injected, 0)
        self.rate_limited_by_class = dict.fromkeys(CLASSES, 0)
