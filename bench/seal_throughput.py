"""Seal + sign throughput of provenance.batches on one core (issue 4 target: >= 200k records/s).

Run: .venv/bin/python bench/seal_throughput.py [--records N] [--batch N]
Reports records/s for seal_batch (canonical JSON, leaf hashes, Merkle root, one signature per
batch), and the same with the record bytes already canonical (as a sealer reading its spool has).
"""

from __future__ import annotations

import argparse
import time

from provenance.batches import ZERO_HASH_HEX, chain_head, seal_batch, seal_header
from provenance.keys import SigningKey, generate_signing_key
from provenance.merkle import leaf_hash, root_from_leaf_hashes
from provenance.records import Record, record_to_canonical_bytes


def make_records(count: int) -> list[Record]:
    return [
        Record(
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
            sample_rate="1",
        )
        for i in range(count)
    ]


def time_seal(records: list[Record], batch: int, key: SigningKey) -> float:
    prev = ZERO_HASH_HEX
    start = time.perf_counter()
    for seq, offset in enumerate(range(0, len(records), batch)):
        sealed = seal_batch(records[offset : offset + batch], "edge-1", seq, prev, key)
        prev = chain_head(sealed.header).header_hash
    return len(records) / (time.perf_counter() - start)


def time_seal_header(records: list[Record], batch: int, key: SigningKey) -> float:
    encoded = [record_to_canonical_bytes(record) for record in records]
    start = time.perf_counter()
    for offset in range(0, len(encoded), batch):
        chunk = encoded[offset : offset + batch]
        first, last = records[offset].ts, records[offset + len(chunk) - 1].ts
        root = root_from_leaf_hashes([leaf_hash(b) for b in chunk])
        seal_header(root, len(chunk), first, last, "edge-1", 0, ZERO_HASH_HEX, key)
    return len(records) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    records = make_records(args.records)
    key = generate_signing_key("edge-1", bytes(range(32)))
    for name, bench in [
        ("seal_batch from Records (encode + hash + root + sign)", time_seal),
        ("seal_header from canonical bytes (the spool path)", time_seal_header),
    ]:
        rates = sorted(bench(records, args.batch, key) for _ in range(args.repeat))
        print(
            f"{name}: best {rates[-1]:,.0f} records/s, median {rates[len(rates) // 2]:,.0f} "
            f"(batch {args.batch}, {args.repeat} runs)"
        )


if __name__ == "__main__":
    main()
