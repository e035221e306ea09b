"""Pure integration of leaves into an RFC 9162 tree stored as complete subtrees.

Storage model: every complete, aligned subtree ("node") is stored once under its ``NodeId``
``(level, index)``: the subtree of ``2**level`` leaves starting at leaf ``index << level``. Level
0 holds the leaf hashes. Appending a leaf writes it and one node per level it completes (n - 1
nodes for n leaves in total, 2 writes per leaf amortised). Any ``MTH(D[start:end])`` that RFC 9162
proof generation asks for is then a fold over O(log n) stored nodes, so proofs cost O(log n)
reads; nodes never change once written, so proofs for any past tree size come from the same store.

The ``frontier`` of a tree of size n is the list of its maximal complete subtrees, left to right
(one per set bit of n): all the sequencer keeps in memory to integrate the next leaves and to
compute the root. Nothing here does I/O; reads are passed in as mappings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from provenance.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_proof_from,
    inclusion_proof_from,
    node_hash,
)

NodeId = tuple[int, int]
"""``(level, index)``: the complete subtree of ``2**level`` leaves from leaf ``index << level``."""

_DUMMY = b"\x00" * HASH_SIZE


@dataclass(frozen=True, slots=True)
class LogState:
    """A tree's size and its frontier (maximal complete subtree roots, left to right)."""

    size: int
    frontier: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.frontier) != self.size.bit_count():
            raise ValueError("a frontier holds one hash per set bit of the size")


EMPTY_LOG = LogState(0, ())


def frontier_node_ids(size: int) -> list[NodeId]:
    """The node ids of the frontier of a tree of ``size`` leaves, left to right."""
    ids: list[NodeId] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            ids.append((level, start >> level))
            start += 1 << level
    return ids


def integrate(
    state: LogState, leaf_hashes: Sequence[bytes]
) -> tuple[LogState, list[tuple[NodeId, bytes]]]:
    """Append leaves; return the new state and every node to store (leaves included)."""
    size, frontier = state.size, list(state.frontier)
    nodes: list[tuple[NodeId, bytes]] = []
    for leaf in leaf_hashes:
        if len(leaf) != HASH_SIZE:
            raise ValueError("leaf hashes are 32 bytes")
        nodes.append(((0, size), leaf))
        frontier.append(leaf)
        level, index = 0, size
        while index & 1:  # a right child completes its parent
            merged = node_hash(frontier[-2], frontier[-1])
            frontier[-2:] = [merged]
            level, index = level + 1, index >> 1
            nodes.append(((level, index), merged))
        size += 1
    return LogState(size, tuple(frontier)), nodes


def root_of(state: LogState) -> bytes:
    """MTH(D[0:size]) (RFC 9162 §2.1.1) from the frontier, folding right to left."""
    if not state.frontier:
        return EMPTY_ROOT
    root = state.frontier[-1]
    for item in reversed(state.frontier[:-1]):
        root = node_hash(item, root)
    return root


def _split(start: int, end: int) -> int:
    """RFC 9162 §2.1.1's k: the largest power of two below ``end - start``."""
    return 1 << ((end - start - 1).bit_length() - 1)


def _complete_level(start: int, end: int) -> int | None:
    size = end - start
    if size > 0 and size & (size - 1) == 0 and start % size == 0:
        return size.bit_length() - 1
    return None


def node_ids_for_range(start: int, end: int) -> list[NodeId]:
    """The stored nodes that ``MTH(D[start:end])`` is folded from (RFC 9162 §2.1.1 recursion)."""
    if end <= start:
        raise ValueError("empty or negative range")
    level = _complete_level(start, end)
    if level is not None:
        return [(level, start >> level)]
    k = _split(start, end)
    if start % k:
        raise ValueError(f"range [{start}, {end}) is not one RFC 9162 recursion produces")
    return node_ids_for_range(start, start + k) + node_ids_for_range(start + k, end)


def subtree_root(nodes: Mapping[NodeId, bytes], start: int, end: int) -> bytes:
    """``MTH(D[start:end])`` from stored nodes; KeyError if one is missing."""
    level = _complete_level(start, end)
    if level is not None:
        return nodes[(level, start >> level)]
    k = _split(start, end)
    return node_hash(subtree_root(nodes, start, start + k), subtree_root(nodes, start + k, end))


def _ranges_asked(generate: Callable[[Callable[[int, int], bytes]], object]) -> list[NodeId]:
    ids: list[NodeId] = []

    def record(start: int, end: int) -> bytes:
        ids.extend(node_ids_for_range(start, end))
        return _DUMMY

    generate(record)
    return ids


def inclusion_node_ids(index: int, size: int) -> list[NodeId]:
    """The nodes an inclusion proof of leaf ``index`` in a tree of ``size`` needs."""
    return _ranges_asked(lambda read: inclusion_proof_from(read, index, size))


def consistency_node_ids(old_size: int, size: int) -> list[NodeId]:
    """The nodes a consistency proof from ``old_size`` to ``size`` needs."""
    return _ranges_asked(lambda read: consistency_proof_from(read, old_size, size))


def inclusion_proof(nodes: Mapping[NodeId, bytes], index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]) from nodes (see ``inclusion_node_ids``)."""
    return inclusion_proof_from(lambda s, e: subtree_root(nodes, s, e), index, size)


def consistency_proof(nodes: Mapping[NodeId, bytes], old_size: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:size]) from nodes (see ``consistency_node_ids``)."""
    return consistency_proof_from(lambda s, e: subtree_root(nodes, s, e), old_size, size)
