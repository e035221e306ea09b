"""Attribution + aggregation throughput on one core with SQLite (issue 6 target: >= 500k/s).

Run: .venv/bin/python -m bench.billing_throughput [--batches N] [--batch-size N] [--contents N]
(10M records: ``--batches 10000``; filling takes ~30 s per million records)

Stores N batches of records straight through the store (not timed: no HTTP, no signatures
checked), sequences them, then times ``Billing.run_attribution``: each step's winning records
read from their batches' JSON and summed per group, attributed against the registry,
hourly/daily rows written with the cursor. Then times a day close over the result. Prints
records/s for both, wall clock and CPU time (the CPU time of the whole process, SQLite's thread
included: the figure that does not depend on what else the machine runs).

Traffic: one edge, ``--contents`` assets of one creator, one record per millisecond from
2026-11-27T00:00Z; per 100 records: 85 memory/disk hits, 10 origin misses, 2 ``training`` use,
2 sampled at 0.25, 1 POST (non-billable). Every record is billed or excluded, none lost.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta

from billing.config import CoordinatorConfig
from billing.ingest.pipeline import records_json_of
from billing.ledger.service import Billing
from billing.ledger.sqlite import SqliteLedgerStore
from billing.registry.service import Actor, Registry
from billing.service import Coordinator
from billing.statements import DAY, period_containing
from billing.store.base import EdgeKey, IncomingBatch
from billing.store.sqlite import SqliteStore
from provenance.batches import ZERO_HASH_HEX, batch_log_leaf_hash, header_hash, seal_batch
from provenance.keys import SigningKey, format_verifier_key
from provenance.manifests import (
    Manifest,
    ManifestItem,
    PayoutTerms,
    format_signed_manifest,
    sign_manifest,
)
from provenance.records import Record, format_timestamp

EDGE = "edge-bench"
T0 = datetime(2026, 11, 27, 0, 0, tzinfo=UTC)


def _record(n: int, contents: int) -> Record:
    kind = n % 100
    miss = 85 <= kind < 95
    return Record(
        request_id=f"r{n}",
        ts=format_timestamp(T0 + timedelta(milliseconds=n)),
        edge=EDGE,
        method="POST" if kind == 99 else "GET",
        status=200,
        cache="miss" if miss else "hit",
        tier="origin" if miss else ("disk" if kind % 7 == 0 else "memory"),
        bytes=10_000 + n % 1_000_000,
        origin_bytes=10_000 + n % 1_000_000 if miss else 0,
        content_id="sha256:" + f"{n % contents:064x}",
        sample_rate="0.25" if kind in (95, 96) else "1",
        use="training" if kind in (97, 98) else "view",
    )


def _records(start: int, n: int, contents: int) -> list[Record]:
    return [_record(start + i, contents) for i in range(n)]


async def _fill(store: SqliteStore, batches: int, size: int, contents: int) -> None:
    key = SigningKey(EDGE, b"\x01" * 32)
    enrol = secrets.token_hex(8)
    await store.add_enrolment_token(enrol, "2026-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z")
    await store.enrol_edge(enrol, EDGE, EdgeKey(EDGE, "00", "x", "2026", None), "2026")
    prev = ZERO_HASH_HEX
    for seq in range(batches):
        sealed = seal_batch(_records(seq * size, size, contents), EDGE, seq, prev, key)
        prev = header_hash(sealed.header)
        batch_id = batch_log_leaf_hash(sealed.header, sealed.signature).hex()
        incoming = IncomingBatch(batch_id, sealed.header, sealed.signature, sealed.records,
                                 records_json_of(sealed))  # fmt: skip
        await store.apply_batch(incoming, "2026-11-27T00:00:00.000Z", secrets.token_hex(8))


async def _publish(coordinator: Coordinator, contents: int) -> None:
    key = SigningKey("alice", b"\x02" * 32)
    registry = Registry(coordinator.store, coordinator.clock)
    await registry.add_creator("alice", [format_verifier_key(key.verifier)])
    items = tuple(ManifestItem("sha256:" + f"{i:064x}", f"/c{i}", 100, "video/mp4")
                  for i in range(contents))  # fmt: skip
    manifest = Manifest("alice", key.key_id.hex(), items, "CC-BY-4.0", "allowed",
                        PayoutTerms(10, 20_000), "2026-01-01T00:00:00.000Z")  # fmt: skip
    await registry.publish(format_signed_manifest(sign_manifest(manifest, key)), Actor(None))


async def main(batches: int, size: int, contents: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        config = CoordinatorConfig(data=data, sqlite_synchronous="NORMAL")
        clock_now = [T0 - timedelta(days=1)]
        coordinator = await Coordinator.open(config, lambda: clock_now[0])
        assert isinstance(coordinator.store, SqliteStore)
        await _fill(coordinator.store, batches, size, contents)
        await _publish(coordinator, contents)
        clock_now[0] = T0 + timedelta(days=2)
        await coordinator.sequencer.flush()
        billing = Billing(coordinator, SqliteLedgerStore(coordinator.store))
        await billing.start(background=False)
        n = batches * size
        wall, cpu = time.perf_counter(), time.process_time()
        await billing.run_attribution()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"attribution+aggregation: {n:,} records in {wall:.2f}s = {n / wall:,.0f}/s"
              f" (CPU {cpu:.2f}s = {n / cpu:,.0f}/s)")  # fmt: skip
        days = {T0 + timedelta(days=d) for d in range(n // 86_400_000 + 1)}
        wall, cpu = time.perf_counter(), time.process_time()
        for day in sorted(days):
            await billing.close_period(period_containing(day, DAY))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"close {len(days)} day(s): {wall:.2f}s = {n / wall:,.0f} records/s"
              f" (CPU {cpu:.2f}s)")  # fmt: skip
        await coordinator.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--contents", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.batch_size, args.contents))
