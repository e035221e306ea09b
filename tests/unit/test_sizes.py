"""Human byte sizes (proxy/sizes.py): IEC and SI units, exact arithmetic, one error type."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sizes import SizeError, format_size, parse_size_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("512B", 512),
        ("1KiB", 1024),
        ("256MiB", 256 * 1024**2),
        ("10GiB", 10 * 1024**3),
        ("2TiB", 2 * 1024**4),
        ("1kB", 1000),
        ("1KB", 1000),
        ("5MB", 5_000_000),
        ("1.5GB", 1_500_000_000),
        ("1.5GiB", 3 * 512 * 1024**2),
        ("256mib", 256 * 1024**2),
        (" 64 MiB ", 64 * 1024**2),
    ],
)
def test_parse_size_accepts_iec_and_si_units(text: str, expected: int) -> None:
    assert parse_size_bytes(text) == expected


def test_parse_size_takes_an_int_as_bytes() -> None:
    assert parse_size_bytes(1234) == 1234


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a size"),
        ("MiB", "not a size"),
        ("-1MiB", "not a size"),
        ("1.5", "whole number of bytes"),
        ("0.1KiB", "whole number of bytes"),
        ("10M", "ambiguous"),
        ("10k", "ambiguous"),
        ("10 parsecs", "unknown unit"),
        ("1e3", "not a size"),
        ("1,000", "not a size"),
        ("9" * 100, "too long"),
    ],
)
def test_parse_size_refuses_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(SizeError, match=reason):
        parse_size_bytes(text)


@pytest.mark.parametrize("value", [-1, True, 1.5, None])
def test_parse_size_refuses_non_sizes(value: object) -> None:
    with pytest.raises(SizeError):
        parse_size_bytes(value)  # type: ignore[arg-type]


def test_size_error_is_a_value_error_with_one_line() -> None:
    with pytest.raises(ValueError, match="ambiguous") as info:
        parse_size_bytes("3G")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("size_bytes", "text"),
    [(0, "0"), (1000, "1000"), (1024, "1KiB"), (256 * 1024**2, "256MiB"), (1536, "1536")],
)
def test_format_size_spells_exact_iec(size_bytes: int, text: str) -> None:
    assert format_size(size_bytes) == text


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**50))
def test_format_then_parse_round_trips(size_bytes: int) -> None:
    assert parse_size_bytes(format_size(size_bytes)) == size_bytes


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_parse_size_returns_an_int_or_raises_size_error_only(text: str) -> None:
    try:
        result = parse_size_bytes(text)
    except SizeError:
        return
    assert isinstance(result, int)
    assert result >= 0
