"""The Content-Range parser and the chunk rules (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator import errors
from emulator.chunks import UploadState
from emulator.constants import MAX_PARTS, MAX_RANGE_BYTES, MAX_TOTAL_BYTES, MIN_CHUNK_BYTES
from emulator.content_range import ByteRange, PartRange, parse_content_range
from emulator.errors import ApiError

MIB = 1024 * 1024


def slug_of(header: str) -> str:
    with pytest.raises(ApiError) as caught:
        parse_content_range(header)
    return caught.value.slug


def test_forms() -> None:
    assert parse_content_range(None) is None
    assert parse_content_range("bytes 0-9/10") == ByteRange(0, 9, 10)
    assert parse_content_range("bytes 5-9/*") == ByteRange(5, 9, None)
    assert parse_content_range("part 2/3") == PartRange(2, 3)
    assert parse_content_range("part 4/*") == PartRange(4, None)
    assert parse_content_range("part%201%2F3") == PartRange(1, 3)  # DOCS curl quirk


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("bytes 0-9", errors.RANGE_MALFORMED),
        ("chunks 1/2", errors.RANGE_MALFORMED),
        ("bytes 10-9/20", errors.BYTES_FROM_TOO_HIGH),
        ("bytes 0-9/0", errors.BYTES_TOTAL_ZERO),
        (f"bytes 0-9/{MAX_TOTAL_BYTES + 1}", errors.BYTES_TOTAL_TOO_HIGH),
        (f"bytes 0-{MAX_TOTAL_BYTES}/*", errors.BYTES_TO_TOO_HIGH_ALLOWED),
        ("bytes 0-10/10", errors.BYTES_TO_TOO_HIGH_TOTAL),
        (f"bytes 0-{MAX_RANGE_BYTES}/*", errors.BYTES_RANGE_TOO_LARGE),
        ("part 0/3", errors.PART_ZERO),
        (f"part {MAX_PARTS + 1}/*", errors.PART_TOO_HIGH_ALLOWED),
        ("part 1/0", errors.PART_TOTAL_ZERO),
        (f"part 1/{MAX_PARTS + 1}", errors.PART_TOTAL_TOO_HIGH),
        ("part 4/3", errors.PART_TOO_HIGH_TOTAL),
    ],
)
def test_header_errors(header: str, error: errors.Slug) -> None:
    assert slug_of(header) == error[0]


@given(st.integers(0, 10**9), st.integers(0, MAX_RANGE_BYTES - 1), st.integers(1, 10**9))
def test_valid_byte_ranges_round_trip(first: int, extra: int, slack: int) -> None:
    last = first + extra
    total = last + slack
    assert parse_content_range(f"bytes {first}-{last}/{total}") == ByteRange(first, last, total)


@given(st.text(max_size=30))
def test_garbage_is_malformed_or_valid(text: str) -> None:
    try:
        parse_content_range(text)
    except ApiError as exc:
        assert exc.status == 400 and exc.name == "Content-Range"


def rule_slug(action: object) -> str:
    with pytest.raises(ApiError) as caught:
        action()  # type: ignore[operator]
    return caught.value.slug


def test_sequential_bytes_complete() -> None:
    state = UploadState()
    total = 2 * MIN_CHUNK_BYTES + 3
    for first, last in ((0, MIN_CHUNK_BYTES - 1), (MIN_CHUNK_BYTES, 2 * MIN_CHUNK_BYTES - 1),
                        (2 * MIN_CHUNK_BYTES, total - 1)):
        rng = ByteRange(first, last, total)
        state.admit_bytes(rng)
        state.accept_bytes(rng, rng.length)
    assert state.complete and state.filesize() == total
    assert [c.arrived for _, _, c in state.spans()] == [1, 2, 3]


def test_out_of_order_bytes_and_late_total() -> None:
    state = UploadState()
    second = ByteRange(MIN_CHUNK_BYTES, MIN_CHUNK_BYTES + 9, MIN_CHUNK_BYTES + 10)
    state.admit_bytes(second)
    state.accept_bytes(second, 10)
    first = ByteRange(0, MIN_CHUNK_BYTES - 1, None)
    state.admit_bytes(first)
    state.accept_bytes(first, MIN_CHUNK_BYTES)
    assert state.complete
    assert [(a, c.arrived) for a, _, c in state.spans()] == [(0, 2), (MIN_CHUNK_BYTES, 1)]


def test_byte_rules() -> None:
    state = UploadState()
    rng = ByteRange(0, MIN_CHUNK_BYTES - 1, 3 * MIN_CHUNK_BYTES)
    state.admit_bytes(rng)
    assert rule_slug(lambda: state.admit_bytes(rng)) == errors.BYTES_RANGE_OVERLAP[0]
    state.accept_bytes(rng, rng.length)
    overlapping = ByteRange(10, MIN_CHUNK_BYTES + 10, None)
    assert rule_slug(lambda: state.admit_bytes(overlapping)) == errors.BYTES_RANGE_OVERLAP[0]
    small = ByteRange(MIN_CHUNK_BYTES, MIN_CHUNK_BYTES + 5, None)
    assert rule_slug(lambda: state.admit_bytes(small)) == errors.BYTES_RANGE_TOO_SMALL[0]
    other_total = ByteRange(MIN_CHUNK_BYTES, 2 * MIN_CHUNK_BYTES - 1, 4 * MIN_CHUNK_BYTES)
    assert rule_slug(lambda: state.admit_bytes(other_total)) == errors.BYTES_DIFFERENT_TOTAL[0]
    assert rule_slug(lambda: state.admit_part(PartRange(1, None))) == (
        errors.RANGE_STARTED_WITH_BYTES[0])
    assert rule_slug(state.admit_single) == errors.RANGE_ALREADY_INITIATED[0]


def test_mismatch_is_not_received() -> None:
    state = UploadState()
    rng = ByteRange(0, MIN_CHUNK_BYTES - 1, None)
    state.admit_bytes(rng)
    assert rule_slug(lambda: state.accept_bytes(rng, 5)) == errors.BYTES_RANGE_MISMATCH[0]
    assert state.chunks == [] and not state.started
    state.admit_bytes(rng)  # the same range may be sent again


def test_total_too_low() -> None:
    state = UploadState()
    rng = ByteRange(0, MIN_CHUNK_BYTES - 1, None)
    state.admit_bytes(rng)
    state.accept_bytes(rng, rng.length)
    low = ByteRange(MIN_CHUNK_BYTES, 2 * MIN_CHUNK_BYTES - 1, MIN_CHUNK_BYTES)
    with pytest.raises(ApiError):
        state.admit_bytes(low)


def test_parts_any_order_and_rules() -> None:
    state = UploadState()
    for number, total, size in ((3, None, 10), (2, None, MIN_CHUNK_BYTES), (1, 3, MIN_CHUNK_BYTES)):
        if number == 3:
            # part 3 of unknown total is not known to be last: too small
            state.admit_part(PartRange(3, None))
            assert rule_slug(lambda: state.accept_part(PartRange(3, None), 10)) == (
                errors.PART_FILE_TOO_SMALL[0])
            continue
        state.admit_part(PartRange(number, total))
        state.accept_part(PartRange(number, total), size)
    assert not state.complete
    assert rule_slug(lambda: state.admit_part(PartRange(2, None))) == errors.PART_ALREADY_SENT[0]
    assert rule_slug(lambda: state.admit_part(PartRange(3, 4))) == errors.PART_DIFFERENT_TOTAL[0]
    state.admit_part(PartRange(3, 3))
    state.accept_part(PartRange(3, 3), 10)
    assert state.complete and state.filesize() == 2 * MIN_CHUNK_BYTES + 10
    spans = [(a, b) for a, b, _ in state.spans()]
    assert spans[2] == (2 * MIN_CHUNK_BYTES, 2 * MIN_CHUNK_BYTES + 9)


def test_single_and_empty() -> None:
    state = UploadState()
    assert rule_slug(lambda: state.accept_single(0)) == errors.FILE_EMPTY[0]
    assert rule_slug(lambda: state.accept_single(200 * MIB + 1)) == errors.FILE_TOO_LARGE[0]
    state.accept_single(3)
    assert state.complete


def test_forms_do_not_mix_while_chunks_are_in_flight() -> None:
    bytes_first = UploadState()
    bytes_first.admit_bytes(ByteRange(0, MIN_CHUNK_BYTES - 1, None))  # in flight, nothing recorded yet
    assert rule_slug(lambda: bytes_first.admit_part(PartRange(2, None))) == errors.RANGE_STARTED_WITH_BYTES[0]
    parts_first = UploadState()
    parts_first.admit_part(PartRange(1, None))
    second = ByteRange(MIN_CHUNK_BYTES, 2 * MIN_CHUNK_BYTES - 1, None)
    assert rule_slug(lambda: parts_first.admit_bytes(second)) == errors.RANGE_STARTED_WITH_PART[0]
    parts_first.release(PartRange(1, None))  # the part failed: the upload has not started
    parts_first.admit_bytes(second)


def test_a_part_accepted_after_a_concurrent_one_keeps_the_rules() -> None:
    """Parts admitted together (both in flight) are checked again when accepted: first one wins."""
    state = UploadState()
    state.admit_part(PartRange(1, 3))
    state.admit_part(PartRange(2, 4))  # admissible: no total is recorded yet
    state.accept_part(PartRange(1, 3), MIN_CHUNK_BYTES)
    assert rule_slug(lambda: state.accept_part(PartRange(2, 4), MIN_CHUNK_BYTES)) == errors.PART_DIFFERENT_TOTAL[0]
    assert state.total == 3 and [c.part for c in state.chunks] == [1]
    state.admit_part(PartRange(2, None))
    state.accept_part(PartRange(2, None), MIN_CHUNK_BYTES)
    assert state.total == 3


def test_a_total_below_a_part_in_flight_is_too_low() -> None:
    state = UploadState()
    state.admit_part(PartRange(5, None))
    assert rule_slug(lambda: state.admit_part(PartRange(2, 3))) == errors.PART_TOTAL_TOO_LOW[0]
    assert rule_slug(lambda: state.admit_part(PartRange(5, None))) == errors.PART_ALREADY_SENT[0]


def test_byte_ranges_accepted_after_a_concurrent_one_keep_its_total() -> None:
    state = UploadState()
    first = ByteRange(0, MIN_CHUNK_BYTES - 1, 4 * MIN_CHUNK_BYTES)
    second = ByteRange(MIN_CHUNK_BYTES, 2 * MIN_CHUNK_BYTES - 1, 3 * MIN_CHUNK_BYTES)
    state.admit_bytes(first)
    state.admit_bytes(second)  # admissible: no total is recorded yet
    state.accept_bytes(first, first.length)
    assert rule_slug(lambda: state.accept_bytes(second, second.length)) == errors.BYTES_DIFFERENT_TOTAL[0]
    assert state.total == 4 * MIN_CHUNK_BYTES and state.received_bytes() == MIN_CHUNK_BYTES


def test_a_total_equal_to_a_part_already_sent_is_too_low() -> None:
    """api.video's title: "lower than or equal to a part number you already sent"."""
    state = UploadState()
    state.admit_part(PartRange(3, None))
    state.accept_part(PartRange(3, None), MIN_CHUNK_BYTES)
    assert rule_slug(lambda: state.admit_part(PartRange(1, 3))) == errors.PART_TOTAL_TOO_LOW[0]
    state.admit_part(PartRange(4, 4))  # one more than the highest part sent is a total
    assert state.total is None  # recorded only once the part is accepted


@pytest.mark.parametrize("recorded", [True, False], ids=["received", "in-flight"])
def test_a_part_sent_again_collides_whatever_its_total(recorded: bool) -> None:
    """A re-sent part is "already sent" before any total rule, so a retried ``part N/N`` is a receipt."""
    state = UploadState()
    state.admit_part(PartRange(1, None))
    state.accept_part(PartRange(1, None), MIN_CHUNK_BYTES)
    state.admit_part(PartRange(2, 2))
    if recorded:
        state.accept_part(PartRange(2, 2), 10)
    for again in (PartRange(2, 2), PartRange(2, None), PartRange(2, 5), PartRange(1, 1)):
        assert rule_slug(lambda again=again: state.admit_part(again)) == errors.PART_ALREADY_SENT[0]
