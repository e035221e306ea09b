"""ReceiptIndex (proxy/records/receipts.py) over many sealed batches: a receipt for a recent
request reads only the newest batch files, ids that JSON escapes are found, a hash collision
never gives a wrong receipt, and the memory bound forgets batches without losing answers.
Every receipt's proof is checked as RFC 9162 §2.1.3.2 says. Unsealed records are found in
spool segments read in pieces, up to a mapped writer's zero-filled tail (docs/design/spool.md
"Frames")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provenance.keys import generate_signing_key
from provenance.merkle import verify_inclusion
from provenance.records import record_from_obj, record_leaf_hash
from proxy.records import receipts as receipts_module
from proxy.records.receipts import ReceiptIndex
from proxy.records.sealer import Sealer, list_batches
from proxy.records.spool import SpoolWriter
from tests.component.test_sealer import record
from tests.component.test_sealer_zero_tail import count_reads, frames, write_segment

EDGE = "edge-1"
KEY = generate_signing_key(EDGE, bytes(range(32)))
QUOTED_ID = 'say-"hi"-\\-now'  # visible ASCII that JSON escapes: the generic parse path


def seal(tmp_path: Path, ids: list[str], per_batch: int) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    writer.open()
    for i, request_id in enumerate(ids):
        writer.append(record(i, request_id=request_id))
        writer.flush()
    writer.close()
    Sealer(tmp_path / "spool", tmp_path / "batches", KEY, EDGE, max_records=per_batch).recover()


def assert_proves(receipt: dict[str, Any] | None, request_id: str) -> None:
    assert receipt is not None and receipt["batch"] is not None
    assert receipt["record"]["request_id"] == request_id
    header = receipt["batch"]["header"]
    leaf = record_leaf_hash(record_from_obj(receipt["record"]))
    proof = [bytes.fromhex(node) for node in receipt["inclusion_proof"]]
    verify_inclusion(leaf, receipt["index"], header["count"], proof, bytes.fromhex(header["root"]))


def test_a_recent_request_reads_only_the_newest_batch(tmp_path: Path) -> None:
    seal(tmp_path, [f"req-{i}" for i in range(200)], per_batch=10)
    assert len(list_batches(tmp_path / "batches")) == 20
    index = ReceiptIndex(tmp_path / "batches", tmp_path / "spool")
    assert_proves(index.lookup("req-199"), "req-199")
    assert index.files_indexed == 1
    assert_proves(index.lookup("req-3"), "req-3")  # the oldest: every batch indexed, once
    assert index.files_indexed == 20
    assert_proves(index.lookup("req-100"), "req-100")
    assert index.lookup("req-unknown") is None
    assert index.files_indexed == 20


def test_ids_that_json_escapes_are_found(tmp_path: Path) -> None:
    seal(tmp_path, ["a-1", QUOTED_ID, "a-3", "a-4"], per_batch=2)
    index = ReceiptIndex(tmp_path / "batches", tmp_path / "spool")
    assert_proves(index.lookup(QUOTED_ID), QUOTED_ID)
    assert_proves(index.lookup("a-4"), "a-4")
    assert index.lookup('say-"hi"') is None


def test_a_hash_collision_never_gives_another_records_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receipts_module, "_key", lambda escaped: 0)  # every id collides
    seal(tmp_path, [f"req-{i}" for i in range(30)], per_batch=10)
    index = ReceiptIndex(tmp_path / "batches", tmp_path / "spool")
    assert_proves(index.lookup("req-4"), "req-4")
    assert index.lookup("req-99") is None


def test_the_memory_bound_forgets_old_batches_and_still_answers(tmp_path: Path) -> None:
    seal(tmp_path, [f"req-{i}" for i in range(100)], per_batch=10)
    index = ReceiptIndex(tmp_path / "batches", tmp_path / "spool", max_entries=25)
    assert_proves(index.lookup("req-0"), "req-0")
    assert index.indexed_ids <= 25
    assert_proves(index.lookup("req-95"), "req-95")
    assert_proves(index.lookup("req-5"), "req-5")


def test_pruned_batches_are_forgotten(tmp_path: Path) -> None:
    seal(tmp_path, [f"req-{i}" for i in range(20)], per_batch=10)
    index = ReceiptIndex(tmp_path / "batches", tmp_path / "spool")
    assert_proves(index.lookup("req-1"), "req-1")
    oldest = list_batches(tmp_path / "batches")[0][1]
    oldest.unlink()
    gone = index.lookup("req-1")  # no batch holds it now; the spool may still (not pruned)
    assert gone is None or gone["batch"] is None
    assert_proves(index.lookup("req-15"), "req-15")


def test_receipts_are_found_before_a_zero_tail_without_reading_it(tmp_path: Path) -> None:
    """An unsealed record in a preallocated segment is found, in a frame cut by a piece's end
    too; a lookup that finds nothing reads about one piece of zeros, not the 64 MiB."""
    spool = tmp_path / "spool"
    data = frames(range(40), per_frame=5)  # frames of ~1.2 KB, pieces of 1,000 bytes
    write_segment(spool, 0, data, size=64 << 20)
    index = ReceiptIndex(tmp_path / "batches", spool)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(receipts_module, "SPOOL_PIECE_BYTES", 1000)
        for i in (0, 17, 39):
            receipt = index.lookup(f"req-{i}")
            assert receipt is not None and receipt["record"]["request_id"] == f"req-{i}"
            assert receipt["batch"] is None
        sizes = count_reads(patch)
        assert index.lookup("req-40") is None
    assert sum(sizes) <= len(data) + 3000
