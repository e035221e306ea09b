"""RFC 9162 §2.1 Merkle trees, cross-checked against a recursive transcription of the RFC."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.errors import ProofFormatError, RootMismatchError
from provenance.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    consistency_proof_from,
    consistency_proof_length,
    inclusion_proof,
    inclusion_proof_from,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

from .strategies import both_implementations

# Every test runs with both ``root_from_leaf_hashes``: MerkleTree and provenance/_fastrecords.c.
root_implementation = both_implementations("merkle_root", "python")


# --- RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 transcribed literally (the reference) ---------------
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# ---------------------------------------------------------------------------------------------
leaves_strategy = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


def test_empty_root_is_hash_of_nothing_rfc9162_2_1_1() -> None:
    assert root_from_leaf_hashes([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_leaf_and_node_prefixes_rfc9162_2_1_1() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@settings(max_examples=60, deadline=None)
@given(leaves_strategy)
def test_root_matches_recursive_mth_rfc9162_2_1_1(data: list[bytes]) -> None:
    assert root_from_leaf_hashes([leaf_hash(x) for x in data]) == ref_mth(data)


@settings(max_examples=60, deadline=None)
@given(leaves_strategy, st.data())
def test_inclusion_proof_matches_path_and_verifies_rfc9162_2_1_3(
    data: list[bytes], draw: st.DataObject
) -> None:
    index = draw.draw(st.integers(0, len(data) - 1))
    hashes = [leaf_hash(x) for x in data]
    proof = inclusion_proof(index, hashes)
    assert proof == ref_path(index, data)
    assert len(proof) == inclusion_proof_length(index, len(data))
    verify_inclusion(hashes[index], index, len(data), proof, ref_mth(data))
    assert root_from_inclusion_proof(hashes[index], index, len(data), proof) == ref_mth(data)


@settings(max_examples=60, deadline=None)
@given(leaves_strategy, st.data())
def test_consistency_proof_matches_proof_and_verifies_rfc9162_2_1_4(
    data: list[bytes], draw: st.DataObject
) -> None:
    old = draw.draw(st.integers(1, len(data)))
    hashes = [leaf_hash(x) for x in data]
    proof = consistency_proof(old, hashes)
    assert proof == ref_proof(old, data)
    if old < len(data):
        assert len(proof) == consistency_proof_length(old, len(data))
    verify_consistency(old, len(data), proof, ref_mth(data[:old]), ref_mth(data))


@settings(max_examples=60, deadline=None)
@given(leaves_strategy, st.data())
def test_any_single_bit_flip_in_inclusion_proof_is_rejected_rfc9162_2_1_3_2(
    data: list[bytes], draw: st.DataObject
) -> None:
    index = draw.draw(st.integers(0, len(data) - 1))
    hashes = [leaf_hash(x) for x in data]
    proof = inclusion_proof(index, hashes)
    if not proof:
        return
    which = draw.draw(st.integers(0, len(proof) - 1))
    bit = draw.draw(st.integers(0, 255))
    bad = bytearray(proof[which])
    bad[bit // 8] ^= 1 << (bit % 8)
    proof[which] = bytes(bad)
    with pytest.raises(RootMismatchError):
        verify_inclusion(hashes[index], index, len(data), proof, ref_mth(data))


@settings(max_examples=60, deadline=None)
@given(leaves_strategy, st.data())
def test_consistency_rejects_wrong_old_root_rfc9162_2_1_4_2(
    data: list[bytes], draw: st.DataObject
) -> None:
    old = draw.draw(st.integers(1, len(data)))
    hashes = [leaf_hash(x) for x in data]
    proof = consistency_proof(old, hashes)
    with pytest.raises(RootMismatchError):
        verify_consistency(old, len(data), proof, b"\x00" * 32, ref_mth(data))


def test_inclusion_shape_errors_rfc9162_2_1_3_2() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(5)]
    root = root_from_leaf_hashes(hashes)
    proof = inclusion_proof(2, hashes)
    with pytest.raises(ProofFormatError):
        verify_inclusion(hashes[2], 5, 5, proof, root)  # index >= size
    with pytest.raises(ProofFormatError):
        verify_inclusion(hashes[2], 2, 5, proof[:-1], root)  # truncated
    with pytest.raises(ProofFormatError):
        verify_inclusion(hashes[2], 2, 5, [*proof, proof[0]], root)  # extra element
    with pytest.raises(ProofFormatError):
        verify_inclusion(hashes[2], 2, 5, [proof[0][:31], *proof[1:]], root)  # short hash


def test_consistency_shape_errors_rfc9162_2_1_4_2() -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(7)]
    root3, root7 = root_from_leaf_hashes(hashes[:3]), root_from_leaf_hashes(hashes)
    proof = consistency_proof(3, hashes)
    with pytest.raises(ProofFormatError):
        verify_consistency(8, 7, proof, root3, root7)
    with pytest.raises(ProofFormatError):
        verify_consistency(3, 7, [], root3, root7)
    with pytest.raises(ProofFormatError):
        verify_consistency(7, 7, proof, root7, root7)
    with pytest.raises(RootMismatchError):
        verify_consistency(7, 7, [], root3, root7)
    verify_consistency(0, 7, [], root3, root7)  # the empty tree is a prefix of every tree


def test_generation_misuse_raises_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(3, [leaf_hash(b"")] * 3)
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(0, [leaf_hash(b"")] * 3)
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree([b"short"])
    for bad in ([b"short"], [b"a" * 32, b"b" * 33]):
        with pytest.raises(ValueError, match="32 bytes"):
            root_from_leaf_hashes(bad)


def test_large_tree_proofs_are_cheap_after_building() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(100_000)]
    tree = MerkleTree(hashes)
    root = tree.root()
    for index in (0, 1, 65_535, 65_536, 99_999):
        verify_inclusion(hashes[index], index, tree.size, tree.inclusion_proof(index), root)
    old_root = root_from_leaf_hashes(hashes[:70_001])
    verify_consistency(70_001, tree.size, tree.consistency_proof(70_001), old_root, root)


@settings(max_examples=40, deadline=None)
@given(leaves_strategy, st.data())
def test_proofs_from_a_reader_ask_only_aligned_subtrees_or_right_edges(
    data: list[bytes], draw: st.DataObject
) -> None:
    """The SubtreeRoot contract: what a tile-backed log must be able to answer."""
    size = len(data)
    asked: list[tuple[int, int]] = []

    def read(start: int, end: int) -> bytes:
        asked.append((start, end))
        return ref_mth(data[start:end])

    index = draw.draw(st.integers(0, size - 1))
    old = draw.draw(st.integers(1, size))
    assert inclusion_proof_from(read, index, size) == ref_path(index, data)
    assert consistency_proof_from(read, old, size) == ref_proof(old, data)
    for start, end in asked:
        width = end - start
        aligned = width & (width - 1) == 0 and start % width == 0
        assert aligned or end in (size, old), (start, end)
