"""tasks.job.sizes: sizes written by people."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.constants import GIB, KIB, MIB
from tasks.job.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5MiB", 5_242_880),
        ("50 MiB", 50 * MIB),
        ("1GiB", GIB),
        ("10MB", 10_000_000),
        ("2kib", 2 * KIB),
        ("1.5MiB", 1_572_864),
        (" 7 ", 7),
        ("12b", 12),
        ("3k", 3000),
        (5_242_880, 5_242_880),
        (0, 0),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "5 parsecs", "-5MiB", "5 Mi B", "1e6", "five"])
def test_parse_size_refuses_garbage_and_says_how(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a size.*5MiB"):
        parse_size(text)


def test_parse_size_refuses_fractional_bytes() -> None:
    with pytest.raises(ValueError, match="whole number of bytes"):
        parse_size("1.5")


def test_parse_size_refuses_bool() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(True)


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                            (50 * MIB, "50.0 MiB"), (3 * GIB, "3.0 GiB"), (2048 * GIB, "2048.0 GiB")])
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**53), st.sampled_from(["", "B", "KiB", "MiB", "GiB", "KB", "MB", "GB"]))
def test_parse_size_round_trips_whole_units(number: int, unit: str) -> None:
    factor = {"": 1, "B": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB, "KB": 1000, "MB": 1000**2, "GB": 1000**3}[unit]
    if number * factor > 2**53:  # keep the product within 2**53, where the test's numbers are exact
        number = number % (2**53 // factor)
    assert parse_size(f"{number}{unit}") == number * factor
    assert parse_size(f"{number} {unit.lower()}") == number * factor


def test_decimal_sizes_in_decimal_units_are_exact() -> None:
    assert parse_size("4.1MB") == 4_100_000


def test_large_byte_counts_are_exact() -> None:
    assert parse_size(str(2**53 + 1)) == 2**53 + 1
