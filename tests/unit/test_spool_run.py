"""The sealer's compiled run of spool frames (``scan_spool_run`` in provenance/_fastrecords.c)
against the Python reference: frames as ``proxy.records.segments.frame_at`` reads them (length,
CRC-32 of length and payload), each frame's payload as the regular-expression chunk check
(``ChunkChecker(compiled=False)``) accepts it, positions and answers as ``Sealer._take`` queues
them. The run must stop before the first frame the reference would not take whole: a torn or
corrupt frame (docs/design/spool.md "Frames") or one holding anything but valid records of this
edge and at most one counters line. The calendar check of ``ts`` (RFC 3339 §5.7) stays the
caller's: both sides are given a check that passes everything."""

from __future__ import annotations

from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import fastrecords
from provenance.merkle import leaf_hash
from provenance.records import Record, record_to_canonical_bytes
from proxy.records.chunk_check import ChunkChecker
from proxy.records.segments import FRAME_HEADER_BYTES, encode_chunks, encode_frame, frame_at

from .provenance.strategies import make_record, mutate, records

EDGE = "edge-1"
run = fastrecords.scan_spool_run
needs_module = pytest.mark.skipif(run is None, reason="the compiled module is not built")


class _EverySecondIsReal(dict[bytes, bool]):
    def get(self, key: bytes, default: Any = None) -> bool:
        return True


def reference(data: bytes, start: int, base: int, segment: int) -> tuple[Any, ...]:
    checker = ChunkChecker(EDGE, compiled=False)
    keys = ("records", "stamps", "leaves", "segments", "offsets", "skips", "served", "dropped")
    out: dict[str, list[Any]] = {key: [] for key in keys}
    offset, first_count = start, 0
    while (end := frame_at(data, offset)) >= 0:
        checked = checker.check(data[offset + FRAME_HEADER_BYTES : end], _EverySecondIsReal())
        if checked is None:
            break
        total = len(checked.records)
        first_count = first_count or total
        out["records"] += checked.records
        out["stamps"] += checked.stamps
        out["leaves"] += [leaf_hash(r) for r in checked.records]
        out["segments"] += [segment] * total
        out["offsets"] += [base + offset] * (total - 1) + [base + end]
        out["skips"] += [*range(1, total), 0]
        out["served"] += [1] * (total - 1) + [1 + max(0, checked.served - total)]
        out["dropped"] += [0] * (total - 1) + [checked.dropped]
        offset = end
    return (offset, *out.values(), first_count)


def ints(column: bytes) -> list[int]:
    return array("q", column).tolist()


def entries(column: bytes, width: int) -> list[bytes]:
    return [column[i : i + width] for i in range(0, len(column), width)]


def compiled(data: bytes, start: int, base: int, segment: int) -> tuple[Any, ...]:
    """The run, its columns (one bytes object each: int64s, 24-byte ts, 32-byte leaf hashes)
    read back as the reference's lists."""
    assert run is not None
    end, starts, stops, stamps, seconds, leaves, *columns, first = run(
        data, start, base, segment, EDGE.encode()
    )
    stamp_list = entries(stamps, 24)
    assert set(seconds) == {stamp[:19] for stamp in stamp_list}
    spans = (ints(starts), ints(stops))
    records_ = [data[first:last] for first, last in zip(*spans, strict=True)]
    assert fastrecords.join_spans([data] * len(records_), *spans, b",") == b",".join(records_)
    as_arrays = (array("q", starts), array("q", stops))
    assert fastrecords.join_spans([data] * len(records_), *as_arrays, b",") == b",".join(records_)
    if records_:
        assert fastrecords.stamp_bounds(stamps) == (min(stamp_list), max(stamp_list))
    return (end, records_, stamp_list, entries(leaves, 32), *map(ints, columns), first)


def fast_form(record: Record) -> bool:
    return max(record.bytes, record.origin_bytes) < 10**15 and not {'"', "\\"} & set(
        record.request_id
    )


@st.composite
def spool_bytes(draw: st.DrawFn) -> bytes:
    """Several flushes as the serving process writes them: chunks of valid records, some with
    a counters line (answers the sample left out or a full spool dropped), some records of
    another edge, invalid or mutated under a valid CRC, then maybe a mutation of the frames'
    bytes or a torn tail."""
    data = b""
    for _ in range(draw(st.integers(1, 5))):
        chunk = draw(st.lists(records(edge=EDGE).filter(fast_form), min_size=1, max_size=4))
        raw = [record_to_canonical_bytes(r) for r in chunk]
        kind = draw(st.sampled_from(["plain", "plain", "counters", "other-edge", "invalid",
                                     "mutated-payload"]))  # fmt: skip
        if kind == "mutated-payload":  # a valid CRC over mutated records: the record checks
            payload = mutate(draw, bytearray(b"\n".join(raw)))
            data += encode_frame(payload) if payload else b""
            continue
        if kind == "other-edge":
            raw[-1] = record_to_canonical_bytes(make_record(7, edge="edge-2"))
        elif kind == "invalid":
            raw[0] = raw[0].replace(b'"v":1', b'"v":2')
        extra = draw(st.integers(1, 3)) if kind == "counters" else 0
        dropped = draw(st.integers(0, 2)) if kind == "counters" else 0
        data += encode_chunks(raw, len(raw) + extra, dropped)
    ending = draw(st.sampled_from(["whole", "whole", "mutated", "torn"]))
    if ending == "mutated":
        data = mutate(draw, bytearray(data))
    elif ending == "torn":
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


@needs_module
@settings(max_examples=250, deadline=None)
@given(spool_bytes(), st.integers(0, 10**9), st.integers(0, 10**6))
def test_the_run_takes_exactly_the_frames_the_reference_takes(
    data: bytes, base: int, segment: int
) -> None:
    assert compiled(data, 0, base, segment) == reference(data, 0, base, segment)


@needs_module
@settings(max_examples=120, deadline=None)
@given(spool_bytes(), st.data())
def test_from_any_offset_and_on_any_prefix(data: bytes, choice: st.DataObject) -> None:
    start = choice.draw(st.integers(0, len(data)))
    stop = choice.draw(st.integers(start, len(data)))
    assert compiled(data[:stop], start, 0, 1) == reference(data[:stop], start, 0, 1)


@needs_module
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 40))
def test_arbitrary_bytes_and_frames_of_them_never_crash_and_agree(junk: bytes, cut: int) -> None:
    framed = encode_frame(junk) if junk else b""
    for data in (junk, framed, framed[:cut], framed + junk):
        assert compiled(data, 0, 0, 0) == reference(data, 0, 0, 0)


@needs_module
def test_the_counters_line_and_its_edges() -> None:
    one = record_to_canonical_bytes(make_record(1, edge=EDGE))
    cases = [
        one + b"\n#served=3,dropped=1",  # taken: 3 answers, 1 dropped
        one + b"\n#served=000000000000000003,dropped=0",  # 18 digits: taken
        one + b"\n#served=0000000000000000003,dropped=0",  # 19: not
        one + b"\n#served=3,dropped=",
        one + b"\n#served=3,dropped=1\n",
        one + b"\n#served=3,dropped=1x",
        b"#served=3,dropped=1",  # no record before it
        one + b"\n",
        one + b"\n" + one,
    ]
    for payload in cases:
        data = encode_frame(payload)
        assert compiled(data, 0, 0, 5) == reference(data, 0, 0, 5), payload


@needs_module
def test_a_frame_past_the_first_bad_one_is_not_taken() -> None:
    """The run stops at the first frame it can't take; the sealer reads that one its own way
    and starts a new run after it."""
    good = encode_frame(record_to_canonical_bytes(make_record(1, edge=EDGE)))
    other = encode_frame(record_to_canonical_bytes(make_record(2, edge="edge-2")))
    end, taken, *_ = compiled(good + other + good, 0, 100, 3)
    assert end == len(good) and len(taken) == 1


@needs_module
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"", -1, 0, 0, b"e"), ValueError),
        ((b"", 1, 0, 0, b"e"), ValueError),
        ((b"", 0, 0, "0", b"e"), TypeError),
        ((b"", 0, 0, 0, "e"), TypeError),
        ((b"", 0, 0, 0, b"e", None), TypeError),  # the crc32 callable it took before
        ((b"", 0, 0, 0), TypeError),
    ],
)
def test_bad_arguments_raise(args: tuple[Any, ...], error: type[Exception]) -> None:
    assert run is not None
    with pytest.raises(error):
        run(*args)


@needs_module
def test_the_frame_crc_is_zlibs_over_length_and_payload() -> None:
    """The CRC is computed in C (zlib's ``crc32``) and must be the one ``segments`` writes:
    a frame is taken with its CRC, and not with any single bit of the CRC flipped."""
    data = encode_frame(record_to_canonical_bytes(make_record(1, edge=EDGE)))
    assert compiled(data, 0, 0, 0)[0] == len(data)
    for bit in range(32):
        bad = bytearray(data)
        bad[4 + bit // 8] ^= 1 << (bit % 8)
        assert compiled(bytes(bad), 0, 0, 0)[0] == 0


@needs_module
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.data()), max_size=8), st.binary(max_size=3))
def test_join_spans_is_the_join_of_the_slices(
    parts: list[tuple[bytes, st.DataObject]], separator: bytes
) -> None:
    buffers, starts, stops = [], [], []
    for buffer, choice in parts:
        first = choice.draw(st.integers(0, len(buffer)))
        buffers.append(buffer)
        starts.append(first)
        stops.append(choice.draw(st.integers(first, len(buffer))))
    expected = separator.join(b[s:e] for b, s, e in zip(buffers, starts, stops, strict=True))
    assert fastrecords.join_spans(buffers, starts, stops, separator) == expected
    assert fastrecords._join_spans(buffers, starts, stops, separator) == expected


@needs_module
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (([b"ab"], [0], [3], b","), ValueError),
        (([b"ab"], [2], [1], b","), ValueError),
        (([b"ab"], [-1], [1], b","), ValueError),
        (([b"ab"], [0], [1, 2], b","), ValueError),
        (([b"ab"], [0], ["1"], b","), TypeError),
        ((["ab"], [0], [1], b","), TypeError),
        (((b"ab",), [0], [1], b","), TypeError),
        (([b"ab"], [0], [1], ","), TypeError),
        (([b"ab"], [0], [2**70], b","), OverflowError),
    ],
)
def test_join_spans_refuses_spans_outside_their_buffers(
    args: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        fastrecords.join_spans(*args)
