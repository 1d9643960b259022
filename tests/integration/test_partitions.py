"""Distributed faults, short: a worker host cut from Redis and api.video in the middle of a chunk (35 s
here; 90 s in `make chaos`, which also cuts a host from api.video alone), and a host that vanishes for
good. Every job finishes byte-exact, one video each, chunks in order, with no restart of the surviving
workers.

35 s outlasts the keepalive window (about 25 s): the worker's idle Redis connections are dead by
the heal, so the first acknowledgement after it meets one (a worker that lost its prefetch slot
to that failure would stay deaf; see workers/process/broker.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.netns import skip_unless_lab
from tests.support.partitions import cut_mid_chunk, host_vanishes

CUT_S = 35.0


@pytest.fixture(autouse=True)
def lab_here(redis_url: str) -> None:
    skip_unless_lab()


@pytest.mark.parametrize("network", ["all"], ids=["cut from Redis and api.video"])
def test_a_worker_host_cut_mid_chunk_carries_on_by_itself_after_the_heal(tmp_path: Path, network: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    measured = cut_mid_chunk(tmp_path, CUT_S, network)
    with capsys.disabled():
        print(f"\npartition ({network}) for {CUT_S:.0f} s: heal -> next chunk {measured['heal_to_next_chunk_s']:.1f} s,"
              f" heal -> consuming again {measured['heal_to_consuming_again_s']:.1f} s")
    assert measured["heal_to_consuming_again_s"] < 60


def test_a_vanished_host_leaves_its_job_to_the_janitor_and_the_others(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    measured = host_vanishes(tmp_path)
    with capsys.disabled():
        print(f"\nhost vanished: {measured}")
