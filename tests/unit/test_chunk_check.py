"""The sealer's whole-chunk check (proxy.records.chunk_check) never accepts more than the
per-record reference (segments.decode_chunk + sealer.check_record), and accepts the chunks a
working edge writes. Records are RFC 8785 canonical JSON (§3.2); ts is RFC 3339 (§5.6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.merkle import leaf_hash
from provenance.records import Record, record_to_canonical_bytes
from proxy.records.chunk_check import ChunkChecker
from proxy.records.emit import Attribution, RecordEncoder
from proxy.records.sealer import check_record
from proxy.records.segments import decode_chunk
from tests.unit.provenance.strategies import make_record, mutate, records

EDGE = "edge-1"
# Every test runs both implementations: the regular expression, and the compiled check
# (provenance/_fastrecords.c; tests/unit/provenance/test_fastrecords.py fails if it is not built).
CHECKERS = pytest.mark.parametrize(
    "checker",
    [ChunkChecker(EDGE, compiled=False), ChunkChecker(EDGE)],
    ids=["regex", "compiled"],
)


def reference(payload: bytes) -> tuple[list[bytes], list[bytes], int, int, list[bytes]] | None:
    """What the sealer's record-by-record path makes of a payload, if it accepts every record
    (with each record's RFC 9162 §2.1.1 leaf hash)."""
    chunk = decode_chunk(payload)
    stamps = []
    for record in chunk.records:
        ts = check_record(record, EDGE, {})
        if ts is None:
            return None
        stamps.append(ts.encode())
    leaves = [leaf_hash(record) for record in chunk.records]
    return chunk.records, stamps, chunk.served, chunk.dropped, leaves


def counters_line(served: int, dropped: int) -> bytes:
    return b"\n#served=%d,dropped=%d" % (served, dropped)


@CHECKERS
@settings(max_examples=150, deadline=None)
@given(
    st.lists(records(edge=EDGE), min_size=1, max_size=6),
    st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
)
def test_a_chunk_of_valid_records_is_accepted_as_the_reference_reads_it(
    checker: ChunkChecker, batch: list[Record], counters: tuple[int, int] | None
) -> None:
    payload = b"\n".join(record_to_canonical_bytes(r) for r in batch)
    if counters is not None:
        payload += counters_line(*counters)
    checked = checker.check(payload, {})
    if all(in_fast_form(r) for r in batch):
        assert checked is not None
    assert checked is None or tuple(checked) == reference(payload)


def in_fast_form(record: Record) -> bool:
    """Valid records the canonical-record pattern covers: counts below 10**15 and request ids
    that need no JSON escape; others take the reference path by design."""
    return (
        max(record.bytes, record.origin_bytes) < 10**15
        and '"' not in record.request_id
        and "\\" not in record.request_id
    )


@st.composite
def mutated_chunks(draw: st.DrawFn) -> bytes:
    """A valid chunk with a few bytes replaced, deleted or inserted (newlines and counters
    lines included), so that some mutants are still valid and most are not."""
    batch = draw(st.lists(records(edge=EDGE), min_size=1, max_size=4))
    raw = bytearray(b"\n".join(record_to_canonical_bytes(r) for r in batch))
    if draw(st.booleans()):
        raw += counters_line(draw(st.integers(0, 99)), draw(st.integers(0, 99)))
    return mutate(draw, raw)


@CHECKERS
@settings(max_examples=400, deadline=None)
@given(mutated_chunks())
def test_whatever_the_chunk_check_accepts_the_reference_accepts_identically(
    checker: ChunkChecker,
    payload: bytes,
) -> None:
    checked = checker.check(payload, {})
    if checked is not None:
        assert tuple(checked) == reference(payload)


@CHECKERS
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_never_accepted_unless_the_reference_agrees(
    checker: ChunkChecker, payload: bytes
) -> None:
    checked = checker.check(payload, {})
    assert checked is None or tuple(checked) == reference(payload)


def valid(index: int, edge: str = EDGE, **overrides: object) -> bytes:
    return record_to_canonical_bytes(make_record(index, edge, **overrides))


def with_ts(ts: bytes) -> bytes:
    """A record whose ts is replaced after encoding (the Record type may refuse it)."""
    return valid(1).replace(b"2026-11-27T03:38:01.001Z", ts)


@CHECKERS
@pytest.mark.parametrize(
    "bad",
    [
        valid(1, edge="edge-2"),  # another edge's record
        valid(1, edge="edge-10"),  # this edge's id as a prefix
        valid(1).replace(b"T03:38", b"T24:38"),  # RFC 3339 §5.6: hour 00-23
        with_ts(b"2026-02-30T00:00:00.000Z"),  # no such day (§5.7)
        with_ts(b"2025-02-29T00:00:00.000Z"),  # not a leap year
        with_ts(b"0000-01-01T00:00:00.000Z"),  # year 0 is out of datetime's range
        with_ts(b"2026-01-01T00:00:60.000Z"),  # leap seconds are refused
        with_ts(b"2026-13-01T00:00:00.000Z"),  # no month 13
        with_ts(b"2026-01-01T00:00:00.00Z"),  # milliseconds, exactly three digits
        valid(1, creator=None, manifest=None).replace(  # a manifest needs a creator
            b'"manifest":null', b'"manifest":"sha256:' + b"a" * 64 + b'"'
        ),
        valid(1, content_id=None, manifest=None).replace(  # ... and a content id
            b'"manifest":null', b'"manifest":"sha256:' + b"a" * 64 + b'"'
        ),
        valid(1, request_id='a"b'),  # canonical but escaped: the reference decides
        valid(1, bytes=10**15),  # valid, beyond the fast form: the reference decides
        b'{"v":1}',
        b"",
    ],
)
def test_a_chunk_with_any_other_record_goes_to_the_reference(
    checker: ChunkChecker, bad: bytes
) -> None:
    for payload in (bad, valid(0) + b"\n" + bad, bad + b"\n" + valid(0) + counters_line(5, 1)):
        assert checker.check(payload, {}) is None


@CHECKERS
def test_a_leap_day_is_accepted(
    checker: ChunkChecker,
) -> None:
    payload = with_ts(b"2024-02-29T23:59:59.999Z")
    checked = checker.check(payload, {})
    assert checked is not None and checked.stamps == [b"2024-02-29T23:59:59.999Z"]


@CHECKERS
@pytest.mark.parametrize(
    "line", [b"#served=1", b"#served=-1,dropped=0", b"#served=1,dropped=0\n", b"#x"]
)
def test_a_malformed_counters_line_goes_to_the_reference(
    checker: ChunkChecker, line: bytes
) -> None:
    assert checker.check(valid(0) + b"\n" + line, {}) is None


@pytest.mark.parametrize("compiled", [False, True])
def test_an_edge_id_that_no_record_can_carry_checks_nothing(compiled: bool) -> None:
    assert ChunkChecker("not an edge", compiled=compiled).check(valid(0), {}) is None


@CHECKERS
def test_the_hit_path_records_are_accepted(
    checker: ChunkChecker,
) -> None:
    """What proxy/handler.py writes for plain hits (RecordEncoder templates) takes the fast
    path: otherwise the check would cost the records process as much as before."""
    encoder = RecordEncoder(EDGE, "1")
    attributions = [None, Attribution("sha256:" + "c" * 64, "alice", "sha256:" + "d" * 64),
                    Attribution("sha256:" + "e" * 64, "bob", None)]  # fmt: skip
    parts = [
        encoder.encode_hit(
            encoder.hit_template(200, 1024 + n, attribution, f"http://h/obj-{n}"),
            1_795_000_000.0 + n / 7,
            f"r{n:x}",
        )
        for n, attribution in enumerate(attributions * 5)
    ]
    payload = b"\n".join(parts) + counters_line(20, 2)
    checked = checker.check(payload, {})
    assert checked is not None
    assert tuple(checked) == reference(payload)


@CHECKERS
def test_seconds_seen_are_remembered_for_the_next_chunk(
    checker: ChunkChecker,
) -> None:
    seconds: dict[bytes, bool] = {}
    assert checker.check(valid(1), seconds) is not None
    assert seconds == {b"2026-11-27T03:38:01": True}
