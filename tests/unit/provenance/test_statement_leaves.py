"""Statement leaves of the global log and statement proofs (provenance.statement_leaves): the
leaf bytes and hash (RFC 9162 §2.1.1), domain separation against batch leaves, and offline
verification of a statement proof (RFC 9162 §2.1.3.2) with clear reasons when it fails."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.pricing import PricingRules
from billing.statements import DAY, Period, close_period, statement_to_obj
from provenance.batches import ZERO_HASH_HEX, batch_log_leaf_hash, seal_batch
from provenance.canonical_json import canonicalize
from provenance.checkpoint import Checkpoint, format_checkpoint
from provenance.errors import FormatError, RootMismatchError, UnknownKeyError, VerificationError
from provenance.keys import generate_signing_key
from provenance.merkle import MerkleTree
from provenance.signed_note import sign_note
from provenance.statement_leaves import (
    PendingStatementError,
    StatementLeaf,
    StatementProof,
    leaf_of_statement,
    parse_global_log_entry,
    parse_statement_leaf,
    parse_statement_proof,
    pending_statement_obj,
    statement_content_hash,
    statement_leaf_data,
    statement_leaf_hash,
    statement_proof_to_obj,
    verify_statement_proof,
)
from provenance.tiles import log_entry

from .strategies import make_record

LOG_KEY = generate_signing_key("log.example", b"\x41" * 32)
OTHER_KEY = generate_signing_key("log.example", b"\x42" * 32)
EDGE_KEY = generate_signing_key("edge-1", b"\x43" * 32)
DAY_27 = Period(DAY, datetime(2026, 11, 27, tzinfo=UTC))


def a_statement(creator: str = "alice", carried_in: int = 1_234_567) -> dict[str, Any]:
    """A real statement, as billing closes it (a carry-forward only: no usage needed)."""
    statements = close_period(DAY_27, [], PricingRules(), terms_of={},
                              carried_in={creator: carried_in})  # fmt: skip
    return statement_to_obj(statements[creator])


def test_the_leaf_is_the_canonical_json_of_kind_creator_period_and_hash() -> None:
    leaf = StatementLeaf("alice", "day-2026-11-27T00:00:00Z", "ab" * 32)
    data = (
        b'{"creator":"alice","kind":"statement","period":"day-2026-11-27T00:00:00Z",'
        b'"sha256":"' + b"ab" * 32 + b'"}'
    )
    assert statement_leaf_data(leaf) == data
    assert statement_leaf_hash(leaf) == hashlib.sha256(b"\x00" + data).digest()  # §2.1.1
    assert parse_statement_leaf(data) == leaf


def test_the_statement_hash_is_billings_own() -> None:
    statement = a_statement()
    assert statement_content_hash(statement) == statement["sha256"]
    leaf = leaf_of_statement(statement)
    assert (leaf.creator, leaf.period, leaf.sha256) == (
        "alice", "day-2026-11-27T00:00:00Z", statement["sha256"])  # fmt: skip


def test_batch_and_statement_leaves_cannot_be_read_as_each_other() -> None:
    """Domain separation: each parser refuses the other kind's bytes, and the dispatcher reads
    each as what it is."""
    sealed = seal_batch([make_record(0)], "edge-1", 0, ZERO_HASH_HEX, EDGE_KEY)
    batch_entry = log_entry(sealed.header, sealed.signature)
    statement_entry = statement_leaf_data(leaf_of_statement(a_statement()))
    with pytest.raises(FormatError):
        parse_statement_leaf(batch_entry)
    assert parse_global_log_entry(batch_entry) == (sealed.header, sealed.signature)
    assert isinstance(parse_global_log_entry(statement_entry), StatementLeaf)
    with pytest.raises(FormatError):
        parse_global_log_entry(b'{"header":' + statement_entry[1:])
    assert batch_entry[:10] != statement_entry[:10]


@pytest.mark.parametrize(
    "data",
    [
        b'{"creator":"alice","kind":"batch","period":"day-2026-11-27T00:00:00Z","sha256":"'
        + b"ab" * 32
        + b'"}',
        b'{"kind":"statement","creator":"alice","period":"day-2026-11-27T00:00:00Z","sha256":"'
        + b"ab" * 32
        + b'"}',  # not canonical: keys out of order
        b'{"creator":"alice","kind":"statement","period":"day-2026-11-27","sha256":"'
        + b"ab" * 32
        + b'"}',
        b'{"creator":"alice","kind":"statement","period":"day-2026-11-27T00:00:00Z","sha256":"AB"}',
        b'{"creator":"","kind":"statement","period":"day-2026-11-27T00:00:00Z","sha256":"'
        + b"ab" * 32
        + b'"}',
    ],
)
def test_a_malformed_or_non_canonical_leaf_is_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        parse_statement_leaf(data)


@given(st.text(min_size=1, max_size=40), st.sampled_from(["hour", "day", "month"]))
def test_leaves_round_trip(creator: str, kind: str) -> None:
    leaf = StatementLeaf(creator, f"{kind}-2026-11-01T00:00:00Z", "0f" * 32)
    assert parse_statement_leaf(statement_leaf_data(leaf)) == leaf


def a_log(statement: dict[str, Any], at: int = 3, size: int = 6) -> dict[str, object]:
    """A global log of ``size`` leaves, batches around the statement's leaf at ``at``; the
    statement proof the coordinator would serve."""
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(size)]
    leaves[at] = statement_leaf_hash(leaf_of_statement(statement))
    tree = MerkleTree(leaves)
    note = sign_note(format_checkpoint(Checkpoint("log.example", size, tree.root())), [LOG_KEY])
    proof = StatementProof(statement, at, size, tuple(tree.inclusion_proof(at)), note)
    return statement_proof_to_obj(proof)


def verify(obj: dict[str, object]) -> Checkpoint:
    return verify_statement_proof(
        parse_statement_proof(canonicalize(obj)), LOG_KEY.verifier, "log.example"
    )


def test_a_statement_proof_verifies_against_the_log_key_alone() -> None:
    checkpoint = verify(a_log(a_statement()))
    assert (checkpoint.origin, checkpoint.size) == ("log.example", 6)


def test_a_statement_with_one_line_changed_fails_with_a_clear_reason() -> None:
    usage = a_log(a_statement())
    tampered = copy.deepcopy(usage)
    tampered["statement"]["carried_in_micros"] += 1  # type: ignore[index]
    with pytest.raises(VerificationError, match="does not hash to its sha256"):
        verify(tampered)


def test_a_statement_changed_with_its_hash_recomputed_is_not_in_the_log() -> None:
    tampered = a_log(a_statement())
    statement: dict[str, Any] = tampered["statement"]  # type: ignore[assignment]
    statement["payout_micros"] += 1_000_000
    statement["sha256"] = statement_content_hash(statement)
    with pytest.raises(RootMismatchError, match="is not leaf 3 of the checkpoint's tree"):
        verify(tampered)


def test_another_creators_statement_does_not_verify_at_that_leaf() -> None:
    proof = a_log(a_statement("alice"))
    proof["statement"] = a_statement("bob")
    with pytest.raises(RootMismatchError):
        verify(proof)


def test_a_checkpoint_signed_by_another_key_fails() -> None:
    proof = a_log(a_statement())
    anchor: dict[str, Any] = proof["anchor"]  # type: ignore[assignment]
    text = anchor["checkpoint"].split("\n\n")[0] + "\n"
    anchor["checkpoint"] = sign_note(text, [OTHER_KEY])
    with pytest.raises(UnknownKeyError):
        verify(proof)


def test_an_anchor_whose_tree_size_is_not_the_checkpoints_fails() -> None:
    proof = a_log(a_statement())
    proof["anchor"]["tree_size"] = 5  # type: ignore[index]
    with pytest.raises(VerificationError, match="tree_size 5"):
        verify(proof)


def test_a_pending_statement_says_so() -> None:
    obj = pending_statement_obj(a_statement(), "not in a checkpoint yet")
    with pytest.raises(PendingStatementError, match="not anchored yet"):
        parse_statement_proof(json.dumps(obj).encode())


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o.pop("anchor"),
        lambda o: o.update(v=2),
        lambda o: o["anchor"].update(inclusion_proof=["zz"]),
        lambda o: o["anchor"].update(leaf_index=-1),
        lambda o: o["anchor"].pop("checkpoint"),
        lambda o: o.update(extra=1),
    ],
)
def test_malformed_statement_proofs_are_refused(change: Any) -> None:
    obj = a_log(a_statement())
    change(obj)
    with pytest.raises(FormatError):
        parse_statement_proof(json.dumps(obj).encode())


def test_batch_leaf_hashes_are_unchanged() -> None:
    """Batch leaves stay byte for byte what they were: the leaf hash of the signed header."""
    sealed = seal_batch([make_record(0)], "edge-1", 0, ZERO_HASH_HEX, EDGE_KEY)
    entry = log_entry(sealed.header, sealed.signature)
    assert batch_log_leaf_hash(sealed.header, sealed.signature) == (
        hashlib.sha256(b"\x00" + entry).digest()
    )
