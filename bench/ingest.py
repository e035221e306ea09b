"""Coordinator ingest throughput on one core with SQLite (issue 5 target: >= 100k records/s).

Run: .venv/bin/python -m bench.ingest [--batches N] [--batch-size N] [--synchronous FULL|NORMAL]
     [--http]

Seals N batches of 1,000 records (not timed), then times the coordinator ingesting them: parse,
key lookup, signature, Merkle root over the records, chain check, one SQLite transaction per batch
(batch row + one row per record, upserted for dedup) with WAL and the chosen synchronous mode.
``--http`` posts through the aiohttp app on 127.0.0.1 instead of calling the Ingestor. Also
reports the stages separately (generic parse and verify, and the fast path ingest takes:
``parse_canonical_batch``, ``verify_canonical_batch``) and the sequencer's time to integrate
and sign.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from billing.api.app import build_app
from billing.config import CoordinatorConfig
from billing.service import Coordinator
from provenance.batches import (
    ZERO_HASH_HEX,
    format_sealed_batch,
    header_hash,
    parse_canonical_batch,
    parse_sealed_batch,
    seal_batch,
    verify_batch,
    verify_canonical_batch,
)
from provenance.keys import KeyRing, SigningKey, format_verifier_key
from provenance.records import Record, format_timestamp

EDGE = "edge-bench"


def make_batches(count: int, size: int, key: SigningKey) -> list[bytes]:
    base = datetime.now(UTC) - timedelta(hours=1)
    prev, bodies = ZERO_HASH_HEX, []
    for seq in range(count):
        records = [
            Record(
                request_id=f"req-{seq:06d}-{i:06d}",
                ts=format_timestamp(base + timedelta(milliseconds=seq * size + i)),
                edge=EDGE,
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
            for i in range(size)
        ]
        sealed = seal_batch(records, EDGE, seq, prev, key)
        prev = header_hash(sealed.header)
        bodies.append(format_sealed_batch(sealed))
    return bodies


async def open_coordinator(data: Path, synchronous: str) -> Coordinator:
    config = CoordinatorConfig(
        data=str(data), sqlite_synchronous=synchronous, checkpoint_every_batches=1_000_000
    )
    coordinator = await Coordinator.open(config)
    return coordinator


async def enrol(coordinator: Coordinator, key: SigningKey) -> None:
    token = (await coordinator.issue_enrolment_token()).token
    await coordinator.enrol(token, EDGE, format_verifier_key(key.verifier))


async def run_direct(bodies: list[bytes], data: Path, synchronous: str, key: SigningKey) -> float:
    coordinator = await open_coordinator(data, synchronous)
    await enrol(coordinator, key)
    start = time.perf_counter()
    for body in bodies:
        await coordinator.ingestor.ingest(body, None)
    elapsed = time.perf_counter() - start
    seq_start = time.perf_counter()
    checkpoint = await coordinator.sequencer.flush()
    print(f"sequencer: {checkpoint.size} leaves integrated + signed in "
          f"{(time.perf_counter() - seq_start) * 1000:.1f} ms")  # fmt: skip
    await coordinator.close()
    return elapsed


async def run_http(bodies: list[bytes], data: Path, synchronous: str, key: SigningKey) -> float:
    holder: list[Coordinator] = []

    async def opener() -> Coordinator:
        holder.append(await open_coordinator(data, synchronous))
        return holder[0]

    runner = web.AppRunner(build_app(opener))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await enrol(holder[0], key)
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        for body in bodies:
            async with session.post(f"http://127.0.0.1:{port}/v1/batches", data=body) as r:
                assert r.status == 200, await r.text()
        elapsed = time.perf_counter() - start
    await runner.cleanup()
    return elapsed


def time_stages(bodies: list[bytes], key: SigningKey) -> dict[str, float]:
    """Seconds per stage: the generic reference path and the fast path ingest takes."""
    ring = KeyRing([key.verifier])
    times: dict[str, float] = {}
    start = time.perf_counter()
    parsed = [parse_sealed_batch(body) for body in bodies]
    times["parse"] = time.perf_counter() - start
    start = time.perf_counter()
    for sealed in parsed:
        verify_batch(sealed, ring)
    times["verify"] = time.perf_counter() - start
    start = time.perf_counter()
    fast = [parse_canonical_batch(body) for body in bodies]
    times["fast_parse"] = time.perf_counter() - start
    start = time.perf_counter()
    for batch in fast:
        verify_canonical_batch(batch, ring)
    times["fast_verify"] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--http", action="store_true")
    args = parser.parse_args()
    key = SigningKey(EDGE, bytes(range(32)))
    bodies = make_batches(args.batches, args.batch_size, key)
    total = args.batches * args.batch_size
    stages = time_stages(bodies, key)
    with tempfile.TemporaryDirectory(prefix="cachet-bench-ingest-") as folder:
        run = run_http if args.http else run_direct
        elapsed = asyncio.run(run(bodies, Path(folder), args.synchronous, key))
    report = {
        "records": total,
        "batch_size": args.batch_size,
        "synchronous": args.synchronous,
        "path": "http" if args.http else "ingestor",
        "records_per_s": round(total / elapsed),
    }
    report.update({f"{name}_records_per_s": round(total / s) for name, s in stages.items()})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
