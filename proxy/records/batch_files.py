"""The sealer's files on disk: batch names, the ``.meta`` file beside each batch, atomic writes.

``batches/<seq>-<segment>-<offset>[-<skip>].batch`` is a sealed batch (``format_sealed_batch``
layout), sent as is; the name's position is where the batch ends in the spool folder itself.
``<batch>.meta`` holds what the batch file can't: the answers it stands for (for the
coordinator's reconciliation) and where it ends in every spool folder (the folder itself and each
worker's ``w<N>/``), so recovery after a crash between the batch and the marker resumes every
spool exactly after the batch. It is written (renamed into place) BEFORE the batch and travels
with it (``acked/``, ``quarantine/``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

BATCH_SUFFIX = ".batch"
META_SUFFIX = ".meta"
_BATCH_NAME = re.compile(r"([0-9]{16})-([0-9]{16})-([0-9]{16})(?:-([0-9]{1,6}))?\.batch")

Position = tuple[int, int, int]  # (segment, offset of a frame, records of it already sealed)


def batch_name(seq: int, segment: int, offset: int, skip: int = 0) -> str:
    """The file name of batch ``seq``, which ends at spool position (segment, offset, skip):
    the frame at ``offset`` of ``segment``, of which the first ``skip`` records are sealed."""
    tail = f"-{skip}" if skip else ""
    return f"{seq:016d}-{segment:016d}-{offset:016d}{tail}{BATCH_SUFFIX}"


def parse_batch_name(name: str) -> tuple[int, int, int, int] | None:
    """(seq, segment, offset, skip) from a batch file name, None for any other file."""
    match = _BATCH_NAME.fullmatch(name)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3]), int(match[4] or 0))


def list_batches(directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of the batch files directly in ``directory``, by seq."""
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            parsed = parse_batch_name(path.name)
            if parsed is not None:
                found.append((parsed[0], path))
    return sorted(found)


def meta_path(batch_path: Path) -> Path:
    return batch_path.with_name(batch_path.name + META_SUFFIX)


@dataclass(frozen=True, slots=True)
class BatchCounters:
    """The answers a sealed batch stands for, for the coordinator's reconciliation
    (docs/billing.md): ``served`` requests answered, of which ``emitted`` have a record in the
    batch and ``dropped`` were refused by a full spool (the rest the sample left out)."""

    served: int
    emitted: int
    dropped: int


@dataclass(frozen=True, slots=True)
class BatchMeta:
    counters: BatchCounters
    positions: Mapping[str, Position] = field(default_factory=dict)  # spool name -> end

    def to_json(self) -> bytes:
        c = self.counters
        return json.dumps(
            {
                "served": c.served,
                "emitted": c.emitted,
                "dropped": c.dropped,
                "positions": {name: list(p) for name, p in sorted(self.positions.items())},
            },
            sort_keys=True,
        ).encode()


def parse_meta(data: bytes) -> BatchMeta | None:
    try:
        obj = json.loads(data)
        counters = BatchCounters(int(obj["served"]), int(obj["emitted"]), int(obj["dropped"]))
        positions = {
            str(name): (int(p[0]), int(p[1]), int(p[2]))
            for name, p in dict(obj.get("positions", {})).items()
        }
        return BatchMeta(counters, positions)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def read_meta(batch_path: Path) -> BatchMeta | None:
    """A batch's meta file, or None (batches sealed before meta files existed, or unreadable)."""
    try:
        return parse_meta(meta_path(batch_path).read_bytes())
    except OSError:
        return None


def read_counters(batch_path: Path) -> BatchCounters | None:
    meta = read_meta(batch_path)
    return None if meta is None else meta.counters


def move_batch(path: Path, folder: Path) -> None:
    """Move a batch and its meta file into ``folder`` (meta first: a batch is never left
    without it), durably."""
    folder.mkdir(exist_ok=True)
    meta = meta_path(path)
    if meta.exists():
        os.replace(meta, folder / meta.name)
    os.replace(path, folder / path.name)
    fsync_directory(folder)
    fsync_directory(path.parent)


def delete_batch(path: Path) -> None:
    path.unlink(missing_ok=True)
    meta_path(path).unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    """temp + fsync + rename + fsync(dir): after return, ``path`` holds ``data`` durably."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_directory(path.parent)


def write_replacing(path: Path, data: bytes) -> None:
    """temp + rename, no fsync of its own: for a batch's meta, written just before the batch,
    whose fsync of the folder then makes the name durable. A process crash keeps both (the page
    cache survives it); after a machine crash a meta file may be empty, and recovery then falls
    back to the batch's name and the marker (docs/design/spool.md)."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
