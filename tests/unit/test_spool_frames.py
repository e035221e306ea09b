"""Spool frame encoding (proxy.records.segments): round-trips and corruption is always detected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.records.segments import (
    CHUNK_MAX_BYTES,
    CHUNK_MAX_RECORDS,
    FRAME_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    Chunk,
    chunk_records,
    decode_chunk,
    encode_chunks,
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


# -- chunks: several records per frame, with the answers they stand for ----------------------

records_strategy = st.lists(
    st.binary(min_size=1, max_size=300).filter(lambda b: b"\n" not in b).map(lambda b: b"{" + b),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(records_strategy, st.integers(0, 50), st.integers(0, 50), st.integers(1, 10))
def test_chunks_round_trip_with_their_counters(
    items: list[bytes], sampled_out: int, dropped: int, per_frame: int
) -> None:
    served = len(items) + sampled_out + dropped
    data = encode_chunks(items, served, dropped, max_records=per_frame)
    scan = scan_frames(data)
    assert scan.end == len(data)
    chunks = [decode_chunk(payload) for payload in scan.payloads]
    assert [r for chunk in chunks for r in chunk.records] == items
    assert sum(chunk.served for chunk in chunks) == served
    assert sum(chunk.dropped for chunk in chunks) == dropped
    assert all(len(chunk.records) <= per_frame for chunk in chunks)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from([1, 7, 100, CHUNK_MAX_BYTES // 3, CHUNK_MAX_BYTES - 1]), max_size=9),
    st.integers(0, 5),
    st.integers(0, 3),
    st.integers(1, 8),
)
def test_a_flush_in_one_frame_is_the_same_bytes_as_record_by_record(
    sizes: list[int], sampled_out: int, dropped: int, per_frame: int
) -> None:
    """encode_chunks' one-frame shortcut (the usual flush) writes exactly what chunk_records
    writes, up to and across the CHUNK_MAX_BYTES and max_records limits."""
    items = [b"{" + b"x" * (size - 1) if size > 1 else b"{" for size in sizes]
    served = len(items) + sampled_out + dropped
    assert encode_chunks(items, served, dropped, max_records=per_frame) == chunk_records(
        items, served, dropped, max_records=per_frame
    )


def test_a_flush_of_plain_records_is_one_frame_without_a_counters_line() -> None:
    data = encode_chunks([b'{"a":1}', b'{"b":2}'], 2, 0)
    assert data == encode_frame(b'{"a":1}\n{"b":2}')
    assert decode_chunk(scan_frames(data).payloads[0]) == Chunk([b'{"a":1}', b'{"b":2}'], 2, 0)


def test_counters_ride_on_the_last_frame_only() -> None:
    records = [b'{"n":%d}' % i for i in range(CHUNK_MAX_RECORDS + 3)]
    frames = scan_frames(encode_chunks(records, len(records) + 7, 2)).payloads
    assert len(frames) == 2
    assert decode_chunk(frames[0]) == Chunk(records[:CHUNK_MAX_RECORDS], CHUNK_MAX_RECORDS, 0)
    assert frames[1].endswith(b"\n#served=10,dropped=2")
    assert decode_chunk(frames[1]) == Chunk(records[CHUNK_MAX_RECORDS:], 10, 2)


def test_a_single_record_frame_of_the_old_layout_reads_as_one_answer() -> None:
    assert decode_chunk(b'{"n":1}') == Chunk([b'{"n":1}'], 1, 0)


@pytest.mark.parametrize(
    "line", [b"#served=x,dropped=1", b"#served=1", b"#", b"#served=1,dropped=2 "]
)
def test_a_malformed_counters_line_stays_a_record_for_the_sealer_to_refuse(line: bytes) -> None:
    chunk = decode_chunk(b'{"n":1}\n' + line)
    assert chunk.records == [b'{"n":1}', line]
    assert (chunk.served, chunk.dropped) == (2, 0)
