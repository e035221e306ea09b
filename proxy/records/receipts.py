"""ReceiptIndex: request id -> record, batch header, signature and inclusion proof (RFC 9162).

The index maps each request id to the batch file (by seq) holding it. It is built lazily: each
``lookup`` indexes batch files (pending and ``acked/``) it has not seen yet and forgets files
that are gone (pruned). Memory bound: one entry (~150 bytes) per record in the batch files on
disk, i.e. at most (pending + ``max_acked``) batches x ``max_records``; ``max_entries`` caps it
further by forgetting the oldest batches first. Records still in the spool (not yet sealed) are
found by a byte search of the segment files, O(spool size) per miss: an admin endpoint only.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from provenance.batches import header_to_obj, parse_sealed_batch
from provenance.merkle import MerkleTree
from provenance.records import record_leaf_hash, record_to_obj
from proxy.records.sealer import list_batches, spool_folders
from proxy.records.segments import decode_chunk, scan_frames
from proxy.records.spool import list_segments, segment_name


class ReceiptIndex:
    def __init__(
        self, batches_dir: Path, spool_dir: Path, *, max_entries: int = 10_000_000
    ) -> None:
        self.batches_dir, self.spool_dir = Path(batches_dir), Path(spool_dir)
        self.max_entries = max_entries
        self._where: dict[str, int] = {}  # request id -> batch seq
        self._ids_by_seq: dict[int, list[str]] = {}

    def _batch_files(self) -> dict[int, Path]:
        found = list_batches(self.batches_dir / "acked") + list_batches(self.batches_dir)
        return dict(found)

    def _refresh(self) -> dict[int, Path]:
        files = self._batch_files()
        for seq in [s for s in self._ids_by_seq if s not in files]:
            self._forget(seq)
        for seq, path in sorted(files.items()):
            if seq not in self._ids_by_seq:
                self._index(seq, path)
        while len(self._where) > self.max_entries and self._ids_by_seq:
            self._forget(min(self._ids_by_seq))
        return files

    def _index(self, seq: int, path: Path) -> None:
        try:
            obj = json.loads(path.read_bytes())
        except FileNotFoundError:  # moved to acked/ meanwhile: picked up next time
            return
        ids = [str(item["request_id"]) for item in obj["records"]]
        self._ids_by_seq[seq] = ids
        for request_id in ids:
            self._where[request_id] = seq

    def _forget(self, seq: int) -> None:
        for request_id in self._ids_by_seq.pop(seq, []):
            if self._where.get(request_id) == seq:
                del self._where[request_id]

    def lookup(self, request_id: str) -> dict[str, Any] | None:
        """The record, and once sealed its signed batch header and inclusion proof; else None."""
        files = self._refresh()
        seq = self._where.get(request_id)
        path = files.get(seq) if seq is not None else None
        if path is not None:
            receipt = self._from_batch(path, request_id)
            if receipt is not None:
                return receipt
        return self._from_spool(request_id)

    def _from_batch(self, path: Path, request_id: str) -> dict[str, Any] | None:
        for candidate in (path, self.batches_dir / "acked" / path.name):
            try:
                batch = parse_sealed_batch(candidate.read_bytes())
                break
            except FileNotFoundError:
                continue
        else:
            return None
        ids = [record.request_id for record in batch.records]
        if request_id not in ids:
            return None
        index = ids.index(request_id)
        tree = MerkleTree([record_leaf_hash(record) for record in batch.records])
        return {
            "record": record_to_obj(batch.records[index]),
            "batch": {
                "header": header_to_obj(batch.header),
                "signature": base64.b64encode(batch.signature).decode("ascii"),
            },
            "index": index,
            "inclusion_proof": [node.hex() for node in tree.inclusion_proof(index)],
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
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if needle not in data:
                continue
            for payload in scan_frames(data).payloads:
                if needle not in payload:
                    continue
                for line in decode_chunk(payload).records:
                    if needle in line:
                        record: dict[str, Any] = json.loads(line)
                        return {"record": record, "batch": None}
        return None
