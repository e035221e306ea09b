"""C2SP tlog-tiles: a log's Merkle tree and entries as static files, and proofs read back from them.

Geometry (c2sp.org/tlog-tiles, "Merkle Tree"): tiles are 8 levels high, so a full tile holds 256
hashes (8,192 bytes). Hash ``i`` of tile ``n`` at level ``L`` is ``MTH(D[(n*256+i)*256**L :
(n*256+i+1)*256**L])``: level 0 holds leaf hashes, level L the roots of complete subtrees of
``256**L`` leaves (the nodes at tree height ``8*L``). The rightmost tile of each level is
*partial* for most tree sizes: ``floor(size / 256**L) mod 256`` hashes, never empty.

Paths: ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``, ``<N>`` in zero-padded 3-digit
path elements with an ``x`` before all but the last (1234067 -> ``x001/x234/067``); only the
canonical spelling of a resource parses, so each resource has one name.

Entry bundles ("Log entries"): each entry a big-endian uint16 length then its bytes; entry ``i``
hashes (RFC 9162 §2.1.1 leaf hash) to hash ``i`` of the level-0 tile of the same index. In
Cachet's log an entry is a batch's signed header, the canonical JSON ``{"header": ...,
"signature": "<base64>"}`` whose leaf hash is the log leaf (``batches.batch_log_leaf_hash``),
or a closed statement's leaf data (``statement_leaves``, which also reads either kind).

Reading back (``TileTree``): any complete aligned subtree of ``2**k`` leaves is ``2**(k mod 8)``
consecutive hashes of one tile at level ``k // 8``, folded; every other range RFC 9162 proof
generation asks for is folded from those. So a verifier holding the tiles of a checkpoint's size
computes the root, inclusion and consistency proofs with ``provenance.merkle`` alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from provenance.batches import BatchHeader, signed_header_from_obj, signed_header_to_obj
from provenance.canonical_json import canonicalize, parse
from provenance.errors import FormatError
from provenance.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleTree,
    consistency_proof_from,
    inclusion_proof_from,
    node_hash,
)

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes in a full tile
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF  # the uint16 length prefix of an entry in a bundle
ENTRIES = "entries"  # the "level" of entry bundles in their paths

_INDEX_ELEMENT = re.compile(r"(x[0-9]{3}/)*[0-9]{3}")
_PATH = re.compile(r"tile/(entries|0|[1-9][0-9]?)/([x0-9/]+?)(?:\.p/([1-9][0-9]{0,2}))?")


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    """Tile ``index`` of ``level`` (``ENTRIES``'s level is None: an entry bundle), ``width``
    hashes or entries wide (256: full)."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if self.level is not None and not 0 <= self.level <= MAX_LEVEL:
            raise ValueError(f"tile level {self.level} not in 0..{MAX_LEVEL}")
        if self.index < 0:
            raise ValueError("tile index is non-negative")
        if not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"tile width {self.width} not in 1..{TILE_WIDTH}")

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``."""
        level = ENTRIES if self.level is None else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{level}/{encode_index(self.index)}{suffix}"

    @property
    def partials_dir(self) -> str:
        """The folder (``<N>.p``) holding this index's partial tiles, obsolete once it is full."""
        level = ENTRIES if self.level is None else str(self.level)
        return f"tile/{level}/{encode_index(self.index)}.p"

    @property
    def tree_level(self) -> int:
        """The height in the tree of the nodes this tile holds (entries: the leaves, 0)."""
        return TILE_HEIGHT * (self.level or 0)

    @property
    def first_node(self) -> int:
        """The index, among nodes at ``tree_level``, of the tile's first hash."""
        return self.index * TILE_WIDTH

    @property
    def size_needed(self) -> int:
        """The smallest tree size that holds every hash of this tile."""
        return (self.first_node + self.width) << self.tree_level

    def entries_bundle(self) -> Tile:
        """The entry bundle matching a level-0 tile."""
        if self.level != 0:
            raise ValueError("only level-0 tiles have entry bundles")
        return Tile(None, self.index, self.width)


def encode_index(index: int) -> str:
    """``<N>`` of a tile path: 3-digit elements, ``x`` before all but the last."""
    if index < 0:
        raise ValueError("tile index is non-negative")
    elements = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        elements.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(elements))


def parse_tile_path(path: str) -> Tile:
    """The tile (or entry bundle) a canonical path names; FormatError for anything else."""
    match = _PATH.fullmatch(path)
    if match is None or not _INDEX_ELEMENT.fullmatch(match[2]):
        raise FormatError("not a tlog-tiles path")
    level = None if match[1] == ENTRIES else int(match[1])
    index = int(match[2].replace("x", "").replace("/", ""))
    width = TILE_WIDTH if match[3] is None else int(match[3])
    if (level is not None and level > MAX_LEVEL) or (match[3] and width >= TILE_WIDTH):
        raise FormatError("tile level or width out of range")
    tile = Tile(level, index, width)
    if tile.path != path:  # leading zero elements: "x000/001" is not the name of tile 1
        raise FormatError("not the canonical path of its tile")
    return tile


# -- which tiles a tree has --------------------------------------------------------------------


def levels_of(size: int) -> int:
    """How many tile levels a tree of ``size`` leaves has (0 for the empty tree)."""
    levels = 0
    while size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


def partial_width(level: int, size: int) -> int:
    """``floor(size / 256**level) mod 256``: the partial tile's width (0: none)."""
    return (size >> (TILE_HEIGHT * level)) % TILE_WIDTH


def full_tiles(level: int, size: int) -> int:
    """How many full tiles ``level`` has in a tree of ``size`` leaves."""
    return size >> (TILE_HEIGHT * (level + 1))


def tile_for(level: int, index: int, size: int) -> Tile:
    """Tile ``index`` of ``level`` as a tree of ``size`` leaves serves it (full or partial)."""
    if index < full_tiles(level, size):
        return Tile(level, index)
    width = partial_width(level, size)
    if index != full_tiles(level, size) or width == 0:
        raise ValueError(f"a tree of {size} has no tile {index} at level {level}")
    return Tile(level, index, width)


def new_tiles(old_size: int, size: int) -> Iterator[Tile]:
    """The tiles a tree of ``size`` has that one of ``old_size`` did not (its full tiles and
    partial tiles, by level then index); entry bundles are the level-0 ones'."""
    if not 0 <= old_size <= size:
        raise ValueError("sizes must satisfy 0 <= old_size <= size")
    for level in range(levels_of(size)):
        for index in range(full_tiles(level, old_size), full_tiles(level, size)):
            yield Tile(level, index)
        width = partial_width(level, size)
        if width and (size >> (TILE_HEIGHT * level)) != (old_size >> (TILE_HEIGHT * level)):
            yield Tile(level, full_tiles(level, size), width)


# -- contents ----------------------------------------------------------------------------------


def pack_tile(hashes: Sequence[bytes]) -> bytes:
    """A tile's bytes: its hashes concatenated."""
    if not 1 <= len(hashes) <= TILE_WIDTH or any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError("a tile is 1 to 256 hashes of 32 bytes")
    return b"".join(hashes)


def unpack_tile(data: bytes, width: int) -> list[bytes]:
    """The hashes of a tile of ``width``; FormatError if the bytes are not that long."""
    if len(data) != width * HASH_SIZE:
        raise FormatError(f"tile of width {width} is {len(data)} bytes, want {width * HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length, then its bytes."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise ValueError("a bundle holds 1 to 256 entries")
    parts: list[bytes] = []
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise ValueError(f"an entry is at most {MAX_ENTRY_SIZE} bytes")
        parts += [len(entry).to_bytes(2, "big"), entry]
    return b"".join(parts)


def decode_bundle(data: bytes, width: int) -> list[bytes]:
    """The ``width`` entries of a bundle; FormatError if truncated, short or with trailing bytes."""
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise FormatError("entry bundle ends inside a length prefix")
        end = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
        if end > len(data):
            raise FormatError("entry bundle ends inside an entry")
        entries.append(data[pos + 2 : end])
        pos = end
    if len(entries) != width:
        raise FormatError(f"entry bundle holds {len(entries)} entries, want {width}")
    return entries


def log_entry(header: BatchHeader, signature: bytes) -> bytes:
    """A Cachet log entry: the canonical signed batch header (its leaf hash is the log leaf)."""
    return canonicalize(signed_header_to_obj(header, signature))


def log_entry_from_canonical(header_canonical: bytes, signature_b64: str) -> bytes:
    """``log_entry`` from a header already in canonical bytes and its base64 signature, without
    re-encoding: RFC 8785 puts ``header`` before ``signature`` and a base64 string needs no
    escaping. A caller reading stored headers still checks the result's leaf hash."""
    return b'{"header":' + header_canonical + b',"signature":"' + signature_b64.encode() + b'"}'


def parse_log_entry(entry: bytes) -> tuple[BatchHeader, bytes]:
    """The header and signature of a log entry; FormatError unless it is exactly canonical (a
    second spelling would hash to another leaf)."""
    header, signature = signed_header_from_obj(parse(entry))
    if log_entry(header, signature) != entry:
        raise FormatError("log entry is not canonical JSON")
    return header, signature


# -- reading a tree back from its tiles --------------------------------------------------------

ReadTile = Callable[[Tile], Sequence[bytes]]
"""Returns the hashes of a tile (``width`` of them), e.g. fetched from a mirror and unpacked."""


class TileTree:
    """The tree of ``size`` leaves a set of tiles describes, read lazily through ``read_tile``
    (each tile read once). Roots and proofs are RFC 9162's, via ``provenance.merkle``."""

    def __init__(self, read_tile: ReadTile, size: int) -> None:
        if size < 0:
            raise ValueError("tree size is non-negative")
        self.size = size
        self._read = read_tile
        self._tiles: dict[Tile, Sequence[bytes]] = {}

    def _hashes(self, tile: Tile) -> Sequence[bytes]:
        if tile not in self._tiles:
            hashes = self._read(tile)
            if len(hashes) != tile.width or any(len(h) != HASH_SIZE for h in hashes):
                raise FormatError(f"{tile.path} does not hold {tile.width} hashes")
            self._tiles[tile] = hashes
        return self._tiles[tile]

    def _complete(self, start: int, height: int) -> bytes:
        """MTH of the aligned complete subtree of ``2**height`` leaves from ``start``."""
        level, below = divmod(height, TILE_HEIGHT)
        first = start >> (TILE_HEIGHT * level)  # index among level-``level`` tile hashes
        tile = tile_for(level, first // TILE_WIDTH, self.size)
        offset = first % TILE_WIDTH
        hashes = self._hashes(tile)[offset : offset + (1 << below)]
        return MerkleTree(hashes).root()

    def subtree_root(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) (RFC 9162 §2.1.1) for ``0 <= start < end <= size``."""
        if not 0 <= start < end <= self.size:
            raise ValueError(f"range [{start}, {end}) not within a tree of {self.size}")
        count = end - start
        if count & (count - 1) == 0 and start % count == 0:
            return self._complete(start, count.bit_length() - 1)
        split = 1 << ((count - 1).bit_length() - 1)
        return node_hash(
            self.subtree_root(start, start + split), self.subtree_root(start + split, end)
        )

    def root(self) -> bytes:
        """MTH(D[0:size]); the empty tree's root is SHA-256 of nothing."""
        return EMPTY_ROOT if self.size == 0 else self.subtree_root(0, self.size)

    def leaf_hash(self, index: int) -> bytes:
        return self.subtree_root(index, index + 1)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), any size up to this tree's."""
        return inclusion_proof_from(self.subtree_root, index, self.size if size is None else size)

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:size]) (RFC 9162 §2.1.4.1)."""
        new = self.size if size is None else size
        return consistency_proof_from(self.subtree_root, old_size, new)
