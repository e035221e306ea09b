"""The log as C2SP tlog-tiles files: ``cachet coordinator export-tiles --data DIR --out DIR``.

The folder can be served by any static web server or copied anywhere; a mirror verifies it with
the log's public key alone (``provenance.tiles.TileTree``, ``provenance.signed_note``).

- Incremental: the folder's ``checkpoint`` says which tree size it already holds; only the tiles
  and entry bundles a newer checkpoint adds are written (``provenance.tiles.new_tiles``).
- Order: tiles and bundles first, then the checkpoint. Before the checkpoint is replaced, the
  root is recomputed from the files on disk and must equal the checkpoint's, and each new full
  tile must hash to its hash one level up: a mirror never sees a checkpoint whose tiles are
  missing or wrong (entries are checked against their leaf hashes as they are read).
- Atomic: every file is written under a temporary name, fsynced and renamed, so a reader sees a
  whole file or none; a crash leaves the old checkpoint, and the next run writes the same bytes.
- Immutable: a tile's bytes never change. A partial tile (``<N>.p/<W>``) is kept for clients of
  the checkpoint that needed it until its full tile exists; then the ``<N>.p`` folder goes.
- Refused: a checkpoint that the log key does not sign, a folder holding another log (origin), a
  larger tree than the database, or a tree the log's is not an extension of (a mirror of
  something else, or a restored or rewritten database).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from billing.log.tile_source import TileSource
from provenance.checkpoint import Checkpoint, parse_checkpoint
from provenance.errors import CachetError, FormatError
from provenance.keys import VerifierKey
from provenance.merkle import MerkleTree
from provenance.signed_note import open_note, split_note
from provenance.tiles import TILE_HEIGHT, Tile, TileTree, new_tiles, unpack_tile

CHECKPOINT_FILE = "checkpoint"
LOCK_FILE = ".export-lock"


class ExportError(Exception):
    """The export can't proceed; the message is the one-line reason the CLI prints."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    previous_size: int
    size: int
    tiles: int  # level tiles written
    bundles: int  # entry bundles written


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name in the same folder, fsync, rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One exporter per folder at a time (a second one fails rather than interleaving)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"another export into {out} is running") from None
        yield


def exported_checkpoint(out: Path) -> Checkpoint | None:
    """The checkpoint the folder holds (None: an empty folder); ExportError if unreadable."""
    path = out / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        text, _ = split_note(path.read_bytes())
        return parse_checkpoint(text)
    except FormatError as exc:
        raise ExportError(f"{path} is not a checkpoint note: {exc}") from None


def read_tile_file(out: Path, tile: Tile) -> list[bytes]:
    """The hashes of a tile file in the folder."""
    try:
        return unpack_tile((out / tile.path).read_bytes(), tile.width)
    except FormatError as exc:
        raise ExportError(f"{out / tile.path}: {exc}") from None


async def export_tiles(source: TileSource, out: Path, log_key: VerifierKey) -> ExportResult:
    """Bring ``out`` up to the latest checkpoint of the log ``source`` reads."""
    latest = await source.latest_checkpoint()
    if latest is None:
        raise ExportError("the log has no checkpoint yet")
    try:
        checkpoint = parse_checkpoint(open_note(latest.note.encode("utf-8"), [log_key]))
    except CachetError as exc:
        raise ExportError(
            f"the latest checkpoint does not verify with the log key: {exc}"
        ) from None
    with _exclusive(out):
        previous = exported_checkpoint(out)
        old_size = 0 if previous is None else previous.size
        if previous is not None and previous.origin != checkpoint.origin:
            raise ExportError(f"{out} holds log {previous.origin!r}, not {checkpoint.origin!r}")
        if old_size > checkpoint.size:
            raise ExportError(f"{out} holds a tree of {old_size}, the log has {checkpoint.size}")
        written = list(new_tiles(old_size, checkpoint.size))
        for tile in written:
            for item in [tile] if tile.level != 0 else [tile, tile.entries_bundle()]:
                write_atomically(out / item.path, await source.content(item))
                if not item.is_partial:
                    shutil.rmtree(out / item.partials_dir, ignore_errors=True)
        _check_tree(out, checkpoint, previous, written)
        path = out / CHECKPOINT_FILE
        if not path.exists() or path.read_text(encoding="utf-8") != latest.note:
            write_atomically(path, latest.note.encode("utf-8"))
            _fsync_dir(out)
    bundles = sum(1 for tile in written if tile.level == 0)
    return ExportResult(old_size, checkpoint.size, len(written), bundles)


def _check_tree(
    out: Path, checkpoint: Checkpoint, previous: Checkpoint | None, written: list[Tile]
) -> None:
    """The files on disk describe the checkpoint's tree: the root from the tiles is the
    checkpoint's, the tree the folder held before is its prefix (a mirror never sees a fork),
    and each full tile written hashes to its hash in the level above."""
    tree = TileTree(lambda tile: read_tile_file(out, tile), checkpoint.size)
    if tree.root() != checkpoint.root_hash:
        raise ExportError(f"the tiles in {out} do not hash to the checkpoint's root")
    if (
        previous is not None
        and previous.size
        and previous.root_hash != tree.subtree_root(0, previous.size)
    ):
        raise ExportError(f"the log is not an extension of the tree {out} holds (a fork?)")
    for tile in written:
        if not tile.is_partial:
            start = tile.index << (tile.tree_level + TILE_HEIGHT)
            span = 1 << (tile.tree_level + TILE_HEIGHT)
            if MerkleTree(read_tile_file(out, tile)).root() != tree.subtree_root(
                start, start + span
            ):
                raise ExportError(f"{tile.path} does not hash to its parent in the tree")
