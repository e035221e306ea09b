"""Attribution + aggregation throughput on one core with SQLite (issue 6 target: >= 500k/s).

Run: .venv/bin/python -m bench.billing_throughput [--batches N] [--batch-size N] [--contents N]

Stores N batches of records straight through the store (not timed: no HTTP, no signatures
checked), sequences them, then times ``Billing.run_attribution``: read each step's batches and
winning rows, attribute against the registry, sum hourly/daily rows, write them with the cursor.
Then times a day close over the result. Prints records/s for both.
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


def _records(start: int, n: int, contents: int) -> list[Record]:
    return [
        Record(
            request_id=f"r{start + i}",
            ts=format_timestamp(T0 + timedelta(milliseconds=start + i)),
            edge=EDGE,
            method="GET",
            status=200,
            cache="hit",
            tier="memory",
            bytes=10_000 + i,
            origin_bytes=0,
            content_id="sha256:" + f"{(start + i) % contents:064x}",
        )
        for i in range(n)
    ]


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
        started = time.perf_counter()
        await billing.run_attribution()
        elapsed = time.perf_counter() - started
        print(f"attribution+aggregation: {n} records in {elapsed:.2f}s = {n / elapsed:,.0f}/s")
        started = time.perf_counter()
        await billing.close_period(period_containing(T0, DAY))
        elapsed = time.perf_counter() - started
        print(f"close day: {elapsed:.2f}s")
        await coordinator.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--contents", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.batch_size, args.contents))
