"""Spool frame encoding (proxy.records.segments): round-trips and corruption is always detected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.records.segments import (
    FRAME_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    encode_frame,
    encode_frames,
    find_next_frame,
    frame_at,
    scan_frames,
)

payloads = st.lists(st.binary(min_size=1, max_size=200).map(lambda b: b"{" + b), max_size=8)


@settings(max_examples=100, deadline=None)
@given(payloads)
def test_frames_round_trip(items: list[bytes]) -> None:
    data = encode_frames(items)
    scan = scan_frames(data)
    assert scan.payloads == items
    assert scan.end == len(data)
    assert scan.ends[-1:] == ([len(data)] if items else [])


@settings(max_examples=200, deadline=None)
@given(payloads.filter(bool), st.data())
def test_any_bit_flip_is_detected(items: list[bytes], data: st.DataObject) -> None:
    """A single flipped bit anywhere never yields a different payload: CRC-32 catches it."""
    raw = bytearray(encode_frames(items))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    scan = scan_frames(bytes(raw))
    assert scan.end < len(raw)
    assert scan.payloads == items[: len(scan.payloads)]


@settings(max_examples=200, deadline=None)
@given(payloads.filter(bool), st.data())
def test_any_truncation_keeps_complete_frames_only(items: list[bytes], data: st.DataObject) -> None:
    raw = encode_frames(items)
    cut = data.draw(st.integers(0, len(raw) - 1))
    scan = scan_frames(raw[:cut])
    complete = [i for i, end in enumerate(scan_frames(raw).ends) if end <= cut]
    assert scan.payloads == [items[i] for i in complete]
    assert scan.end <= cut


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises(garbage: bytes) -> None:
    scan = scan_frames(garbage)
    assert scan.end <= len(garbage)
    assert find_next_frame(garbage, 0) < len(garbage)


def test_resync_finds_the_frame_after_a_corrupt_one() -> None:
    first, second = encode_frame(b'{"a":1}'), encode_frame(b'{"b":2}')
    raw = bytearray(first + second)
    raw[FRAME_HEADER_BYTES + 2] ^= 0xFF
    assert frame_at(bytes(raw), 0) == -1
    assert find_next_frame(bytes(raw), 0) == len(first)


def test_corrupt_length_is_detected() -> None:
    raw = bytearray(encode_frame(b'{"a":1}') * 2)
    raw[3] = 3  # shorter length, payload prefix would otherwise be accepted
    assert scan_frames(bytes(raw)).payloads == []


@pytest.mark.parametrize("size", [0, MAX_PAYLOAD_BYTES + 1])
def test_encode_refuses_empty_or_oversize(size: int) -> None:
    with pytest.raises(ValueError):
        encode_frame(b"{" * size)
