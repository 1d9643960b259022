"""Per-class limits without a server: profiles, partial updates, validation, windows, CLI flags."""

from __future__ import annotations

import pytest

from emulator.cli import _faults, build_parser
from emulator.faults import KIND_RATE_LIMITED, FaultSettings, FaultState
from emulator.limits import GENEROUS, PRODUCTION, SANDBOX, ClassLimits
from emulator.ratelimit import RateLimiter, Window, request_class

REQUIRED = ["--data-dir", "emu", "--api-key", "k"]


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", "/upload", "upload"),
    ("POST", "/videos/vi123/source", "upload"),
    ("GET", "/videos", "read"),
    ("HEAD", "/videos/vi123", "read"),
    ("GET", "/upload-tokens/to123", "read"),
    ("POST", "/videos", "write"),
    ("PATCH", "/videos/vi123", "write"),
    ("DELETE", "/videos/vi123", "write"),
    ("POST", "/upload-tokens", "write"),
    ("DELETE", "/upload-tokens/to123", "write"),
    ("POST", "/auth/api-key", "write"),
    ("POST", "/auth/refresh", "write"),
])
def test_request_classes(method: str, path: str, expected: str) -> None:
    assert request_class(method, path) == expected


def test_profiles() -> None:
    assert GENEROUS.to_json() == {"upload": 100_000, "write": 100_000, "read": 100_000}
    assert PRODUCTION.to_json() == {"upload": 100, "write": 200, "read": 500}
    assert SANDBOX.to_json() == {"upload": 40, "write": 40, "read": 100}
    with pytest.raises(ValueError):
        ClassLimits(0, 1, 1)


def test_partial_update_and_upload_override() -> None:
    settings = FaultSettings(limits=PRODUCTION).updated({"limits": {"write": 3}})
    assert settings.to_json()["limits"] == {"upload": 100, "write": 3, "read": 500}
    overridden = settings.updated({"rate_limit_per_minute": 6})
    assert overridden.limit_for("upload") == 6
    assert overridden.to_json()["limits"] == {"upload": 6, "write": 3, "read": 500}
    assert overridden.updated({"rate_limit_per_minute": 0}).limit_for("upload") == 100


@pytest.mark.parametrize("bad", [
    {"write": 0}, {"read": -1}, {"upload": 1.5}, {"upload": "10"}, {"read": True},
    {"reads": 5}, [1, 2, 3], 10, None,
])
def test_invalid_limits(bad: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        FaultSettings().updated({"limits": bad})


def test_window_counts_per_class_and_resets_after_a_minute() -> None:
    window = Window()
    verdicts = [window.hit(2, now) for now in (100.0, 110.0, 120.5)]
    assert [(v.allowed, v.remaining) for v in verdicts] == [(True, 1), (True, 0), (False, 0)]
    assert [v.retry_after_s for v in verdicts] == [60, 50, 40]
    assert window.peek(2, 130.0).remaining == 0
    fresh = window.hit(2, 160.0)
    assert (fresh.allowed, fresh.remaining, fresh.retry_after_s) == (True, 1, 60)
    assert window.peek(2, 300.0).remaining == 2
    limiter = RateLimiter()
    assert limiter.hit("write", 1).allowed
    assert not limiter.hit("write", 1).allowed
    assert limiter.hit("upload", 1).allowed  # another class, another window
    assert limiter.peek("read", 5).remaining == 5


def test_a_window_just_started_never_says_more_than_a_minute() -> None:
    start = 131014.70835709838  # start + 60 - start rounds to 60.000…01 in floating point
    assert Window().hit(5, start).retry_after_s == 60


def test_rate_limited_counts_by_class() -> None:
    state = FaultState()
    state.count_rate_limited("write")
    state.count_rate_limited("write")
    state.count_rate_limited("read")
    injected = state.to_json()["injected"]
    assert injected[KIND_RATE_LIMITED] == 3
    assert injected["rate_limited_by_class"] == {"upload": 0, "write": 2, "read": 1}
    state.reset_counters()
    assert state.to_json()["injected"]["rate_limited_by_class"] == {"upload": 0, "write": 0, "read": 0}


def test_limits_flag() -> None:
    parser = build_parser()
    assert _faults(parser.parse_args(REQUIRED)).limits == GENEROUS
    sandbox = parser.parse_args([*REQUIRED, "--limits", "sandbox"])
    assert sandbox.limits == "sandbox"
    assert _faults(sandbox).to_json()["limits"] == {"upload": 40, "write": 40, "read": 100}
    production = _faults(parser.parse_args([*REQUIRED, "--limits", "production",
                                            "--rate-limit-per-minute", "6"]))
    assert production.to_json()["limits"] == {"upload": 6, "write": 200, "read": 500}
    with pytest.raises(SystemExit):
        parser.parse_args([*REQUIRED, "--limits", "enterprise"])
