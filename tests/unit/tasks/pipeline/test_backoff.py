"""tasks.pipeline.backoff: which statuses are retried, and the jittered backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.errors import is_retryable_status
from tasks.pipeline.backoff import backoff_s


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_transient_statuses_are_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 404, 409, 413, 422])
def test_final_statuses_are_not(status: int) -> None:
    assert not is_retryable_status(status)


@given(st.integers(min_value=0, max_value=100), st.floats(min_value=0.01, max_value=10),
       st.floats(min_value=0.01, max_value=600), st.integers())
def test_backoff_is_full_jitter_under_the_cap(attempt: int, base_s: float, cap_s: float, seed: int) -> None:
    delay = backoff_s(attempt, base_s, cap_s, rng=random.Random(seed))
    assert 0 <= delay <= min(cap_s, base_s * 2 ** min(attempt, 30))


def test_backoff_grows_then_is_capped() -> None:
    ceilings = [max(backoff_s(n, 1.0, 10.0, rng=random.Random(s)) for s in range(200)) for n in range(6)]
    assert ceilings[0] <= 1.0 < ceilings[2] <= 4.0
    assert all(c <= 10.0 for c in ceilings)
    assert ceilings[5] > 8.0


def test_backoff_with_a_seed_is_reproducible() -> None:
    assert backoff_s(3, 2.0, 120.0, rng=random.Random(7)) == backoff_s(3, 2.0, 120.0, rng=random.Random(7))


@given(st.integers(min_value=0, max_value=10), st.floats(min_value=0, max_value=3600), st.integers())
def test_retry_after_is_a_floor_even_above_the_cap(attempt: int, retry_after_s: float, seed: int) -> None:
    delay = backoff_s(attempt, 1.0, 5.0, retry_after_s=retry_after_s, rng=random.Random(seed))
    assert retry_after_s <= delay <= max(5.0, retry_after_s + 1.0)


def test_retry_after_above_the_cap_is_honoured() -> None:
    assert 30.0 <= backoff_s(0, 1.0, 5.0, retry_after_s=30.0, rng=random.Random(1)) <= 31.0
