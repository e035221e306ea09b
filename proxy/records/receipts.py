"""ReceiptIndex: request id -> record, batch header, signature and inclusion proof (RFC 9162).

The index maps each request id to the batch file (by seq) holding it, as a sorted array of
64-bit hashes of the batch's ids (8 bytes per record; verified against the batch itself when
found, so a collision costs one more read, never a wrong receipt). It is built lazily and newest
first: a ``lookup`` searches the batch files (pending and ``acked/``) from the highest seq down,
reading a file it has not indexed yet only when the batches after it did not hold the id, so a
receipt for a recent request reads a few files however many are kept; files that are gone
(pruned) are forgotten. The ids are taken from the file's bytes by one regular expression, not
a JSON parse. ``max_entries`` bounds the memory (the oldest batches' arrays go first).

Why: the index used to parse every batch file on disk at the first lookup and keep a dict entry
(~150 bytes) per record. With the forwarder's default of 10,000 acked batches kept that was
~10 million entries (over a gigabyte) and, at ~11 ms per 1,000-record batch on the dev box,
close to two minutes for the first receipt (docs/design/spool.md).

Records still in the spool (not yet sealed) are found by a byte search of the segment files,
O(spool size) per miss: an admin endpoint only. A segment is read in pieces of SPOOL_PIECE_BYTES
and only up to its written end: a mapped writer's segment is preallocated, its frames followed
by zeros (docs/design/spool.md "Frames"), and a lookup must not read megabytes of them.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import re
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from provenance.batches import (
    BatchHeader,
    header_to_obj,
    parse_canonical_batch_fast,
    parse_sealed_batch,
)
from provenance.errors import FormatError
from provenance.merkle import MerkleTree
from provenance.records import Record, record_from_obj, record_leaf_hash, record_to_obj
from proxy.records.batch_files import split_batch_file
from proxy.records.sealer import list_batches, spool_folders
from proxy.records.segments import (
    FRAME_HEADER_BYTES,
    ZERO_HEADER,
    decode_chunk,
    frame_at,
    frame_needs,
)
from proxy.records.spool import list_segments, segment_name

# A record's request id as it appears in the batch file (RFC 8785: visible ASCII, with '"' and
# '\' escaped). Only a key can be preceded by an unescaped quote, and no header field is named
# request_id.
_REQUEST_ID = re.compile(rb'"request_id":"((?:[^"\\]|\\.)*)"')
# Pieces a segment is read in: at least twice the largest frame (segments.MAX_PAYLOAD_BYTES),
# so that the next piece, which starts at the frame a piece's end cut, moves on by half or more.
SPOOL_PIECE_BYTES = 4 << 20


def _key(escaped_id: bytes) -> int:
    return hash(escaped_id)  # per process, as the index is; 64-bit on 64-bit builds


class ReceiptIndex:
    def __init__(
        self, batches_dir: Path, spool_dir: Path, *, max_entries: int = 10_000_000
    ) -> None:
        self.batches_dir, self.spool_dir = Path(batches_dir), Path(spool_dir)
        self.max_entries = max_entries
        self._keys_by_seq: dict[int, array[int]] = {}  # sorted id hashes of each indexed batch
        self._entries = 0
        self.files_indexed = 0  # batch files read to index them, since start (tests, metrics)

    @property
    def indexed_ids(self) -> int:
        """Request ids held in the index now (what ``max_entries`` bounds)."""
        return self._entries

    def _batch_files(self) -> dict[int, Path]:
        found = list_batches(self.batches_dir / "acked") + list_batches(self.batches_dir)
        return dict(found)

    def _refresh(self) -> dict[int, Path]:
        files = self._batch_files()
        for seq in [s for s in self._keys_by_seq if s not in files]:
            self._forget(seq)
        return files

    def _keys(self, seq: int, path: Path) -> array[int] | None:
        """The batch's sorted id hashes, indexing it on first use; None if it is gone."""
        keys = self._keys_by_seq.get(seq)
        if keys is not None:
            return keys
        data = self._read_batch(path)
        if data is None:
            return None
        self.files_indexed += 1
        keys = array("q", sorted(_key(raw) for raw in _REQUEST_ID.findall(data)))
        self._keys_by_seq[seq] = keys
        self._entries += len(keys)
        while self._entries > self.max_entries and len(self._keys_by_seq) > 1:
            self._forget(min(self._keys_by_seq))
        return keys

    def _forget(self, seq: int) -> None:
        self._entries -= len(self._keys_by_seq.pop(seq, ()))

    def lookup(self, request_id: str) -> dict[str, Any] | None:
        """The record, and once sealed its signed batch header and inclusion proof; else None."""
        files = self._refresh()
        key = _key(json.dumps(request_id)[1:-1].encode())
        for seq in sorted(files, reverse=True):
            keys = self._keys(seq, files[seq])
            if keys is None:
                continue
            at = bisect.bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                receipt = self._from_batch(files[seq], request_id)
                if receipt is not None:
                    return receipt
        return self._from_spool(request_id)

    def _read_batch(self, path: Path) -> bytes | None:
        """A listed batch file's sealed batch (inflated, of any layout), also if the forwarder
        moved it to acked/ meanwhile."""
        for candidate in (path, self.batches_dir / "acked" / path.name):
            try:
                data = candidate.read_bytes()
            except FileNotFoundError:
                continue
            return split_batch_file(data)[0]
        return None

    def _from_batch(self, path: Path, request_id: str) -> dict[str, Any] | None:
        data = self._read_batch(path)
        if data is None:
            return None
        fast = parse_canonical_batch_fast(data)  # leaf hashes from the bytes, compiled
        if fast is None:
            return self._from_any_batch(data, request_id)
        ids = [fields[0] for fields in fast.records]
        if request_id not in ids:
            return None
        index = ids.index(request_id)
        record = record_from_obj(json.loads(fast.records_json)[index])
        return self._receipt(record, fast.header, fast.signature, index, fast.leaf_hashes)

    def _from_any_batch(self, data: bytes, request_id: str) -> dict[str, Any] | None:
        """The generic parser's path, for a batch file not in the canonical layout."""
        try:
            batch = parse_sealed_batch(data)
        except FormatError:
            return None
        ids = [record.request_id for record in batch.records]
        if request_id not in ids:
            return None
        index = ids.index(request_id)
        leaves = [record_leaf_hash(record) for record in batch.records]
        return self._receipt(batch.records[index], batch.header, batch.signature, index, leaves)

    @staticmethod
    def _receipt(
        record: Record, header: BatchHeader, signature: bytes, index: int, leaves: Sequence[bytes]
    ) -> dict[str, Any]:
        return {
            "record": record_to_obj(record),
            "batch": {
                "header": header_to_obj(header),
                "signature": base64.b64encode(signature).decode("ascii"),
            },
            "index": index,
            "inclusion_proof": [node.hex() for node in MerkleTree(leaves).inclusion_proof(index)],
        }

    def _from_spool(self, request_id: str) -> dict[str, Any] | None:
        needle = b'"request_id":' + json.dumps(request_id).encode()
        segments = [
            folder / segment_name(number)
            for folder in spool_folders(self.spool_dir).values()
            for number in list_segments(folder)
        ]
        for path in segments:
            try:
                with path.open("rb") as file:
                    if not _holds(file.fileno(), needle):
                        continue
                    for payload in _payloads(file.fileno()):
                        if needle not in payload:
                            continue
                        for line in decode_chunk(payload).records:
                            if needle in line:
                                record: dict[str, Any] = json.loads(line)
                                return {"record": record, "batch": None}
            except FileNotFoundError:
                continue
        return None


def _holds(fd: int, needle: bytes) -> bool:
    """Whether the segment's bytes up to its written end hold ``needle`` (read in pieces that
    overlap by less than its length, so none is missed at a piece's end)."""
    offset, size = 0, max(SPOOL_PIECE_BYTES, 2 * len(needle))
    while True:
        data = os.pread(fd, size, offset)
        if needle in data:
            return True
        # No frame holds eight zero bytes in a row (segments.ZERO_HEADER), nor ends with a zero
        # byte: a piece ending with them has reached a mapped writer's zero-filled tail.
        if len(data) < size or data.endswith(ZERO_HEADER):
            return False  # its end, or its written end
        offset += len(data) - len(needle) + 1


def _payloads(fd: int) -> Iterator[bytes]:
    """The payloads of the segment's valid frames from its start, up to the first that is not
    one (a zero header: the written end; a torn or corrupt frame), read in pieces."""
    offset, size = 0, SPOOL_PIECE_BYTES
    while True:
        data = os.pread(fd, size, offset)
        at, end = 0, frame_at(data, 0)
        while end >= 0:
            yield data[at + FRAME_HEADER_BYTES : end]
            at, end = end, frame_at(data, end)
        if len(data) < size or not (needs := frame_needs(data, at)):
            return
        offset += at
        size = max(SPOOL_PIECE_BYTES, needs)
