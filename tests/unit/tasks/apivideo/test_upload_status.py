"""tasks.apivideo.upload_status: what api.video's status says it holds (received byte ranges, merged where they
touch or overlap; everything once ingest is complete) against the chunks of a plan."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.apivideo.chunking import ChunkPlan
from tasks.apivideo.upload_status import first_missing_chunk, range_received

PLAN = ChunkPlan(300, 100)  # chunks 0-99, 100-199, 200-299


def status(*ranges: tuple[int, int], state: str = "uploading") -> dict[str, Any]:
    return {"ingest": {"status": state, "receivedBytes": [{"from": a, "to": b, "total": 300} for a, b in ranges]}}


@pytest.mark.parametrize(("first", "last", "held"), [
    (0, 99, True), (0, 100, False), (10, 50, True), (100, 199, False), (99, 99, True), (100, 100, False),
])
def test_a_range_inside_one_received_span(first: int, last: int, held: bool) -> None:
    assert range_received(status((0, 99)), first, last) is held


def test_touching_spans_merge_in_any_order() -> None:
    touching = status((100, 199), (0, 99))
    assert range_received(touching, 0, 199)
    assert range_received(touching, 50, 150)


def test_overlapping_spans_merge() -> None:
    assert range_received(status((0, 120), (100, 250)), 0, 250)


def test_a_gap_between_spans_is_not_held() -> None:
    gapped = status((0, 99), (101, 199))
    assert not range_received(gapped, 0, 199)
    assert not range_received(gapped, 100, 100)
    assert range_received(gapped, 101, 150)


@pytest.mark.parametrize("state", ["uploaded", "ingesting", "ingested"])
def test_a_complete_upload_holds_everything(state: str) -> None:
    assert range_received(status(state=state), 0, 299)
    assert first_missing_chunk(status(state=state), PLAN) is None


@pytest.mark.parametrize("answer", [{}, {"ingest": None}, {"ingest": {}}, {"ingest": {"receivedBytes": None}},
                                    status()])
def test_an_empty_or_odd_status_holds_nothing(answer: dict[str, Any]) -> None:
    assert not range_received(answer, 0, 0)
    assert first_missing_chunk(answer, PLAN) == 0


@pytest.mark.parametrize(("ranges", "missing"), [
    (((0, 299),), None),
    (((0, 99), (100, 199), (200, 299)), None),
    (((0, 99), (200, 299)), 1),
    (((100, 299),), 0),
    (((0, 199),), 2),
    (((0, 150),), 1),
    (((0, 99), (100, 198), (200, 299)), 1),
])
def test_the_first_missing_chunk(ranges: tuple[tuple[int, int], ...], missing: int | None) -> None:
    assert first_missing_chunk(status(*ranges), PLAN) == missing


def test_ranges_given_as_text_are_read_as_numbers() -> None:
    answer = {"ingest": {"status": "uploading", "receivedBytes": [{"from": "0", "to": "99"}]}}
    assert range_received(answer, 0, 99)
