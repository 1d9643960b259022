"""The long distributed faults (`make chaos`): 90 s partitions in the middle of a chunk (from Redis and
api.video, and from api.video alone), a host that vanishes, and a Redis failover under a bigger load.
The short versions run in `make test` (tests/integration/test_partitions.py, test_failover.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.netns import skip_unless_lab
from tests.support.partitions import cut_mid_chunk, host_vanishes

pytestmark = pytest.mark.chaos
CUT_S = 90.0


@pytest.mark.parametrize("network", ["all", "api"], ids=["cut from Redis and api.video", "cut from api.video"])
def test_a_ninety_second_partition_mid_chunk_heals_by_itself(tmp_path: Path, redis_url: str, network: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    skip_unless_lab()
    measured = cut_mid_chunk(tmp_path, CUT_S, network)
    with capsys.disabled():
        print(f"\npartition ({network}) for {CUT_S:.0f} s: heal -> next chunk {measured['heal_to_next_chunk_s']:.1f} s,"
              f" heal -> consuming again {measured['heal_to_consuming_again_s']:.1f} s")
    assert measured["heal_to_consuming_again_s"] < 60


def test_a_host_that_vanishes_for_good(tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    skip_unless_lab()
    measured = host_vanishes(tmp_path)
    with capsys.disabled():
        print(f"\nhost vanished: resumed on the other host {measured['vanished_to_resumed_s']:.1f} s later")
