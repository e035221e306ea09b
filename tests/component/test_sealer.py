"""Sealer: batches from the spool, hash chain, exactly-once across crashes, bad records."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.batches import (
    ZERO_HASH_HEX,
    header_hash,
    parse_sealed_batch,
    verify_batch,
    verify_chain,
)
from provenance.batches import chain_head as head_of
from provenance.keys import KeyRing, generate_signing_key
from provenance.merkle import verify_inclusion
from provenance.records import (
    Record,
    parse_record,
    record_from_obj,
    record_leaf_hash,
    record_to_canonical_bytes,
)
from proxy.records.batch_files import read_batch_file
from proxy.records.receipts import ReceiptIndex
from proxy.records.sealer import Sealer, check_record, list_batches
from proxy.records.segments import encode_frame
from proxy.records.spool import SpoolWriter, list_segments, open_spool, segment_name
from tests.unit.provenance.strategies import records

EDGE = "edge-1"
KEY = generate_signing_key(EDGE, bytes(range(32)))


def record(i: int, edge: str = EDGE, request_id: str | None = None) -> bytes:
    return record_to_canonical_bytes(
        Record(
            request_id=f"req-{i}" if request_id is None else request_id,
            ts=f"2026-11-27T03:00:{i % 60:02d}.{i % 1000:03d}Z",
            edge=edge,
            method="GET",
            status=200,
            cache="hit",
            tier="memory",
            bytes=i,
            origin_bytes=0,
        )
    )


def spool_records(spool_dir: Path, ids: range, segment_bytes: int = 64 << 20) -> None:
    writer = SpoolWriter(spool_dir, segment_bytes=segment_bytes)
    writer.open()
    for i in ids:
        writer.append(record(i))
        writer.flush()
    writer.close()


def sealed_ids(batches_dir: Path) -> list[str]:
    ids = []
    for _, path in list_batches(batches_dir):
        ids += [r.request_id for r in parse_sealed_batch(read_batch_file(path)[0]).records]
    return ids


def make_sealer(tmp_path: Path, **kwargs: int) -> Sealer:
    return Sealer(tmp_path / "spool", tmp_path / "batches", KEY, EDGE, **kwargs)


@settings(max_examples=150, deadline=None)
@given(records(edge=EDGE))
def test_fast_check_accepts_every_valid_record(rec: Record) -> None:
    """Canonical record bytes (RFC 8785) pass the fast check and yield the record's ts."""
    assert check_record(record_to_canonical_bytes(rec), EDGE, {}) == rec.ts


@settings(max_examples=150, deadline=None)
@given(records(edge=EDGE), st.data())
def test_fast_check_never_accepts_what_does_not_parse(rec: Record, data: st.DataObject) -> None:
    """Any byte mutation the check accepts is a valid, canonical record of this edge."""
    raw = bytearray(record_to_canonical_bytes(rec))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw) - 1))]
    if check_record(bytes(raw), EDGE, {}) is not None:
        parsed = parse_record(bytes(raw))
        assert record_to_canonical_bytes(parsed) == bytes(raw)
        assert parsed.edge == EDGE


@pytest.mark.parametrize(
    "payload",
    [
        record(1, edge="other-edge"),
        record(1).replace(b"03:00:01", b"03:00:61"),
        record(1).replace(b"2026-11-27", b"2026-02-30"),
        record(1).replace(b'"manifest":null', b'"manifest":"sha256:' + b"a" * 64 + b'"'),
        b'{"v":1}',
    ],
)
def test_fast_check_refuses(payload: bytes) -> None:
    assert check_record(payload, EDGE, {}) is None


def test_seals_full_batches_and_chains_them(tmp_path: Path) -> None:
    spool_records(tmp_path / "spool", range(25))
    sealer = make_sealer(tmp_path, max_records=10)
    sealer.recover()
    paths = [p for _, p in list_batches(tmp_path / "batches")]
    assert len(paths) == 3
    head = None
    for seq, path in enumerate(paths):
        batch = parse_sealed_batch(read_batch_file(path)[0])
        verify_batch(batch, KeyRing([KEY.verifier]))
        verify_chain(head, batch.header)  # prev = hash of the previous header, seq + 1
        assert batch.header.seq == seq
        head = head_of(batch.header)
    assert parse_sealed_batch(read_batch_file(paths[0])[0]).header.prev == ZERO_HASH_HEX
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(25)]
    assert sealer.chain_head == (2, head.header_hash if head else "")


def test_partial_batch_waits_for_max_interval(tmp_path: Path) -> None:
    sealer = make_sealer(tmp_path, max_records=10, max_interval_ms=1000)
    sealer.recover()
    spool_records(tmp_path / "spool", range(3))
    assert sealer.seal_ready(5_000) == []
    assert sealer.seal_ready(5_999) == []
    assert len(sealer.seal_ready(6_000)) == 1
    assert sealed_ids(tmp_path / "batches") == ["req-0", "req-1", "req-2"]


def test_consumed_segments_are_deleted(tmp_path: Path) -> None:
    spool_records(tmp_path / "spool", range(40), segment_bytes=1000)
    before = list_segments(tmp_path / "spool")
    sealer = make_sealer(tmp_path)
    sealer.recover()
    after = list_segments(tmp_path / "spool")
    assert len(before) > 2
    assert after == before[-1:]


def test_restart_does_not_reseal(tmp_path: Path) -> None:
    spool_records(tmp_path / "spool", range(5))
    make_sealer(tmp_path).recover()
    spool_records(tmp_path / "spool", range(5, 8))
    second = make_sealer(tmp_path)
    second.recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(8)]
    assert second.chain_head is not None
    assert second.chain_head[0] == 1


def test_crash_between_batch_and_marker_seals_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch file is durable but the consumption marker is not: recovery trusts the batch."""
    spool_records(tmp_path / "spool", range(5))
    first = make_sealer(tmp_path)
    first.recover()
    spool_records(tmp_path / "spool", range(5, 9))
    with monkeypatch.context() as patch:

        def crash(*_args: object) -> None:
            raise OSError("simulated crash")

        patch.setattr(Sealer, "_write_marker", crash)
        with pytest.raises(OSError, match="simulated"):
            first.seal_ready(0, force=True)
    spool_records(tmp_path / "spool", range(9, 11))
    second = make_sealer(tmp_path)
    second.recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(11)]
    headers = [
        parse_sealed_batch(read_batch_file(p)[0]).header
        for _, p in list_batches(tmp_path / "batches")
    ]
    assert [h.seq for h in headers] == [0, 1, 2]
    assert headers[2].prev == header_hash(headers[1])


@pytest.mark.parametrize("mapped", ["1", "0"], ids=["mapped", "write"])
def test_a_crash_that_loses_sealed_spool_bytes_loses_no_later_record(
    tmp_path: Path, mapped: str
) -> None:
    """The sealer does not fsync the spool bytes it seals: their batch holds the records
    (docs/design/spool.md, "Durability"). A machine crash can then leave a segment shorter than
    the position a durable batch was sealed up to. Every record written after the restart is
    still sealed, once: the new writer appends in a new segment, never after what is left."""
    spool_dir = tmp_path / "spool"
    environ = {"CACHET_SPOOL_MAPPED": mapped}
    writer = open_spool(spool_dir, environ=environ)
    for i in range(6):
        assert writer.append(record(i))
        writer.flush()
    writer.close()
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(6)]
    # The crash: the last three frames never reached the disk.
    os.truncate(spool_dir / segment_name(0), sum(len(encode_frame(record(i))) for i in range(3)))
    writer = open_spool(spool_dir, environ=environ)
    for i in range(6, 9):
        assert writer.append(record(i))
        writer.flush()
    writer.close()
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(9)]
    assert not (spool_dir / "quarantine").exists()


def test_crash_before_rename_leaves_no_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool_records(tmp_path / "spool", range(3))
    sealer = make_sealer(tmp_path)
    with monkeypatch.context() as patch:

        def crash(*_args: object) -> None:
            raise OSError("simulated crash")

        patch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="simulated"):
            sealer.recover()
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == ["req-0", "req-1", "req-2"]
    assert not list((tmp_path / "batches").glob("*.tmp"))


def test_invalid_records_are_quarantined_not_sealed(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    writer.open()
    for payload in [record(0), b'{"not":"a record"}', record(1, edge="x"), record(2)]:
        writer.append(payload)
    writer.close()
    sealer = make_sealer(tmp_path)
    sealer.recover()
    assert sealed_ids(tmp_path / "batches") == ["req-0", "req-2"]
    assert sealer.quarantined_records == 2
    assert len(list((tmp_path / "spool" / "quarantine").glob("*.record"))) == 2


def test_corrupt_frame_in_old_segment_is_skipped(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool_records(spool, range(3))
    segment = spool / "0000000000000000.seg"
    raw = bytearray(segment.read_bytes())
    raw[20] ^= 0x01  # inside record 0
    segment.write_bytes(bytes(raw))
    spool_records(spool, range(3, 5))  # open() sees the damage, starts a new segment
    make_sealer(tmp_path).recover()
    assert sealed_ids(tmp_path / "batches") == ["req-1", "req-2", "req-3", "req-4"]
    assert len(list((spool / "quarantine").glob("*.bad"))) == 1


def test_signature_is_over_the_header(tmp_path: Path) -> None:
    spool_records(tmp_path / "spool", range(2))
    make_sealer(tmp_path).recover()
    ((_, path),) = list_batches(tmp_path / "batches")
    batch = parse_sealed_batch(read_batch_file(path)[0])
    assert base64.b64encode(batch.signature).decode() in read_batch_file(path)[0].decode()
    verify_batch(batch, KeyRing([KEY.verifier]))


@pytest.mark.asyncio
async def test_run_seals_in_a_thread_until_stopped(tmp_path: Path) -> None:
    sealer = make_sealer(tmp_path, max_records=1000, max_interval_ms=40)
    stop = asyncio.Event()
    task = asyncio.create_task(sealer.run(lambda: 0, stop))
    spool_records(tmp_path / "spool", range(4))
    await asyncio.sleep(0.05)
    stop.set()
    await task
    assert sealed_ids(tmp_path / "batches") == [f"req-{i}" for i in range(4)]


def test_receipt_proves_inclusion_in_the_batch(tmp_path: Path) -> None:
    """RFC 9162 §2.1.3.2: the receipt's proof leads from the record's leaf to the header root."""
    spool_records(tmp_path / "spool", range(7))
    make_sealer(tmp_path, max_records=5).recover()
    index = ReceiptIndex(tmp_path / "batches", tmp_path / "spool")
    receipt = index.lookup("req-6")
    assert receipt is not None
    header = receipt["batch"]["header"]
    assert receipt["index"] == 1
    assert header["seq"] == 1
    leaf = record_leaf_hash(record_from_obj(receipt["record"]))
    proof = [bytes.fromhex(node) for node in receipt["inclusion_proof"]]
    verify_inclusion(leaf, 1, header["count"], proof, bytes.fromhex(header["root"]))
    (tmp_path / "batches" / "acked").mkdir()
    for _, path in list_batches(tmp_path / "batches"):
        path.rename(tmp_path / "batches" / "acked" / path.name)
    assert index.lookup("req-0") is not None
    assert index.lookup("nope") is None


def test_receipt_of_unsealed_record_has_no_batch(tmp_path: Path) -> None:
    spool_records(tmp_path / "spool", range(2))
    receipt = ReceiptIndex(tmp_path / "batches", tmp_path / "spool").lookup("req-1")
    assert receipt == {"record": json.loads(record(1)), "batch": None}
