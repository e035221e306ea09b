"""The compiled records check (provenance/_fastrecords.c) against the regular expression.

``scan_records`` must accept exactly the runs of records that ``match_canonical_record`` (the
RFC 8785 canonical form of a valid record, §3.2) accepts record by record, with a manifest only
beside a creator and a content id, and must return the same bytes and fields. The calendar
check of ``ts`` (RFC 3339 §5.7) stays the caller's, once per second it reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import fastrecords
from provenance.merkle import MerkleTree, leaf_hash, root_from_leaf_blob
from provenance.records import (
    CANONICAL_GROUPS,
    Record,
    RecordFields,
    match_canonical_record,
    record_to_canonical_bytes,
)

from .strategies import make_record, mutate, records

EDGE = "edge-1"
ALL = (fastrecords.WANT_RECORDS | fastrecords.WANT_STAMPS | fastrecords.WANT_FIELDS
       | fastrecords.WANT_LEAVES)  # fmt: skip
INTEGER_GROUPS = {"bytes", "origin_bytes", "status"}

scan = fastrecords.scan_records
needs_module = pytest.mark.skipif(scan is None, reason="the compiled module is not built")


def test_the_compiled_module_is_built() -> None:
    """setup.py builds it as optional (a machine without a C compiler still installs), so
    nothing else would notice a build that silently fell back to the regular expressions."""
    assert scan is not None, "provenance/_fastrecords.c was not built: is a C compiler there?"


def test_the_environment_switch_turns_it_off_and_nothing_else_does() -> None:
    run, root, leaves = fastrecords.scan_spool_run, fastrecords.merkle_root, fastrecords.leaf_hashes
    try:
        fastrecords.use_environment({"CACHET_PURE_PYTHON": "0"})
        assert fastrecords.scan_records is scan and fastrecords.scan_spool_run is run
        fastrecords.use_environment({"CACHET_PURE_PYTHON": "1"})
        assert fastrecords.scan_records is None and fastrecords.scan_spool_run is None
    finally:
        fastrecords.scan_records, fastrecords.scan_spool_run = scan, run
        fastrecords.merkle_root, fastrecords.leaf_hashes = root, leaves


Expected = tuple[list[bytes], list[bytes], set[bytes], list[RecordFields], list[bytes]]


def reference(data: bytes, separator: bytes, edge: str | None) -> Expected | None:
    """Record by record with the regular expression; None unless all are valid."""
    found: list[bytes] = []
    fields: list[RecordFields] = []
    position = 0
    while True:
        match = match_canonical_record(data, position)
        if match is None:
            return None
        values = dict(zip(CANONICAL_GROUPS, match.groups(), strict=True))
        text = {k: None if v is None else v.decode() for k, v in values.items()}
        if text["manifest"] is not None and (text["creator"] is None or text["content_id"] is None):
            return None
        if edge is not None and text["edge"] != edge:
            return None
        typed = {k: int(v) if k in INTEGER_GROUPS and v is not None else v for k, v in text.items()}
        fields.append(RecordFields(**typed))  # type: ignore[arg-type]
        found.append(data[position : match.end()])
        position = match.end()
        if position == len(data):
            break
        if data[position : position + 1] != separator:
            return None
        position += 1
    stamps = [f.ts.encode() for f in fields]
    return found, stamps, {s[:19] for s in stamps}, fields, [leaf_hash(r) for r in found]


def compiled(data: bytes, separator: bytes, edge: str | None) -> Expected | None:
    assert scan is not None
    result = scan(data, 0, len(data), separator[0], None if edge is None else edge.encode(), ALL,
                  RecordFields)  # fmt: skip
    if result is None:
        return None
    found, stamps, seconds, fields, leaves = result
    assert found is not None and stamps is not None and fields is not None and leaves is not None
    assert all(type(f) is RecordFields for f in fields)
    return found, stamps, set(seconds), fields, leaves


def fast_form(record: Record) -> bool:
    return (
        max(record.bytes, record.origin_bytes) < 10**15
        and '"' not in record.request_id
        and "\\" not in record.request_id
    )


separators = st.sampled_from([b"\n", b","])
edges = st.sampled_from([None, EDGE])


@needs_module
@settings(max_examples=200, deadline=None)
@given(st.lists(records(edge=EDGE).filter(fast_form), min_size=1, max_size=5), separators, edges)
def test_valid_records_are_accepted_with_their_bytes_stamps_and_fields(
    batch: list[Record], separator: bytes, edge: str | None
) -> None:
    data = separator.join(record_to_canonical_bytes(r) for r in batch)
    got = compiled(data, separator, edge)
    assert got is not None
    assert got == reference(data, separator, edge)
    assert got[3] == [
        RecordFields(r.request_id, r.edge, r.ts, r.upstream_of, r.method, r.status, r.cache,
                     r.tier, r.bytes, r.origin_bytes, r.content_id, r.creator, r.manifest,
                     r.sample_rate, r.use)
        for r in batch
    ]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A valid run with a few bytes replaced, deleted or inserted: some still valid."""
    separator = draw(separators)
    batch = draw(st.lists(records(edge=draw(st.sampled_from([EDGE, "e2"]))), min_size=1,
                          max_size=3))  # fmt: skip
    raw = bytearray(separator.join(record_to_canonical_bytes(r) for r in batch))
    return mutate(draw, raw), separator


@needs_module
@settings(max_examples=600, deadline=None)
@given(mutated(), edges)
def test_any_mutation_gets_the_same_answer_as_the_regular_expression(
    case: tuple[bytes, bytes], edge: str | None
) -> None:
    data, separator = case
    assert compiled(data, separator, edge) == reference(data, separator, edge)


@needs_module
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), separators)
def test_arbitrary_bytes_get_the_same_answer(data: bytes, separator: bytes) -> None:
    assert compiled(data, separator, None) == reference(data, separator, None)


def one(**overrides: object) -> bytes:
    return record_to_canonical_bytes(make_record(3, EDGE, **overrides))


def edited(old: bytes, new: bytes, **overrides: object) -> bytes:
    record = one(**overrides)
    assert old in record
    return record.replace(old, new, 1)


HASH = b"sha256:" + b"a" * 64


@needs_module
@pytest.mark.parametrize(
    ("data", "valid"),
    [
        (one(bytes=10**15 - 1), True),  # the fast form's largest count (15 digits)
        (one(bytes=10**15), False),  # valid, but the generic parser's
        (edited(b'"bytes":', b'"bytes":0', bytes=7), False),  # a leading zero
        (one(bytes=0, origin_bytes=0), True),
        (one(status=100), True),
        (one(status=599), True),
        (edited(b'"status":200', b'"status":600'), False),
        (edited(b'"status":200', b'"status":099'), False),
        (edited(b'"status":200', b'"status":2000'), False),
        (one(method="M" * 32), True),
        (edited(b'"method":"GET"', b'"method":"' + b"M" * 33 + b'"'), False),
        (edited(b'"method":"GET"', b'"method":""'), False),
        (edited(b'"method":"GET"', b'"method":"G(T"'), False),  # not a tchar
        (one(request_id="r" * 128), True),
        (edited(b'"request_id":"req-000003"', b'"request_id":"' + b"r" * 129 + b'"'), False),
        (one(request_id="#[]{}~!"), True),
        (one(creator="c" * 64), True),
        (edited(b'"creator":"alice"', b'"creator":"' + b"c" * 65 + b'"'), False),
        (edited(b'"creator":"alice"', b'"creator":"-alice"'), False),  # starts alphanumeric
        (edited(b'"creator":"alice"', b'"creator":""'), False),
        (one(sample_rate="0.000001"), True),
        (one(sample_rate="0.1"), True),
        (one(sample_rate="0"), True),
        (edited(b'"sample_rate":"1"', b'"sample_rate":"0.0000001"'), False),  # 7 decimals
        (edited(b'"sample_rate":"1"', b'"sample_rate":"0.10"'), False),  # not canonical
        (edited(b'"sample_rate":"1"', b'"sample_rate":"1.0"'), False),
        (edited(b'"sample_rate":"1"', b'"sample_rate":"0."'), False),
        (edited(b'"sample_rate":"1"', b'"sample_rate":"2"'), False),
        (one(trace_id="0" * 31 + "1"), True),
        (edited(b'"tier":"memory",', b'"tier":"memory","trace_id":"' + b"0" * 32 + b'",'), False),
        (edited(b'"tier":"memory",', b'"tier":"memory","trace_id":"' + b"A" * 32 + b'",'), False),
        (one(cache_key_hash="sha256:" + "b" * 64), True),
        (
            edited(
                b'"cache":"hit",', b'"cache":"hit","cache_key_hash":"sha256:' + b"B" * 64 + b'",'
            ),
            False,
        ),
        (one(cache="revalidated", tier="none", use="training"), True),
        (edited(b'"cache":"hit"', b'"cache":"hits"'), False),
        (edited(b'"tier":"memory"', b'"tier":"Memory"'), False),
        (one(upstream_of="edge-0"), True),
        (edited(b'"upstream_of":null', b'"upstream_of":"-x"'), False),
        (one(creator=None, manifest=None), True),
        (edited(b'"creator":"alice"', b'"creator":null'), False),  # a manifest needs both
        (edited(b'"content_id":"sha256:' + b"0" * 63 + b'3"', b'"content_id":null'), False),
        (one(content_id=None, manifest=None), True),
        (
            edited(
                b'"manifest":null', b'"manifest":"' + HASH + b'"', content_id=None, manifest=None
            ),
            False,
        ),
        (edited(b"T03:38:03.003Z", b"T03:38:03.03Z"), False),
        (edited(b"T03:38:03.003Z", b"T99:99:99.003Z"), True),  # the shape only: see below
        (edited(b'"v":1}', b'"v":2}'), False),
        (one() + b" ", False),
        (b"", False),
    ],
)
def test_each_field_is_checked_as_the_contract_says(data: bytes, valid: bool) -> None:
    """Boundaries of every field's grammar (provenance/records.py's table). A ts that only has
    the right shape is accepted here: the caller checks the calendar (RFC 3339 §5.7) once per
    distinct second, which this reports."""
    got = compiled(data, b",", None)
    assert (got is not None) == valid
    assert got == reference(data, b",", None)


@needs_module
def test_seconds_are_reported_for_the_callers_calendar_check() -> None:
    data = b"\n".join(
        edited(b"2026-11-27T03:38:03.003Z", ts, request_id=f"r{n}")
        for n, ts in enumerate([b"2026-11-27T03:38:03.003Z", b"2026-11-27T03:38:03.999Z",
                                b"2026-02-30T00:00:00.000Z", b"2026-11-27T03:38:03.004Z"])
    )  # fmt: skip
    got = compiled(data, b"\n", EDGE)
    assert got is not None
    assert got[2] == {b"2026-11-27T03:38:03", b"2026-02-30T00:00:00"}


@needs_module
def test_another_edges_record_or_separator_fails_the_whole_run() -> None:
    assert scan is not None
    good = one()
    assert compiled(good + b"\n" + one(), b"\n", EDGE) is not None
    assert compiled(good + b"\n" + record_to_canonical_bytes(make_record(4, "e2")), b"\n",
                    EDGE) is None  # fmt: skip
    assert compiled(good + b"," + good, b"\n", None) is None
    assert compiled(good + b"\n", b"\n", None) is None
    assert compiled(b"\n" + good, b"\n", None) is None


@needs_module
def test_a_slice_of_a_larger_buffer_and_what_is_asked_for() -> None:
    assert scan is not None
    good = one()
    data = b"[" + good + b"," + good + b"]"
    result = scan(memoryview(data), 1, len(data) - 1, ord(","), None, 0, None)
    assert result == (None, None, [b"2026-11-27T03:38:03"], None, None)
    result = scan(data, 1, len(data) - 1, ord(","), None, fastrecords.WANT_FIELDS, None)
    assert result is not None and result[3] is not None
    assert [type(f) for f in result[3]] == [tuple, tuple]
    assert result[3][0] == tuple(RecordFields(*result[3][0]))
    assert scan(data, 0, len(data), ord(","), None, 0, None) is None  # the brackets


@needs_module
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"{}", 0, 3, 10, None, 0, None), ValueError),  # end past the data
        ((b"{}", 2, 1, 10, None, 0, None), ValueError),  # start after end
        ((b"{}", -1, 1, 10, None, 0, None), ValueError),
        ((b"{}", 0, 2, 256, None, 0, None), ValueError),  # not a byte
        ((b"{}", 0, 2, 10, "edge-1", 0, None), TypeError),  # edge as str
        ((b"{}", 0, 2, 10, None, 0, list), TypeError),  # not a tuple type
        (("{}", 0, 2, 10, None, 0, None), TypeError),  # str, not bytes
        ((b"{}", 0, 2, 10, None, 0), TypeError),  # six arguments
    ],
)
def test_bad_arguments_raise_instead_of_reading_out_of_bounds(
    args: tuple[object, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        scan(*args)  # type: ignore[arg-type, misc]


merkle_root = fastrecords.merkle_root
set_lanes = fastrecords.set_sha256_lanes
set_ni = fastrecords.set_sha256_ni
set_ni_pairs = fastrecords.set_sha256_ni_pairs


def available(switch: Callable[[bool], bool] | None) -> bool:
    """Whether this CPU runs the hashing path ``switch`` turns on (``set_sha256_lanes``: AVX2
    on x86-64; ``set_sha256_ni``: the SHA extensions)."""
    assert switch is not None
    try:
        previous = switch(True)
    except ValueError:
        return False
    switch(previous)
    return True


def lanes_available() -> bool:
    return available(set_lanes)


def ni_available() -> bool:
    return available(set_ni)


def hashings() -> Iterator[str]:
    """Run the caller's checks once per hashing path the module has on this CPU: OpenSSL one
    message at a time, eight AVX2 lanes (``_sha256_lanes.h``) and the SHA extensions
    (``_sha256_ni.h``) one message at a time and two side by side; import picks by the CPU,
    so each path is tested whichever that is."""
    assert set_lanes is not None and set_ni is not None and set_ni_pairs is not None
    previous, previous_ni, previous_pairs = set_lanes(False), set_ni(False), set_ni_pairs(False)
    try:
        yield "openssl"
        if lanes_available():
            set_lanes(True)
            yield "lanes"
            set_lanes(False)
        if ni_available():
            set_ni(True)
            yield "sha-ni"
            set_ni_pairs(True)
            yield "sha-ni pairs"
    finally:
        set_lanes(previous)
        set_ni(previous_ni)
        set_ni_pairs(previous_pairs)


@needs_module
@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_the_compiled_root_is_rfc9162_mth(leaves: list[bytes]) -> None:
    """RFC 9162 §2.1.1 MTH: MerkleTree is itself checked against the RFC's recursive
    definition (test_merkle.py)."""
    assert merkle_root is not None
    for _ in hashings():
        assert merkle_root(leaves) == MerkleTree(leaves).root()
        leaves_as_bytearrays = tuple(bytearray(leaf) for leaf in leaves)
        assert merkle_root(leaves_as_bytearrays) == MerkleTree(leaves).root()  # type: ignore[arg-type]
        # Laid end to end in one object, as the sealer keeps them.
        blob = b"".join(leaves)
        for laid in (blob, bytearray(blob), memoryview(b"x" + blob)[1:]):
            assert merkle_root(laid) == MerkleTree(leaves).root()
            assert root_from_leaf_blob(laid) == MerkleTree(leaves).root()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40))
def test_the_pure_root_of_a_blob_is_rfc9162_mth(leaves: list[bytes]) -> None:
    compiled, fastrecords.merkle_root = fastrecords.merkle_root, None
    try:
        assert root_from_leaf_blob(b"".join(leaves)) == MerkleTree(leaves).root()
    finally:
        fastrecords.merkle_root = compiled


@pytest.mark.parametrize("size", [1, 31, 33, 65])
def test_a_blob_of_partial_leaf_hashes_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        root_from_leaf_blob(b"a" * size)
    if merkle_root is not None:
        with pytest.raises(ValueError, match="32 bytes"):
            merkle_root(b"a" * size)


STAMPS = st.lists(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=150, deadline=None)
@given(STAMPS)
def test_stamp_bounds_are_the_earliest_and_latest_ts(stamps: list[str]) -> None:
    """A batch header's first_ts and last_ts (ARCHITECTURE.md): the least and greatest ts,
    compiled and pure alike."""
    blob = "".join(stamps).encode()
    expected = (min(stamps).encode(), max(stamps).encode())
    assert fastrecords._stamp_bounds(blob) == expected
    assert fastrecords.stamp_bounds(bytearray(blob)) == expected


@pytest.mark.parametrize("blob", [b"", b"2026-11-28T06:00:00.000Z"[:23], b"x" * 25])
def test_stamp_bounds_refuse_what_is_not_whole_ts_values(blob: bytes) -> None:
    for bounds in (fastrecords._stamp_bounds, fastrecords.stamp_bounds):
        with pytest.raises(ValueError, match="24-byte"):
            bounds(blob)


@needs_module
@pytest.mark.parametrize("size", [1, 2, 3, 4, 9, 17, 1000, 1023, 1024, 1025, 4097])
def test_the_compiled_root_at_batch_sizes(size: int) -> None:
    assert merkle_root is not None
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    for _ in hashings():
        assert merkle_root(leaves) == MerkleTree(leaves).root()


compiled_leaf_hashes = fastrecords.leaf_hashes


@needs_module
def test_leaf_hashes_at_every_length_across_block_boundaries() -> None:
    """RFC 9162 §2.1.1 leaf hashes against hashlib: FIPS 180-4 §5.1.1 padding puts the length
    in the same block as the last byte up to 55 bytes of a block and needs one more block
    after; with the 0x00 prefix, every entry length 0-300 covers both sides of 4 boundaries,
    in lanes holding messages of different lengths at once."""
    assert compiled_leaf_hashes is not None
    entries = [bytes((i * 7 + j) % 256 for j in range(i)) for i in range(301)]
    for _ in hashings():
        assert compiled_leaf_hashes(entries) == [leaf_hash(entry) for entry in entries]
        for size in range(12):  # fewer messages than lanes, and lanes left idle at the end
            assert compiled_leaf_hashes(entries[:size]) == [leaf_hash(e) for e in entries[:size]]


@needs_module
def test_leaf_hashes_either_side_of_the_sha_extensions_buffer() -> None:
    """_sha256_ni.h pads a message in one 2048-byte buffer and leaves longer ones to OpenSSL:
    entries of 2038 bytes (with the prefix and padding, 32 blocks) and 2039 (33) both hash
    right, as do runs of long and short ones mixed."""
    assert compiled_leaf_hashes is not None
    entries = [bytes((i * 13 + j) % 256 for j in range(i)) for i in range(2028, 2050)]
    entries += [b"x" * 5000, b"", b"y" * 2038, b"z" * 70_000]
    for _ in hashings():
        assert compiled_leaf_hashes(entries) == [leaf_hash(entry) for entry in entries]


@needs_module
@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=1200), max_size=40))
def test_leaf_hashes_of_any_entries(entries: list[bytes]) -> None:
    assert compiled_leaf_hashes is not None
    for _ in hashings():
        assert compiled_leaf_hashes(entries) == [leaf_hash(entry) for entry in entries]


@needs_module
def test_scanned_leaves_are_the_same_on_both_hashing_paths() -> None:
    batch = [one(request_id=f"r{i}", bytes=10**i) for i in range(15)]
    data = b"\n".join(batch)
    assert scan is not None
    for _ in hashings():
        scanned = scan(data, 0, len(data), ord("\n"), None, fastrecords.WANT_LEAVES, None)
        assert scanned is not None
        assert scanned[4] == [leaf_hash(record) for record in batch]


@needs_module
def test_leaf_hashes_refuse_what_is_not_bytes() -> None:
    assert compiled_leaf_hashes is not None
    for bad in ([b"ok", "text"], [bytearray(b"x")], 42):
        with pytest.raises(TypeError):
            compiled_leaf_hashes(bad)  # type: ignore[arg-type]


@needs_module
@pytest.mark.parametrize(
    ("setter", "variable", "available", "missing"),
    [
        ("set_sha256_lanes", "CACHET_SHA256_LANES", lanes_available, "AVX2"),
        ("set_sha256_ni", "CACHET_SHA256_NI", ni_available, "SHA extensions"),
    ],
)
def test_the_hashing_switches_report_and_the_environment_sets_them(
    setter: str, variable: str, available: Callable[[], bool], missing: str
) -> None:
    switch = getattr(fastrecords, setter)
    assert switch is not None
    previous = switch(False)
    try:
        assert switch(False) is False
        fastrecords.use_environment({variable: "0"})
        assert switch(False) is False
        if available():
            fastrecords.use_environment({variable: "1"})
            assert switch(False) is True
        else:
            with pytest.raises(ValueError, match=missing):
                switch(True)
    finally:
        switch(previous)


@needs_module
@pytest.mark.parametrize(
    ("leaves", "error"),
    [([b"a" * 31], ValueError), ([b"a" * 32, None], ValueError), (42, TypeError)],
)
def test_the_compiled_root_refuses_what_is_not_a_leaf_hash(
    leaves: object, error: type[Exception]
) -> None:
    assert merkle_root is not None
    with pytest.raises(error):
        merkle_root(leaves)  # type: ignore[arg-type]
