"""RFC 9162 §2.1 Merkle trees: hashes, roots, inclusion and consistency proofs.

Generation follows the definitions of MTH, PATH and PROOF (§2.1.1, §2.1.3.1, §2.1.4.1);
verification follows the algorithms of §2.1.3.2 and §2.1.4.2 after checking the proof length
for the claimed index and sizes. Verifiers return None or raise: ``ProofFormatError`` for a proof
of the wrong shape, ``RootMismatchError`` when the recomputed root differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from provenance import fastrecords
from provenance.errors import ProofFormatError, RootMismatchError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d}) = SHA-256(0x00 || d)."""
    return _sha256(b"\x00" + data).digest()


def leaf_hashes(entries: Sequence[bytes]) -> list[bytes]:
    """``leaf_hash`` of each entry: compiled where provenance/_fastrecords.c is built, which
    hashes eight at a time on CPUs with AVX2 and without SHA instructions."""
    compiled = fastrecords.leaf_hashes
    if compiled is not None:
        return compiled(entries)
    return [_sha256(b"\x00" + data).digest() for data in entries]


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


class MerkleTree:
    """A tree over a fixed list of leaf hashes, holding every complete subtree's root.

    Building costs n - 1 hashes; the root and each proof then cost O(log n) hashes.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        level = list(leaf_hashes)
        for item in level:
            if len(item) != HASH_SIZE:
                raise ValueError("leaf hashes are 32 bytes")
        self.size = len(level)
        self._levels = [level]
        while len(level) > 1:
            level = [
                _sha256(b"\x01" + level[i] + level[i + 1]).digest()
                for i in range(0, len(level) - 1, 2)
            ]
            self._levels.append(level)

    def subtree_root(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) (RFC 9162 §2.1.1), using stored complete subtrees."""
        size = end - start
        if size <= 0:
            if size == 0 and start == 0:
                return EMPTY_ROOT
            raise ValueError("empty or negative subtree range")
        if size & (size - 1) == 0 and start % size == 0:
            return self._levels[size.bit_length() - 1][start // size]
        split = _largest_power_of_two_below(size)
        return node_hash(
            self.subtree_root(start, start + split), self.subtree_root(start + split, end)
        )

    def root(self) -> bytes:
        """MTH(D[0:n])."""
        return self.subtree_root(0, self.size)

    def inclusion_proof(self, index: int) -> list[bytes]:
        """PATH(index, D[0:n]) (RFC 9162 §2.1.3.1), leaf-side sibling first."""
        return inclusion_proof_from(self.subtree_root, index, self.size)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:n]) (RFC 9162 §2.1.4.1)."""
        return consistency_proof_from(self.subtree_root, old_size, self.size)


SubtreeRoot = Callable[[int, int], bytes]
"""``subtree_root(start, end)`` -> MTH(D[start:end]). Proof generation asks only for complete,
aligned subtrees (size a power of two, ``start`` a multiple of it) and for ragged right edges
that end at the tree size (or, for consistency proofs, at the old size); a log stored as tiles
answers the former from storage and builds the latter from O(log n) of them."""


def inclusion_proof_from(subtree_root: SubtreeRoot, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1) from a subtree-root reader."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} out of range for size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        split = _largest_power_of_two_below(end - start)
        if index < start + split:
            proof.append(subtree_root(start + split, end))
            end = start + split
        else:
            proof.append(subtree_root(start, start + split))
            start += split
    proof.reverse()
    return proof


def consistency_proof_from(subtree_root: SubtreeRoot, old_size: int, size: int) -> list[bytes]:
    """PROOF(old_size, D[0:size]) (RFC 9162 §2.1.4.1) from a subtree-root reader."""
    if not 0 < old_size <= size:
        raise ValueError(f"old size {old_size} out of range for size {size}")
    proof: list[bytes] = []
    start, end, complete = 0, size, True
    while old_size != end:
        split = _largest_power_of_two_below(end - start)
        if old_size - start <= split:
            proof.append(subtree_root(start + split, end))
            end = start + split
        else:
            proof.append(subtree_root(start, start + split))
            start += split
            complete = False
    if not complete:
        proof.append(subtree_root(start, end))
    proof.reverse()
    return proof


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the leaves whose hashes are given (RFC 9162 §2.1.1): compiled where
    provenance/_fastrecords.c is built (0.19 against 0.65 µs per leaf for a batch of 1,000 on
    the dev box), else ``MerkleTree`` (the reference, tests/unit/provenance/test_fastrecords.py
    and test_merkle.py run both)."""
    compiled = fastrecords.merkle_root
    if compiled is not None:
        return compiled(leaf_hashes)
    return MerkleTree(leaf_hashes).root()


def root_from_leaf_blob(blob: bytes | bytearray | memoryview) -> bytes:
    """``root_from_leaf_hashes`` of leaf hashes laid end to end in one bytes object (32 bytes
    each), as the sealer keeps them (no Python object per leaf)."""
    if len(blob) % HASH_SIZE:
        raise ValueError(f"leaf hashes are {HASH_SIZE} bytes")
    compiled = fastrecords.merkle_root
    if compiled is not None:
        return compiled(blob)
    return MerkleTree(
        [bytes(blob[i : i + HASH_SIZE]) for i in range(0, len(blob), HASH_SIZE)]
    ).root()


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162 §2.1.3.1); build a MerkleTree for many proofs."""
    return MerkleTree(leaf_hashes).inclusion_proof(index)


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, D[n]) (RFC 9162 §2.1.4.1)."""
    return MerkleTree(leaf_hashes).consistency_proof(old_size)


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    for i, item in enumerate(proof):
        if not isinstance(item, bytes) or len(item) != HASH_SIZE:
            raise ProofFormatError(f"{what} element {i} is not a 32-byte hash")


def inclusion_proof_length(index: int, size: int) -> int:
    """The length PATH(index, D[size]) must have."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + bin(index >> inner).count("1")


def root_from_inclusion_proof(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root a valid inclusion proof implies (RFC 9162 §2.1.3.2 steps 1-6)."""
    if not 0 <= index < size:
        raise ProofFormatError(f"leaf index {index} not below tree size {size}")
    _check_hashes([leaf_hash_], "leaf hash")
    _check_hashes(proof, "inclusion proof")
    want = inclusion_proof_length(index, size)
    if len(proof) != want:
        raise ProofFormatError(f"inclusion proof has {len(proof)} hashes, want {want}")
    fn, sn, r = index, size - 1, leaf_hash_
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r


def verify_inclusion(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: return None or raise ProofFormatError / RootMismatchError."""
    computed = root_from_inclusion_proof(leaf_hash_, index, size, proof)
    if computed != root:
        raise RootMismatchError(
            f"inclusion proof for leaf {index} of {size} gives root {computed.hex()}, "
            f"want {bytes(root).hex()}"
        )


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """The length PROOF(old_size, D[new_size]) must have (0 < old_size < new_size)."""
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = bin((old_size - 1) >> inner).count("1")
    shift = (old_size & -old_size).bit_length() - 1
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """RFC 9162 §2.1.4.2: return None or raise ProofFormatError / RootMismatchError."""
    if not 0 <= old_size <= new_size:
        raise ProofFormatError(f"old size {old_size} not within 0..{new_size}")
    _check_hashes(proof, "consistency proof")
    _check_hashes([old_root, new_root], "root")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofFormatError("consistency proof must be empty for these sizes")
        if old_size == new_size and old_root != new_root:
            raise RootMismatchError("trees of equal size have different roots")
        return
    want = consistency_proof_length(old_size, new_size)
    if len(proof) != want:
        raise ProofFormatError(f"consistency proof has {len(proof)} hashes, want {want}")
    _check_consistency_path(old_size, new_size, proof, old_root, new_root)


def _check_consistency_path(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: a power of two, prepend first_hash
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 3
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != old_root:
        raise RootMismatchError(f"consistency proof gives old root {fr.hex()}")
    if sr != new_root:
        raise RootMismatchError(f"consistency proof gives new root {sr.hex()}")
