"""The chaos suite: the short run is part of `make test`; `make chaos` runs the full one."""

from __future__ import annotations

import pytest

from tests.chaos.harness import FULL, SHORT, run_chaos


def test_chaos_short(tmp_path, redis_url: str) -> None:  # redis_url: skip/fail like the other integration tests
    report = run_chaos(SHORT, tmp_path)
    assert report.kills >= 2 and report.redis_restarts == 1 and report.duplicates_sent and report.redelivered
    failed = [name for name, ok in report.checks.items() if not ok]
    assert not failed, (failed, report.problems)


@pytest.mark.chaos
def test_chaos_full(tmp_path, redis_url: str) -> None:
    report = run_chaos(FULL, tmp_path)
    failed = [name for name, ok in report.checks.items() if not ok]
    assert not failed, (failed, report.problems)
    assert report.kills >= 5 and report.redis_restarts == 1
