"""Receipts: offline verification of one record against a signed checkpoint."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.batches import ZERO_HASH_HEX, batch_log_leaf_hash, header_hash, seal_batch
from provenance.checkpoint import Checkpoint, format_checkpoint
from provenance.errors import (
    FormatError,
    ProofFormatError,
    RootMismatchError,
    SignatureError,
    UnknownKeyError,
    VerificationError,
)
from provenance.keys import KeyRing, generate_signing_key
from provenance.merkle import MerkleTree, leaf_hash
from provenance.receipts import Receipt, format_receipt, parse_receipt, verify_receipt
from provenance.records import record_leaf_hash
from provenance.signed_note import sign_note

from .strategies import make_record

EDGE_KEY = generate_signing_key("edge-1", b"\x31" * 32)
LOG_KEY = generate_signing_key("log.example", b"\x32" * 32)
ORIGIN = "log.example"


def build_receipt(batch_index: int = 2, record_index: int = 3) -> Receipt:
    """A log of 5 batches of 7 records each; the receipt of one record."""
    batches, prev = [], ZERO_HASH_HEX
    for seq in range(5):
        records = [make_record(seq * 10 + i) for i in range(7)]
        sealed = seal_batch(records, "edge-1", seq, prev, EDGE_KEY)
        prev = header_hash(sealed.header)
        batches.append(sealed)
    log = MerkleTree([batch_log_leaf_hash(b.header, b.signature) for b in batches])
    note = sign_note(format_checkpoint(Checkpoint(ORIGIN, log.size, log.root())), [LOG_KEY])
    sealed = batches[batch_index]
    in_batch = MerkleTree([record_leaf_hash(r) for r in sealed.records])
    return Receipt(
        record=sealed.records[record_index],
        header=sealed.header,
        signature=sealed.signature,
        record_index=record_index,
        record_proof=tuple(in_batch.inclusion_proof(record_index)),
        batch_index=batch_index,
        batch_proof=tuple(log.inclusion_proof(batch_index)),
        checkpoint=note,
    )


RING = KeyRing([EDGE_KEY.verifier])


def test_valid_receipt_verifies_offline() -> None:
    receipt = build_receipt()
    checkpoint = verify_receipt(receipt, LOG_KEY.verifier, RING, expected_origin=ORIGIN)
    assert checkpoint.size == 5
    verify_receipt(receipt, LOG_KEY.verifier)  # without edge keys: the log vouches


def test_json_round_trip() -> None:
    receipt = build_receipt(0, 0)
    assert parse_receipt(format_receipt(receipt)) == receipt


def test_every_kind_of_tampering_is_caught() -> None:
    receipt = build_receipt()
    other_record = make_record(99)
    cases: list[tuple[Receipt, type[Exception]]] = [
        (dataclasses.replace(receipt, record=other_record), RootMismatchError),
        (dataclasses.replace(receipt, record_index=4), RootMismatchError),
        (dataclasses.replace(receipt, batch_index=1), RootMismatchError),
        (dataclasses.replace(receipt, batch_index=5), ProofFormatError),
        (dataclasses.replace(receipt, record_proof=receipt.record_proof[:-1]), ProofFormatError),
        (dataclasses.replace(receipt, signature=bytes(64)), RootMismatchError),
        (
            dataclasses.replace(receipt, checkpoint=receipt.checkpoint.replace("\n5\n", "\n6\n")),
            SignatureError,
        ),
        (
            dataclasses.replace(receipt, record=dataclasses.replace(receipt.record, edge="edge-2")),
            VerificationError,
        ),
    ]
    for bad, error in cases:
        with pytest.raises(error):
            verify_receipt(bad, LOG_KEY.verifier, RING)
    with pytest.raises(UnknownKeyError):
        verify_receipt(receipt, EDGE_KEY.verifier, RING)
    with pytest.raises(UnknownKeyError):
        verify_receipt(receipt, LOG_KEY.verifier, KeyRing([LOG_KEY.verifier]))
    with pytest.raises(VerificationError, match="origin"):
        verify_receipt(receipt, LOG_KEY.verifier, RING, expected_origin="other.example")


def test_batch_leaf_commits_to_the_signature() -> None:
    receipt = build_receipt()
    assert batch_log_leaf_hash(receipt.header, receipt.signature) != batch_log_leaf_hash(
        receipt.header, bytes(64)
    )
    assert len(leaf_hash(b"")) == 32


def test_parse_receipt_structure_errors() -> None:
    good = json.loads(format_receipt(build_receipt()))
    mutations: list[Callable[[Any], object]] = [
        lambda o: o.pop("checkpoint"),
        lambda o: o.update(v=2),
        lambda o: o.update(record_index=-1),
        lambda o: o.update(batch_proof=["zz"]),
        lambda o: o.update(record_proof="x"),
        lambda o: o["batch"].update(signature="AAAA"),
        lambda o: o.update(checkpoint=5),
    ]
    for mutate in mutations:
        obj = json.loads(json.dumps(good))
        mutate(obj)
        with pytest.raises(FormatError):
            parse_receipt(json.dumps(obj).encode())


def test_parse_receipt_truncated_byte_by_byte_only_format_error() -> None:
    data = format_receipt(build_receipt())
    for end in range(0, len(data), 3):
        with pytest.raises(FormatError):
            parse_receipt(data[:end])


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=80))
def test_parse_receipt_arbitrary_bytes_only_format_error(data: bytes) -> None:
    for end in range(len(data) + 1):
        try:
            parse_receipt(data[:end])
        except FormatError:
            pass
