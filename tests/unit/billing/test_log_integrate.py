"""billing.log.integrate against provenance.merkle.MerkleTree (RFC 9162 §2.1)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.log.integrate import (
    EMPTY_LOG,
    LogState,
    NodeId,
    consistency_node_ids,
    consistency_proof,
    frontier_node_ids,
    inclusion_node_ids,
    inclusion_proof,
    integrate,
    node_ids_for_range,
    root_of,
)
from provenance.merkle import EMPTY_ROOT, MerkleTree, verify_consistency, verify_inclusion


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]


def _build(chunks: list[int]) -> tuple[LogState, dict[NodeId, bytes], list[bytes]]:
    state, stored = EMPTY_LOG, {}
    leaves: list[bytes] = []
    for chunk in chunks:
        new = _leaves(len(leaves) + chunk)[len(leaves) :]
        state, nodes = integrate(state, new)
        for node_id, value in nodes:
            assert node_id not in stored, "a node is written once (immutable)"
            stored[node_id] = value
        leaves += new
    return state, stored, leaves


def test_empty_log_root_is_hash_of_nothing_rfc9162_2_1_1() -> None:
    assert root_of(EMPTY_LOG) == EMPTY_ROOT


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=6))
def test_integrate_in_chunks_gives_the_rfc9162_2_1_1_root(chunks: list[int]) -> None:
    state, stored, leaves = _build(chunks)
    assert state.size == len(leaves)
    if leaves:
        assert root_of(state) == MerkleTree(leaves).root()
        assert len(stored) == 2 * len(leaves) - len(leaves).bit_count()
    ids = frontier_node_ids(state.size)
    assert tuple(stored[i] for i in ids) == state.frontier


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_inclusion_proof_from_nodes_matches_rfc9162_2_1_3(size: int, data: st.DataObject) -> None:
    _, stored, leaves = _build([size])
    at_size = data.draw(st.integers(min_value=1, max_value=size))
    index = data.draw(st.integers(min_value=0, max_value=at_size - 1))
    needed = inclusion_node_ids(index, at_size)
    assert len(set(needed)) <= 2 * at_size.bit_length()  # O(log n) reads
    subset = {node_id: stored[node_id] for node_id in needed}
    proof = inclusion_proof(subset, index, at_size)
    tree = MerkleTree(leaves[:at_size])
    assert proof == tree.inclusion_proof(index)
    verify_inclusion(leaves[index], index, at_size, proof, tree.root())


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=70), st.data())
def test_consistency_proof_from_nodes_matches_rfc9162_2_1_4(size: int, data: st.DataObject) -> None:
    _, stored, leaves = _build([size])
    old = data.draw(st.integers(min_value=1, max_value=size))
    subset = {node_id: stored[node_id] for node_id in consistency_node_ids(old, size)}
    proof = consistency_proof(subset, old, size)
    assert proof == MerkleTree(leaves).consistency_proof(old)
    verify_consistency(old, size, proof, MerkleTree(leaves[:old]).root(), MerkleTree(leaves).root())


def test_node_ids_for_range_refuses_ranges_the_recursion_never_asks_for() -> None:
    with pytest.raises(ValueError, match="not one RFC 9162"):
        node_ids_for_range(1, 4)
    with pytest.raises(ValueError, match="empty"):
        node_ids_for_range(3, 3)


def test_log_state_checks_its_frontier_length() -> None:
    with pytest.raises(ValueError, match="set bit"):
        LogState(3, (b"\x00" * 32,))


def test_integrate_refuses_a_short_leaf_hash() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        integrate(EMPTY_LOG, [b"short"])
