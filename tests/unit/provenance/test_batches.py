"""The Batch contract (ARCHITECTURE.md "Batch"): sealing, verification, the per-edge chain."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.batches import (
    ZERO_HASH_HEX,
    BatchHeader,
    ChainHead,
    SealedBatch,
    batch_log_leaf_hash,
    chain_head,
    format_sealed_batch,
    header_hash,
    parse_sealed_batch,
    seal_batch,
    seal_header,
    verify_batch,
    verify_chain,
)
from provenance.canonical_json import canonicalize, parse
from provenance.errors import (
    ChainError,
    FormatError,
    RootMismatchError,
    SignatureError,
    UnknownKeyError,
)
from provenance.keys import KeyRing, generate_signing_key
from provenance.merkle import leaf_hash, root_from_leaf_hashes
from provenance.records import Record, record_leaf_hash

from .strategies import make_record, records

EDGE_KEY = generate_signing_key("edge-1", b"\x11" * 32)
RING = KeyRing([EDGE_KEY.verifier])


def sealed_batch(count: int = 5, seq: int = 0, prev: str = ZERO_HASH_HEX) -> SealedBatch:
    return seal_batch([make_record(i) for i in range(count)], "edge-1", seq, prev, EDGE_KEY)


@settings(max_examples=40, deadline=None)
@given(st.lists(records(edge="edge-1"), min_size=1, max_size=12))
def test_seal_verify_and_json_round_trip(batch_records: list[Record]) -> None:
    sealed = seal_batch(batch_records, "edge-1", 3, "ab" * 32, EDGE_KEY)
    verify_batch(sealed, RING)
    assert (
        sealed.header.root
        == root_from_leaf_hashes([record_leaf_hash(r) for r in batch_records]).hex()
    )
    assert sealed.header.first_ts == min(r.ts for r in batch_records)
    data = format_sealed_batch(sealed)
    assert canonicalize(parse(data)) == data  # the wire form is canonical JSON
    assert parse_sealed_batch(data) == sealed


def test_header_hash_is_sha256_of_canonical_header() -> None:
    header = sealed_batch().header
    import hashlib

    assert (
        header_hash(header) == hashlib.sha256(canonicalize(dataclasses.asdict(header))).hexdigest()
    )


def test_batch_log_leaf_is_rfc9162_leaf_of_signed_header() -> None:
    sealed = sealed_batch()
    obj = json.loads(format_sealed_batch(sealed))
    signed = canonicalize({"header": obj["header"], "signature": obj["signature"]})
    assert batch_log_leaf_hash(sealed.header, sealed.signature) == leaf_hash(signed)


def test_verify_batch_rejects_forgeries() -> None:
    sealed = sealed_batch()
    stranger = generate_signing_key("edge-1", b"\x12" * 32)
    with pytest.raises(UnknownKeyError):
        verify_batch(seal_batch(list(sealed.records), "edge-1", 0, ZERO_HASH_HEX, stranger), RING)
    with pytest.raises(SignatureError):
        verify_batch(
            dataclasses.replace(sealed, header=dataclasses.replace(sealed.header, seq=1)), RING
        )
    swapped = dataclasses.replace(sealed, records=(make_record(9), *sealed.records[1:]))
    with pytest.raises(RootMismatchError):
        verify_batch(swapped, RING)
    with pytest.raises(RootMismatchError):
        verify_batch(dataclasses.replace(sealed, records=sealed.records[:-1]), RING)
    reordered = dataclasses.replace(sealed, records=sealed.records[::-1])
    with pytest.raises(RootMismatchError):
        verify_batch(reordered, RING)


def test_records_of_another_edge_are_refused() -> None:
    with pytest.raises(ValueError, match="edge"):
        seal_batch([make_record(0, edge="edge-2")], "edge-1", 0, ZERO_HASH_HEX, EDGE_KEY)
    with pytest.raises(ValueError, match="edge id"):
        seal_batch([make_record(0, edge="edge-2")], "edge-2", 0, ZERO_HASH_HEX, EDGE_KEY)
    with pytest.raises(ValueError, match="at least one"):
        seal_batch([], "edge-1", 0, ZERO_HASH_HEX, EDGE_KEY)


def test_chain_links_detect_gap_fork_and_replay() -> None:
    first = sealed_batch(seq=0)
    verify_chain(None, first.header)
    second = sealed_batch(seq=1, prev=header_hash(first.header))
    head = chain_head(first.header)
    verify_chain(head, second.header)
    with pytest.raises(ChainError, match="first batch"):
        verify_chain(None, second.header)
    with pytest.raises(ChainError, match="gap"):
        verify_chain(head, sealed_batch(seq=2, prev=header_hash(first.header)).header)
    with pytest.raises(ChainError, match="fork"):
        verify_chain(head, sealed_batch(seq=1, prev="cd" * 32).header)
    with pytest.raises(ChainError, match="replayed"):
        verify_chain(chain_head(second.header), second.header)


def test_header_validation() -> None:
    header = sealed_batch().header
    for field, value in [
        ("key_id", "XYZ"),
        ("seq", -1),
        ("prev", "00"),
        ("count", 0),
        ("root", "g" * 64),
        ("first_ts", "yesterday"),
        ("last_ts", "2000-01-01T00:00:00.000Z"),
    ]:
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(header, **{field: value})  # type: ignore[arg-type]
    assert isinstance(header, BatchHeader)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("signature"),
        lambda o: o.update(signature="AAAA"),
        lambda o: o.update(records={}),
        lambda o: o["header"].update(count="5"),
        lambda o: o["header"].update(extra=1),
        lambda o: o["records"][0].update(status=1000),
        lambda o: o.update(extra=True),
    ],
)
def test_parse_sealed_batch_format_errors(mutate) -> None:
    obj = json.loads(format_sealed_batch(sealed_batch()))
    mutate(obj)
    with pytest.raises(FormatError):
        parse_sealed_batch(json.dumps(obj).encode())


def test_parse_sealed_batch_truncated_byte_by_byte_only_format_error() -> None:
    data = format_sealed_batch(sealed_batch(count=2))
    for end in range(len(data)):
        with pytest.raises(FormatError):
            parse_sealed_batch(data[:end])


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=80))
def test_parse_sealed_batch_arbitrary_bytes_only_format_error(data: bytes) -> None:
    for end in range(len(data) + 1):
        try:
            parse_sealed_batch(data[:end])
        except FormatError:
            pass


def test_signed_header_that_misstates_its_records_is_refused() -> None:
    """A correctly signed header must still match its records' edge and timestamp span."""
    records = [make_record(i) for i in range(3)]
    leaves = [record_leaf_hash(r) for r in records]
    late = "2030-01-01T00:00:00.000Z"
    header, signature = seal_header(
        root_from_leaf_hashes(leaves), len(leaves), records[0].ts, late, "edge-1", 0,
        ZERO_HASH_HEX, EDGE_KEY,
    )  # fmt: skip
    with pytest.raises(RootMismatchError, match="first_ts/last_ts"):
        verify_batch(SealedBatch(header, signature, tuple(records)), RING)
    sealed = sealed_batch(count=3)
    foreign = (*sealed.records[:2], dataclasses.replace(sealed.records[2], edge="edge-2"))
    with pytest.raises(RootMismatchError, match="another edge"):
        verify_batch(dataclasses.replace(sealed, records=foreign), RING)


def test_verify_chain_misuse_with_another_edges_head() -> None:
    header = sealed_batch(seq=1, prev="ab" * 32).header
    with pytest.raises(ValueError, match="another edge"):
        verify_chain(ChainHead("edge-2", 0, "ab" * 32), header)


@pytest.mark.parametrize("body", [b'{"header":1,"records":[],"signature":5}', b"[]", b"{}"])
def test_parse_sealed_batch_structure(body: bytes) -> None:
    with pytest.raises(FormatError):
        parse_sealed_batch(body)
