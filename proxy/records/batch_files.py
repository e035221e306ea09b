"""The sealer's files on disk: batch names, the answers and positions each batch carries,
atomic writes.

``batches/<seq>-<segment>-<offset>[-<skip>].batch`` is a sealed batch. Its first line is the
batch's meta (``BatchMeta``): what the batch itself can't hold, the answers it stands for (for
the coordinator's reconciliation) and where it ends in every spool folder (the folder itself and
each worker's ``w<N>/``), so recovery after a crash between the batch and the marker resumes
every spool exactly after the batch. The rest of the file is one gzip member (RFC 1952) of the
batch in the ``format_sealed_batch`` layout: the body the forwarder sends as it is, with
``Content-Encoding: gzip``. One file per batch: the meta is fsynced with the batch, and moving a
batch is one rename, which is whole or not at all.

Why compressed on disk: a default batch is ~1.8 MB of JSON and ~200 KB compressed. The
forwarder compressed it anyway; compressing once at sealing writes, fsyncs and reads back a
ninth of the bytes, and ``acked/`` keeps a ninth of the disk (docs/design/spool.md).

Older layouts are still read: the batch itself on the first line with its meta on the second
(what follows its first newline is JSON, not gzip's magic bytes), and before that the meta
beside the batch in ``<batch>.meta``; moves and deletes take the old file along.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provenance.compression import (
    DECOMPRESS_ERRORS,
    gzip_compress,
    gzip_compress_parts,
    gzip_decompress,
)

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 §2.3.1: ID1, ID2; a meta line or a batch starts "{"
_IOV_MAX = 1024  # POSIX's minimum is 16; Linux allows 1024 parts per writev
BATCH_SUFFIX = ".batch"
META_SUFFIX = ".meta"
_BATCH_NAME = re.compile(r"([0-9]{16})-([0-9]{16})-([0-9]{16})(?:-([0-9]{1,6}))?\.batch")

# Records per sealed batch at most, by default. Each batch costs the edge about two milliseconds
# whatever its size (a file created, two fsyncs, a signature, a POST and the moves after it) and
# the coordinator a transaction. At 16,000 records the records process spends ~13% less CPU per
# record than at 4,000 and the coordinator's ingest ~15% less (docs/design/spool.md); the worst
# case, every record at MAX_RECORD_BYTES, is ~19 MB of JSON, under the coordinator's 32 MiB.
# Light traffic is sealed within batch_max_interval_ms either way; NATS batches are capped to
# fit its max_payload (nats_forwarder.records_per_payload).
DEFAULT_BATCH_MAX_RECORDS = 16_000

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


def batch_file_parts(batch: Sequence[bytes], meta: BatchMeta) -> list[bytes]:
    """A batch file's bytes, in parts for ``write_atomically``: the meta line, then the batch
    (given in parts, ``format_sealed_batch``'s layout) as one gzip member."""
    return [meta.to_json(), b"\n", gzip_compress_parts(batch)]


def _member_start(data: bytes) -> int:
    """Where the gzip member of a compressed batch file starts (after its meta line), or -1
    for a file of the plain layout (the batch's line, its meta line after it) or any other."""
    end = data.find(b"\n")
    if end < 0 or data[end + 1 : end + 3] != GZIP_MAGIC:
        return -1
    return end + 1


def _plain_body(data: bytes) -> memoryview:
    """The batch line of a file of the plain layout (the whole file if it has no newline)."""
    end = data.find(b"\n")
    return memoryview(data) if end < 0 else memoryview(data)[:end]


def _layout(data: bytes) -> tuple[int, BatchMeta | None]:
    """(where the gzip member starts, or -1 for the plain layout; the meta in the file)."""
    start = _member_start(data)
    if start >= 0:
        return start, parse_meta(data[: start - 1])
    end = data.find(b"\n")
    return start, None if end < 0 else parse_meta(data[end + 1 :])


def _batch_of(data: bytes, start: int) -> bytes:
    """The sealed batch's bytes. A gzip member that does not inflate gives no bytes: the batch
    then fails to parse, as a corrupt plain batch does."""
    if start < 0:
        return bytes(_plain_body(data))
    try:
        return gzip_decompress(memoryview(data)[start:])
    except DECOMPRESS_ERRORS:
        return b""


def _payload_of(data: bytes, start: int) -> bytes:
    """The batch as the forwarder sends it, one gzip member (a plain batch compressed here)."""
    return gzip_compress(_plain_body(data)) if start < 0 else data[start:]


def split_batch_file(data: bytes) -> tuple[bytes, BatchMeta | None]:
    """(the sealed batch's bytes, its meta) from a batch file's bytes, of any layout; meta None
    when the file has none (sealed before meta moved into it) or it is unreadable."""
    start, meta = _layout(data)
    return _batch_of(data, start), meta


def _with_old_meta(batch_path: Path, meta: BatchMeta | None) -> BatchMeta | None:
    if meta is not None:
        return meta
    try:
        return parse_meta(meta_path(batch_path).read_bytes())
    except OSError:
        return None


def _read(batch_path: Path) -> tuple[bytes, int, BatchMeta | None]:
    """A batch file's bytes, where its gzip member starts (-1: plain layout), and its meta
    (from the file, or an older batch's ``.meta`` beside it). OSError if it can't be read."""
    data = batch_path.read_bytes()
    start, meta = _layout(data)
    return data, start, _with_old_meta(batch_path, meta)


def read_batch_payload(batch_path: Path) -> tuple[bytes, BatchMeta | None]:
    """The batch as the forwarder sends it, one gzip member, and its meta. OSError if the batch
    file can't be read."""
    data, start, meta = _read(batch_path)
    return _payload_of(data, start), meta


def read_batch_file(batch_path: Path) -> tuple[bytes, BatchMeta | None]:
    """A batch file's sealed batch and its meta. OSError if the batch file can't be read."""
    data, start, meta = _read(batch_path)
    return _batch_of(data, start), meta


def read_batch_and_payload(batch_path: Path) -> tuple[bytes, bytes, BatchMeta | None]:
    """The sealed batch, the gzip payload and the meta, from one read of the file (the NATS
    forwarder parses the batch for its header and publishes the payload)."""
    data, start, meta = _read(batch_path)
    return _batch_of(data, start), _payload_of(data, start), meta


def read_meta(batch_path: Path) -> BatchMeta | None:
    """A batch's meta, or None (batches sealed before meta existed, or unreadable); nothing is
    inflated or compressed to find it."""
    try:
        return _read(batch_path)[2]
    except OSError:
        return None


def read_counters(batch_path: Path) -> BatchCounters | None:
    meta = read_meta(batch_path)
    return None if meta is None else meta.counters


def move_batch(path: Path, folder: Path, *, durable: bool = True) -> None:
    """Move a batch (and an older batch's ``.meta`` beside it, first) into ``folder``.
    ``durable``: fsync both folders, so the move survives a machine crash. The forwarder's
    moves to ``acked/`` don't need it: a move lost in a crash leaves the batch pending, and
    sending it again is acknowledged as a duplicate."""
    folder.mkdir(exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(meta_path(path), meta_path(folder / path.name))
    os.replace(path, folder / path.name)
    if durable:
        fsync_directory(folder)
        fsync_directory(path.parent)


def delete_batch(path: Path) -> None:
    path.unlink(missing_ok=True)
    meta_path(path).unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes | Sequence[bytes]) -> None:
    """temp + fsync + rename + fsync(dir): after return, ``path`` holds ``data`` (or its parts,
    one after the other, written with writev: a batch is not joined into one more copy of
    itself first) durably."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        parts = [memoryview(data)] if isinstance(data, bytes) else [memoryview(p) for p in data]
        while parts:
            written = os.writev(fd, parts[:_IOV_MAX])
            while parts and written >= len(parts[0]):  # a short write resumes where it ended
                written -= len(parts[0])
                parts.pop(0)
            if parts and written:
                parts[0] = parts[0][written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
