"""The chaos suite: the short run is part of `make test`; `make chaos` runs the full one.

Both print their summary table (jobs, bytes, faults by kind, kills, retries, duration, checks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import FULL, SHORT, ChaosConfig, Report, run_chaos, summary


def run_and_show(config: ChaosConfig, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Report:
    report = run_chaos(config, tmp)
    with capsys.disabled():
        print(summary(config, report))
    failed = [name for name, ok in report.checks.items() if not ok]
    assert not failed, (failed, report.problems)
    return report


def test_chaos_short(tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """10 small jobs; redis_url only makes it skip (or fail in CI) like the other integration tests."""
    report = run_and_show(SHORT, tmp_path, capsys)
    assert report.kills >= 2 and report.redis_restarts == 1 and report.duplicates_sent and report.redelivered


@pytest.mark.chaos
@pytest.mark.timeout(FULL.timeout_s + 120)  # the run's own deadline, then the checks (the suite's default is 300 s)
def test_chaos_full(tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """50 jobs of 1-300 MiB with default settings plus beat."""
    report = run_and_show(FULL, tmp_path, capsys)
    # the 429 burst happens; how many 429s it earns depends on how soon the fleet's limiter learns it
    assert report.kills >= 5 and report.redis_restarts == 1 and report.bursts == 1
