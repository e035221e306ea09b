"""Spool frames' CRC-32 by carry-less multiplication (provenance/_crc32_clmul.h): the same value
as zlib's crc32 for every length, alignment and starting value, and constants that are what
the header says they are (derived here from the polynomial, not taken on trust)."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.records import _spoolmap

HEADER = Path(__file__).parents[3] / "provenance" / "_crc32_clmul.h"
POLYNOMIAL = 0x104C11DB7  # CRC-32's P(x), x^32 included


def power_mod(n: int) -> int:
    """x^n mod P(x) over GF(2)."""
    remainder = 1
    for _ in range(n):
        remainder <<= 1
        if remainder >> 32:
            remainder ^= POLYNOMIAL
    return remainder


def reflect(value: int, bits: int) -> int:
    return int(format(value, f"0{bits}b")[::-1], 2)


def fold_constant(n: int) -> int:
    """x^n mod P(x), shifted left by 32, reflected over 64 bits, shifted left by 1: a fold
    across n bits in the reflected domain."""
    return reflect(power_mod(n) << 32, 64) << 1


def quotient_x64() -> int:
    """floor(x^64 / P(x)) over GF(2): Barrett's mu."""
    quotient, remainder = 0, 1 << 64
    while remainder.bit_length() >= 33:
        shift = remainder.bit_length() - 33
        quotient |= 1 << shift
        remainder ^= POLYNOMIAL << shift
    return quotient


def test_the_headers_constants_are_derived_from_the_polynomial() -> None:
    defined = {
        name: int(value, 16)
        for name, value in re.findall(r"#define (CRC32_\w+) 0x([0-9a-f]+)ULL", HEADER.read_text())
    }
    assert defined == {
        "CRC32_FOLD_4_LOW": fold_constant(4 * 128 + 32),
        "CRC32_FOLD_4_HIGH": fold_constant(4 * 128 - 32),
        "CRC32_FOLD_1_LOW": fold_constant(128 + 32),
        "CRC32_FOLD_1_HIGH": fold_constant(128 - 32),
        "CRC32_FOLD_64": fold_constant(64),
        "CRC32_P_REFLECTED": reflect(POLYNOMIAL, 33),
        "CRC32_MU_REFLECTED": reflect(quotient_x64(), 33),
    }


@pytest.fixture(params=[True, False], ids=["clmul", "zlib tables"])
def clmul(request: pytest.FixtureRequest) -> Iterator[bool]:
    if request.param:
        try:
            _spoolmap.set_crc32_clmul(True)
        except ValueError:
            pytest.skip("this CPU has no PCLMULQDQ")
    previous = _spoolmap.set_crc32_clmul(request.param)
    try:
        yield request.param
    finally:
        _spoolmap.set_crc32_clmul(previous)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=3000), skip=st.integers(0, 15), value=st.integers(0, 2**32 - 1))
def test_same_value_as_zlib(clmul: bool, data: bytes, skip: int, value: int) -> None:
    view = memoryview(data)[min(skip, len(data)) :]  # every alignment
    assert _spoolmap.frame_crc32(view, value) == zlib.crc32(view, value)


def test_every_length_around_the_fold_sizes(clmul: bool) -> None:
    data = bytes(range(256)) * 8
    for size in range(0, 300):
        assert _spoolmap.frame_crc32(data[:size]) == zlib.crc32(data[:size]), size
    assert _spoolmap.frame_crc32(b"\xff" * 4096, 0xFFFFFFFF) == zlib.crc32(
        b"\xff" * 4096, 0xFFFFFFFF
    )
