"""C2SP tlog-tiles (c2sp.org/tlog-tiles): paths, which tiles a tree has, tile and bundle bytes,
and a tree read back from its tiles, cross-checked against ``provenance.merkle`` (RFC 9162)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.batches import batch_log_leaf_hash, header_canonical_bytes, seal_batch
from provenance.errors import FormatError
from provenance.keys import SigningKey
from provenance.merkle import MerkleTree, leaf_hash
from provenance.records import Record
from provenance.tiles import (
    TILE_WIDTH,
    Tile,
    TileTree,
    decode_bundle,
    encode_bundle,
    encode_index,
    log_entry,
    log_entry_from_canonical,
    new_tiles,
    pack_tile,
    parse_log_entry,
    parse_tile_path,
    tile_for,
    unpack_tile,
)


def _leaves(size: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(size)]


_TREES: dict[int, MerkleTree] = {}


def _tree(size: int) -> MerkleTree:
    if size not in _TREES:
        _TREES[size] = MerkleTree(_leaves(size))
    return _TREES[size]


def _spec_tile_hashes(tree: MerkleTree, tile: Tile) -> list[bytes]:
    """The spec's "Merkle Tree" definition: hash i of tile n at level l is
    MTH(D[(n*256+i)*256**l : (n*256+i+1)*256**l])."""
    assert tile.level is not None
    span = TILE_WIDTH**tile.level
    n = tile.index
    return [
        tree.subtree_root((n * 256 + i) * span, (n * 256 + i + 1) * span) for i in range(tile.width)
    ]


def _reader(tree: MerkleTree, reads: list[Tile] | None = None) -> Callable[[Tile], list[bytes]]:
    def read(tile: Tile) -> list[bytes]:
        if reads is not None:
            reads.append(tile)
        return unpack_tile(pack_tile(_spec_tile_hashes(tree, tile)), tile.width)

    return read


# Sizes around tile boundaries (1, 255, 256, 257, 65536 ± 1) matter most.
sizes = st.one_of(
    st.integers(0, 1100),
    st.sampled_from([255, 256, 257, 511, 512, 65535, 65536, 65537, 70000]),
    st.integers(65_000, 66_000),
)


# -- paths ("Merkle Tree": <N> as 3-digit elements, x on all but the last) ---------------------


@pytest.mark.parametrize(
    ("index", "encoded"),
    [
        (1234067, "x001/x234/067"),  # the spec's example
        (0, "000"),
        (7, "007"),
        (999, "999"),
        (1000, "x001/000"),
        (1_000_000, "x001/x000/000"),
    ],
)
def test_index_encoding_follows_the_spec(index: int, encoded: str) -> None:
    assert encode_index(index) == encoded


def test_paths_of_full_and_partial_tiles_and_bundles() -> None:
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(2, 5, 17).path == "tile/2/005.p/17"
    assert Tile(None, 1000, 255).path == "tile/entries/x001/000.p/255"
    assert Tile(0, 3, 9).entries_bundle() == Tile(None, 3, 9)
    assert Tile(1, 3, 9).partials_dir == "tile/1/003.p"


@given(
    st.one_of(st.none(), st.integers(0, 63)),
    st.integers(0, 10**12),
    st.integers(1, TILE_WIDTH),
)
def test_every_path_parses_back_to_its_tile(level: int | None, index: int, width: int) -> None:
    tile = Tile(level, index, width)
    assert parse_tile_path(tile.path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",  # not zero-padded
        "tile/0/0001",
        "tile/0/x000/001",  # a leading zero element: not the canonical name of tile 1
        "tile/0/001/002",  # x missing on a non-last element
        "tile/0/x001",  # x on the last element
        "tile/00/000",  # "no additional leading zeroes"
        "tile/64/000",  # level "between 0 and 63"
        "tile/0/000.p/0",  # width "between 1 and 255"
        "tile/0/000.p/256",
        "tile/0/000.p/010",
        "tile/0/000.p/",
        "tile/0/000/",
        "tile/-1/000",
        "tile/entry/000",
        "tile/entries/x1/000",
        "tile/0/",
        "tile/0/00a",
        "checkpoint",
        "",
    ],
)
def test_non_canonical_paths_are_refused(path: str) -> None:
    with pytest.raises(FormatError):
        parse_tile_path(path)


# -- which tiles a tree has ("Partial Tiles") -------------------------------------------------


def test_the_spec_example_tree_of_70000() -> None:
    """ "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level 0
    tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
    partial level 2 tile of width 1"."""
    tiles = list(new_tiles(0, 70_000))
    assert tiles == [
        *(Tile(0, n) for n in range(273)),
        Tile(0, 273, 112),
        Tile(1, 0),
        Tile(1, 1, 17),
        Tile(2, 0, 1),
    ]


def test_a_tree_of_256_is_one_full_tile_and_a_partial_level_1_tile() -> None:
    assert list(new_tiles(0, 256)) == [Tile(0, 0), Tile(1, 0, 1)]
    assert list(new_tiles(0, 0)) == []  # "Empty tiles MUST NOT be served"


@given(st.integers(0, 200_000), st.integers(0, 200_000))
def test_an_incremental_export_writes_exactly_what_the_new_size_adds(a: int, b: int) -> None:
    old, new = min(a, b), max(a, b)
    before, added = set(new_tiles(0, old)), set(new_tiles(old, new))
    assert set(new_tiles(0, new)) <= before | added
    assert not added & before  # nothing already there is written again
    for tile in added:
        assert tile.size_needed <= new
        assert tile_for(tile.level or 0, tile.index, new) == tile


def test_tile_for_refuses_a_tile_the_tree_does_not_have() -> None:
    assert tile_for(0, 1, 300) == Tile(0, 1, 44)
    for level, index in ((0, 2), (1, 1), (2, 0)):
        with pytest.raises(ValueError, match="has no tile"):
            tile_for(level, index, 300)


# -- bytes -----------------------------------------------------------------------------------


def test_a_full_tile_is_8192_bytes_and_bad_lengths_are_refused() -> None:
    hashes = _leaves(256)
    assert len(pack_tile(hashes)) == 8192  # "Full tiles MUST be exactly 256 hashes wide"
    assert unpack_tile(pack_tile(hashes), 256) == hashes
    with pytest.raises(FormatError):
        unpack_tile(pack_tile(hashes)[:-1], 256)
    with pytest.raises(FormatError):
        unpack_tile(pack_tile(hashes[:3]), 4)
    for bad in ([], _leaves(257), [b"short"]):
        with pytest.raises(ValueError):
            pack_tile(bad)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_bundles_round_trip(entries: list[bytes]) -> None:
    data = encode_bundle(entries)
    assert data[:2] == len(entries[0]).to_bytes(2, "big")  # big-endian uint16 length prefix
    assert decode_bundle(data, len(entries)) == entries


def test_bad_bundles_are_refused() -> None:
    good = encode_bundle([b"abc", b"de"])
    assert good == b"\x00\x03abc\x00\x02de"
    for bad, width in ((good[:-1], 2), (good + b"\x00", 2), (good, 3), (good, 1), (b"", 1)):
        with pytest.raises(FormatError):
            decode_bundle(bad, width)
    with pytest.raises(ValueError):
        encode_bundle([b"x" * 65536])  # does not fit a uint16 length
    assert decode_bundle(encode_bundle([b"x" * 65535]), 1) == [b"x" * 65535]


def test_a_log_entry_hashes_to_its_batch_log_leaf() -> None:
    """ "Each entry in a bundle hashes to the corresponding entry in the corresponding level 0
    Merkle Tree tile": Cachet's entry is the canonical signed batch header."""
    key = SigningKey("edge-1", bytes(32))
    record = Record(request_id="r1", ts="2026-11-27T12:00:00.000Z", edge="edge-1", method="GET",
                    status=200, cache="hit", tier="memory", bytes=10, origin_bytes=0)  # fmt: skip
    batch = seal_batch([record], "edge-1", 0, "0" * 64, key)
    entry = log_entry(batch.header, batch.signature)
    assert leaf_hash(entry) == batch_log_leaf_hash(batch.header, batch.signature)
    assert parse_log_entry(entry) == (batch.header, batch.signature)
    stored = (header_canonical_bytes(batch.header), base64.b64encode(batch.signature).decode())
    assert log_entry_from_canonical(*stored) == entry
    spaced = entry.replace(b'":', b'": ', 1)
    with pytest.raises(FormatError, match="canonical"):
        parse_log_entry(spaced)
    with pytest.raises(FormatError):
        parse_log_entry(b'{"header": 1}')


# -- a tree read back from its tiles ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(sizes)
def test_the_root_from_tiles_is_the_rfc_9162_root(size: int) -> None:
    tree = _tree(size)
    assert TileTree(_reader(tree), size).root() == tree.root()


@settings(max_examples=60, deadline=None)
@given(sizes.filter(lambda n: n > 0), st.data())
def test_inclusion_proofs_from_tiles_equal_provenance_merkle(
    size: int, data: st.DataObject
) -> None:
    tree = _tree(size)
    index = data.draw(st.integers(0, size - 1))
    at = data.draw(st.integers(index + 1, size))
    tiles = TileTree(_reader(tree), size)
    assert tiles.leaf_hash(index) == _leaves(size)[index]
    assert tiles.inclusion_proof(index, at) == MerkleTree(_leaves(at)).inclusion_proof(index)


@settings(max_examples=60, deadline=None)
@given(sizes.filter(lambda n: n > 0), st.data())
def test_consistency_proofs_from_tiles_equal_provenance_merkle(
    size: int, data: st.DataObject
) -> None:
    tree = _tree(size)
    old = data.draw(st.integers(1, size))
    assert TileTree(_reader(tree), size).consistency_proof(old) == tree.consistency_proof(old)


def test_a_proof_reads_few_tiles_and_each_once() -> None:
    tree = _tree(70_000)
    reads: list[Tile] = []
    tiles = TileTree(_reader(tree, reads), 70_000)
    tiles.root()
    tiles.inclusion_proof(12_345)
    assert len(reads) == len(set(reads)) <= 6


def test_a_tile_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(FormatError, match="does not hold"):
        TileTree(lambda tile: _leaves(3), 300).root()
