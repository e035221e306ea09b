"""The coordinator's fast batch parser against the generic one (the reference).

Invariants: on every valid batch ``parse_canonical_batch`` equals ``canonical_batch_of``
of ``parse_sealed_batch``; the fast path takes the canonical form an edge sends; and whenever
the fast path accepts bytes (any mutation of a valid batch), the generic parser accepts them too
and yields the same fields, leaf hashes (RFC 9162 §2.1.1) and records array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import provenance.batches as batches_module
from provenance.batches import (
    SealedBatch,
    canonical_batch_of,
    format_sealed_batch,
    parse_canonical_batch,
    parse_canonical_batch_fast,
    parse_sealed_batch,
    seal_batch,
    stored_record_fields,
    verify_batch,
    verify_batch_leaves,
    verify_canonical_batch,
)
from provenance.errors import CachetError, FormatError, RootMismatchError
from provenance.keys import KeyRing, generate_signing_key
from provenance.merkle import leaf_hash
from provenance.records import Record, match_canonical_record, record_to_canonical_bytes

from .strategies import both_implementations, make_record, records

# Every test runs with both records checks: the regular expression and provenance/_fastrecords.c
# (test_fastrecords.py fails when it is not built).
records_check = both_implementations("scan_records", "regex")


EDGE_KEY = generate_signing_key("edge-1", b"\x11" * 32)
RING = KeyRing([EDGE_KEY.verifier])
# records the fast path is built for: no escapes in request ids, counts below 10**15
fast_records = records(edge="edge-1").filter(
    lambda r: (
        '"' not in r.request_id
        and "\\" not in r.request_id
        and r.bytes < 10**15
        and r.origin_bytes < 10**15
    )
)


def sealed_of(batch_records: list[Record], seq: int = 2) -> SealedBatch:
    return seal_batch(batch_records, "edge-1", seq, "cd" * 32, EDGE_KEY)


def body_of(count: int = 4) -> bytes:
    return format_sealed_batch(sealed_of([make_record(i) for i in range(count)]))


def generic(data: bytes) -> object:
    return canonical_batch_of(parse_sealed_batch(data))


@settings(max_examples=40, deadline=None)
@given(st.lists(records(edge="edge-1"), min_size=1, max_size=10))
def test_rfc9162_fast_and_generic_agree_on_every_valid_batch(batch: list[Record]) -> None:
    data = format_sealed_batch(sealed_of(batch))
    parsed = parse_canonical_batch(data)
    assert parsed == generic(data)
    assert parsed.leaf_hashes == tuple(leaf_hash(record_to_canonical_bytes(r)) for r in batch)
    verify_canonical_batch(parsed, RING)


@settings(max_examples=40, deadline=None)
@given(st.lists(fast_records, min_size=1, max_size=10))
def test_canonical_batches_take_the_fast_path(batch: list[Record]) -> None:
    data = format_sealed_batch(sealed_of(batch))
    fast = parse_canonical_batch_fast(data)
    assert fast is not None
    assert fast == generic(data)
    assert (
        fast.records_json.encode() == b"[" + b",".join(map(record_to_canonical_bytes, batch)) + b"]"
    )


MUTATION_BYTES = [
    b"0",
    b"9",
    b"f",
    b"g",
    b'"',
    b"\\",
    b",",
    b"}",
    b"]",
    b" ",
    b"Z",
    b":",
    b"\xc3\xa9",
]


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    data = body_of(draw(st.integers(1, 4)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "duplicate"]))
        piece = draw(st.sampled_from(MUTATION_BYTES))
        if kind == "replace":
            data = data[:at] + piece + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + piece + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + 1 :]
        else:
            end = draw(st.integers(at, min(len(data), at + 500)))
            data = data[:end] + data[at:end] + data[end:]
    return data


@settings(max_examples=300, deadline=None)
@given(mutated_bodies())
def test_fast_path_never_accepts_what_the_generic_path_refuses(data: bytes) -> None:
    fast = parse_canonical_batch_fast(data)
    try:
        reference = generic(data)
    except FormatError:
        assert fast is None
        with pytest.raises(FormatError):
            parse_canonical_batch(data)
        return
    assert fast is None or fast == reference
    assert parse_canonical_batch(data) == reference


@settings(max_examples=100, deadline=None)
@given(mutated_bodies())
def test_verification_outcome_is_the_same_on_both_paths(data: bytes) -> None:
    try:
        sealed = parse_sealed_batch(data)
    except FormatError:
        return
    outcomes: list[type[Exception] | None] = []
    verifiers: tuple[Callable[[], None], ...] = (
        lambda: verify_batch(sealed, RING),
        lambda: verify_canonical_batch(parse_canonical_batch(data), RING),
    )
    for verify in verifiers:
        try:
            verify()
            outcomes.append(None)
        except CachetError as exc:
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        (b'"ts":"2026-11-27T03:38:01', b'"ts":"2026-02-30T03:38:01', "no such day"),
        (b'"ts":"2026-11-27T03:38:01', b'"ts":"2026-11-27T24:38:01', "no such hour"),
        (b'"creator":"alice"', b'"creator":null', "manifest without its creator"),
        (b'"v":1}', b'"v":2}', "record version"),
        (b'"status":200', b'"status":200.0', "status not an integer"),
    ],
)
def test_invalid_or_non_canonical_records_leave_the_fast_path(
    old: bytes, new: bytes, why: str
) -> None:
    data = body_of(3).replace(old, new, 1)
    assert data != body_of(3), why
    assert parse_canonical_batch_fast(data) is None
    with pytest.raises(FormatError):
        parse_canonical_batch(data)


def test_valid_but_unusual_batches_are_parsed_by_the_generic_path() -> None:
    """Escaped request ids, counts >= 10**15 and non-canonical layout are still accepted."""
    unusual = [
        make_record(0, request_id='quote"back\\slash'),
        make_record(1, bytes=2**53 - 1),
    ]
    data = format_sealed_batch(sealed_of(unusual))
    assert parse_canonical_batch_fast(data) is None
    assert parse_canonical_batch(data) == generic(data)
    for old, new in (
        (b'{"header":', b'{ "header":'),
        (b'"edge":"edge-1","m', b'"edge":"edge-1" ,"m'),
    ):
        spaced = body_of(2).replace(old, new, 1)
        assert parse_canonical_batch_fast(spaced) is None
        parsed = parse_canonical_batch(spaced)
        assert parsed == generic(spaced)
        verify_canonical_batch(parsed, RING)


def test_rfc9162_verify_batch_leaves_refuses_wrong_count_edge_root_and_span() -> None:
    sealed = sealed_of([make_record(i) for i in range(3)])
    leaves = [leaf_hash(record_to_canonical_bytes(r)) for r in sealed.records]
    edges = [r.edge for r in sealed.records]
    stamps = [r.ts for r in sealed.records]
    h, sig = sealed.header, sealed.signature
    verify_batch_leaves(h, sig, leaves, edges, stamps, RING)
    for bad in (
        (leaves[:2], edges[:2], stamps[:2]),
        (leaves, ["edge-2", *edges[1:]], stamps),
        (leaves[::-1], edges, stamps),
        (leaves, edges, ["2026-11-27T03:37:59.999Z", *stamps[1:]]),
    ):
        with pytest.raises(RootMismatchError):
            verify_batch_leaves(h, sig, *bad, RING)
    with pytest.raises(ValueError, match="one edge and one ts"):
        verify_batch_leaves(h, sig, leaves, edges[:2], stamps, RING)


def test_match_canonical_record_matches_exactly_the_canonical_bytes() -> None:
    data = record_to_canonical_bytes(
        make_record(7, trace_id="1" * 32, cache_key_hash="sha256:" + "e" * 64)
    )
    match = match_canonical_record(b"xx" + data, 2)
    assert match is not None and match.end() == len(data) + 2
    assert match_canonical_record(data.replace(b'"bytes"', b'"bytes" ')) is None


# Visible ASCII but '"' and '\\' (RFC 8785 leaves it unescaped), rich in JSON punctuation: the
# fast path validates and reads a batch's records array in one piece, so no request id may be
# taken for a record boundary.
punctuated_ids = st.text(st.sampled_from(list("{}[],:v1bytes-")), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(fast_records, punctuated_ids, st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_request_ids_with_json_punctuation_take_the_fast_path(
    drawn: list[tuple[Record, str, bool]],
) -> None:
    batch = [
        replace(
            record,
            request_id=rid,
            trace_id="0" * 31 + "1" if traced else None,
            cache_key_hash="sha256:" + "e" * 64 if traced else None,
        )
        for record, rid, traced in drawn
    ]
    data = format_sealed_batch(sealed_of(batch))
    fast = parse_canonical_batch_fast(data)
    assert fast is not None
    assert fast == generic(data)
    assert fast.leaf_hashes == tuple(leaf_hash(record_to_canonical_bytes(r)) for r in batch)
    verify_canonical_batch(fast, RING)


@pytest.mark.parametrize("request_id", ["a},{b", "},{bytes:", "]", "[", "}", "{", ",", "x]y[z"])
@pytest.mark.parametrize("count", [1, 3])
def test_rfc9162_fast_path_leaf_hashes_with_punctuated_request_ids(
    request_id: str, count: int
) -> None:
    batch = [make_record(i, request_id=f"{request_id}{i}") for i in range(count)]
    data = format_sealed_batch(sealed_of(batch))
    fast = parse_canonical_batch_fast(data)
    assert fast is not None
    assert fast == generic(data)
    assert fast.leaf_hashes == tuple(leaf_hash(record_to_canonical_bytes(r)) for r in batch)


def test_optional_trace_id_and_cache_key_hash_take_the_fast_path() -> None:
    batch = [
        make_record(0, trace_id="1" * 32),
        make_record(1, cache_key_hash="sha256:" + "e" * 64),
        make_record(2, trace_id="2" * 32, cache_key_hash="sha256:" + "f" * 64),
        make_record(3),
    ]
    data = format_sealed_batch(sealed_of(batch))
    fast = parse_canonical_batch_fast(data)
    assert fast is not None
    assert fast == generic(data)
    assert fast.leaf_hashes == tuple(leaf_hash(record_to_canonical_bytes(r)) for r in batch)


@pytest.mark.parametrize("index", [0, 2, 4])
def test_one_record_off_the_calendar_refuses_the_whole_batch(index: int) -> None:
    batch = [make_record(i) for i in range(5)]
    batch[index] = replace(batch[index], ts="2026-11-27T05:00:00.000Z")
    data = format_sealed_batch(sealed_of(batch))
    assert data.count(b'"ts":"2026-11-27T05:00:00.000Z"') == 1
    data = data.replace(b'"ts":"2026-11-27T05', b'"ts":"2026-02-29T05')  # 2026 is no leap year
    assert parse_canonical_batch_fast(data) is None
    with pytest.raises(FormatError):
        parse_canonical_batch(data)


def test_uppercase_hex_content_id_is_left_to_the_generic_path() -> None:
    data = format_sealed_batch(
        sealed_of([make_record(i, content_id="sha256:" + "ab" * 32) for i in range(3)])
    )
    lower = b'"content_id":"sha256:' + b"ab" * 32
    mutated = data.replace(lower, b'"content_id":"sha256:' + b"AB" * 32, 1)
    assert mutated.count(b"AB" * 32) == 1
    assert parse_canonical_batch_fast(mutated) is None
    with pytest.raises(FormatError):
        parse_canonical_batch(mutated)


@pytest.mark.parametrize(
    ("count", "origin_count", "fast"),
    [(10**15 - 1, 10**15 - 1, True), (10**15, 0, False), (0, 10**15, False)],
)
def test_counts_from_10_pow_15_take_the_generic_path(
    count: int, origin_count: int, fast: bool
) -> None:
    batch = [make_record(0), make_record(1, bytes=count, origin_bytes=origin_count)]
    data = format_sealed_batch(sealed_of(batch))
    assert (parse_canonical_batch_fast(data) is not None) is fast
    assert parse_canonical_batch(data) == generic(data)


def test_fast_path_keeps_max_batch_records(monkeypatch: pytest.MonkeyPatch) -> None:
    at_most = body_of(3)
    # a header within the limit (count 3) over 4 records: the records count is checked itself
    head = at_most.partition(b',"records":[')[0]
    over = head + b',"records":[' + body_of(4).partition(b',"records":[')[2]
    monkeypatch.setattr(batches_module, "MAX_BATCH_RECORDS", 3)
    assert parse_canonical_batch_fast(at_most) is not None
    assert parse_canonical_batch_fast(over) is None
    with pytest.raises(FormatError):
        parse_canonical_batch(over)


# -- a batch's records as the coordinator stores them (records_json, kept once) --------------


@settings(max_examples=40, deadline=None)
@given(st.lists(records(edge="edge-1"), min_size=1, max_size=10))
def test_stored_records_read_back_as_ingest_parsed_them(batch: list[Record]) -> None:
    """Billing, receipts and the admin read a batch's records from the JSON ingest stored:
    the fields are the ones ingest parsed, on the fast path and the generic one (escaped
    request ids, counts of 10^15 and more), from text or bytes."""
    parsed = parse_canonical_batch(format_sealed_batch(sealed_of(batch)))
    assert stored_record_fields(parsed.records_json) == parsed.records
    assert stored_record_fields(parsed.records_json.encode()) == parsed.records
    assert [f.request_id for f in parsed.records] == [r.request_id for r in batch]


def test_stored_records_that_are_not_valid_records_are_refused() -> None:
    """A damaged stored array is an error, never a silently shorter list of records."""
    good = parse_canonical_batch(body_of(2)).records_json
    assert stored_record_fields("[]") == ()
    for damaged in ("", "{}", "[1]", "not json", good[:-1], good.replace('"GET"', '"G ET"'),
                    good.replace('"status":200', '"status":"200"')):  # fmt: skip
        with pytest.raises(FormatError):
            stored_record_fields(damaged)
