"""Fault decisions are a pure function of (settings, request number)."""

from __future__ import annotations

import pytest

from emulator.faults import KIND_ERROR, KIND_NONE, KIND_RESET, FaultSettings, decide

REQUESTS = 400


def kinds(settings: FaultSettings) -> list[tuple[str, int]]:
    return [(d.kind, d.status) for d in (decide(settings, n) for n in range(1, REQUESTS + 1))]


def test_same_seed_same_faults() -> None:
    settings = FaultSettings(seed=7, error_rate=0.2, reset_rate=0.1, latency_ms=(1, 5))
    assert kinds(settings) == kinds(FaultSettings(**settings.__dict__))
    assert [decide(settings, n).latency_ms for n in range(50)] == [
        decide(settings, n).latency_ms for n in range(50)]


def test_different_seed_different_faults() -> None:
    one = kinds(FaultSettings(seed=1, error_rate=0.2, reset_rate=0.1))
    two = kinds(FaultSettings(seed=2, error_rate=0.2, reset_rate=0.1))
    assert one != two


def test_rates_are_roughly_honoured() -> None:
    found = [kind for kind, _ in kinds(FaultSettings(seed=3, error_rate=0.25, reset_rate=0.25))]
    assert 50 < found.count(KIND_ERROR) < 150
    assert 50 < found.count(KIND_RESET) < 150
    assert {status for kind, status in kinds(FaultSettings(error_rate=1.0))} <= {500, 503}


def test_zero_rates_inject_nothing() -> None:
    assert {kind for kind, _ in kinds(FaultSettings(seed=5))} == {KIND_NONE}


def test_validation() -> None:
    with pytest.raises(ValueError):
        FaultSettings().updated({"error_rate": 2})
    with pytest.raises(ValueError):
        FaultSettings().updated({"latency_ms": [5, 1]})
    with pytest.raises(ValueError):
        FaultSettings().updated({"bogus": 1})
    assert FaultSettings().updated({"latency_ms": [1, 2]}).latency_ms == (1.0, 2.0)
