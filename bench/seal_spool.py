"""Seal + sign throughput from a spool on one core (issue 4 target: >= 200k records/s).

Run: .venv/bin/python bench/seal_spool.py [--records N] [--batch N]
Writes N records to a spool in a temp folder, then times Sealer.recover() sealing all of them:
reading segments, the frame CRC, the record fast check, leaf hashes, roots, one Ed25519
signature per batch and the fsynced batch files.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from provenance.keys import generate_signing_key
from provenance.records import Record, record_to_canonical_bytes
from proxy.records.sealer import Sealer
from proxy.records.spool import SpoolWriter


def fill_spool(spool_dir: Path, count: int) -> None:
    writer = SpoolWriter(spool_dir)
    writer.open()
    for i in range(count):
        record = Record(
            request_id=f"req-{i:012d}",
            ts=f"2026-11-27T03:{(i // 60_000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z",
            edge="edge-1",
            method="GET",
            status=200,
            cache="hit" if i % 5 else "miss",
            tier="memory",
            bytes=1000 + i,
            origin_bytes=0,
            content_id="sha256:" + f"{i:064x}",
            creator="alice",
            manifest="sha256:" + "ab" * 32,
        )
        writer.append(record_to_canonical_bytes(record))
        if i % 64 == 63:
            writer.flush()
    writer.close()


def time_seal(count: int, batch: int) -> float:
    key = generate_signing_key("edge-1", bytes(range(32)))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        fill_spool(root / "spool", count)
        sealer = Sealer(root / "spool", root / "batches", key, "edge-1", max_records=batch)
        start = time.process_time()  # one core: CPU time, not fsync waits
        sealer.recover()
        elapsed = time.process_time() - start
        assert sealer.sealed_records == count
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rates = sorted(time_seal(args.records, args.batch) for _ in range(args.repeat))
    print(
        f"seal from spool (read + CRC + check + hash + root + sign + write): best "
        f"{rates[-1]:,.0f} records/s CPU, median {rates[len(rates) // 2]:,.0f} (batch {args.batch})"
    )


if __name__ == "__main__":
    main()
