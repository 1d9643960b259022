"""tasks.apivideo.chunking: chunk ranges and their Content-Range headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.apivideo.chunking import plan_chunks
from tasks.constants import MAX_CHUNK_BYTES, MIB, MIN_CHUNK_BYTES
from tasks.errors import SourceError, SpecError

sizes = st.integers(min_value=1, max_value=2 * 1024 * MIB)
chunk_sizes = st.integers(min_value=MIN_CHUNK_BYTES, max_value=MAX_CHUNK_BYTES)


@given(sizes, chunk_sizes)
def test_chunks_cover_the_source_exactly_and_contiguously(size: int, chunk_size: int) -> None:
    plan = plan_chunks(size, chunk_size)
    assert plan.count == -(-size // chunk_size)
    assert plan.start(0) == 0
    for index in range(plan.count - 1):
        assert plan.end(index) == plan.start(index + 1)
        assert plan.length(index) == chunk_size >= MIN_CHUNK_BYTES
    last = plan.count - 1
    assert plan.end(last) == size
    assert 0 < plan.length(last) <= chunk_size
    assert sum(plan.length(i) for i in range(plan.count)) == size


@given(sizes, chunk_sizes)
def test_content_range_matches_the_chunk(size: int, chunk_size: int) -> None:
    plan = plan_chunks(size, chunk_size)
    for index in range(plan.count):
        header = plan.content_range(index)
        if plan.count == 1:
            assert header is None
        else:
            assert header == f"bytes {plan.start(index)}-{plan.end(index) - 1}/{size}"


def test_content_range_strings() -> None:
    plan = plan_chunks(24_117_248, 5 * MIB)
    assert plan.count == 5
    assert plan.content_range(0) == "bytes 0-5242879/24117248"
    assert plan.content_range(1) == "bytes 5242880-10485759/24117248"
    assert plan.content_range(4) == "bytes 20971520-24117247/24117248"
    assert plan.length(4) == 3_145_728


@pytest.mark.parametrize("size", [1, 5 * MIB])
def test_a_single_chunk_has_no_content_range(size: int) -> None:
    plan = plan_chunks(size, 5 * MIB)
    assert plan.count == 1
    assert plan.content_range(0) is None
    assert plan.length(0) == size


def test_one_byte_more_makes_two_chunks() -> None:
    plan = plan_chunks(5 * MIB + 1, 5 * MIB)
    assert plan.count == 2
    assert plan.content_range(1) == f"bytes {5 * MIB}-{5 * MIB}/{5 * MIB + 1}"


@pytest.mark.parametrize("index", [-1, 5])
def test_index_outside_the_plan_is_refused(index: int) -> None:
    with pytest.raises(IndexError, match=r"0\.\.4"):
        plan_chunks(24_117_248, 5 * MIB).start(index)


@pytest.mark.parametrize("size", [0, -1])
def test_empty_source_is_a_source_error(size: int) -> None:
    with pytest.raises(SourceError, match="empty"):
        plan_chunks(size, 5 * MIB)


@pytest.mark.parametrize("chunk_size", [MIN_CHUNK_BYTES - 1, MAX_CHUNK_BYTES + 1, 0])
def test_chunk_size_outside_bounds_is_a_spec_error(chunk_size: int) -> None:
    with pytest.raises(SpecError) as info:
        plan_chunks(100 * MIB, chunk_size)
    assert info.value.field == "chunk_size"


def test_a_live_upload_goes_as_parts_the_last_numbered_once_the_size_is_known() -> None:
    open_plan = plan_chunks(0, 5 * MIB, parts=True)
    assert (open_plan.known, open_plan.count, open_plan.length(7), open_plan.last(7)) == (False, 0, 5 * MIB, False)
    assert open_plan.content_range(0) == "part 1/*" and open_plan.content_range(41) == "part 42/*"
    exact = plan_chunks(15 * MIB, 5 * MIB, parts=True)
    assert [exact.content_range(i) for i in range(3)] == ["part 1/*", "part 2/*", "part 3/3"]
    over = plan_chunks(15 * MIB + 1, 5 * MIB, parts=True)
    assert over.content_range(3) == "part 4/4" and over.length(3) == 1
    assert plan_chunks(10, 5 * MIB, parts=True).content_range(0) == "part 1/1"
    with pytest.raises(IndexError):
        open_plan.start(10_000)  # api.video takes at most 10,000 parts
