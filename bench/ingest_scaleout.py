"""Scale-out ingest throughput (issue 9): records/s through NATS JetStream with 1, 2 and 4
ingest workers, PostgreSQL vs SQLite, batches of 1,000 records.

Run: .venv/bin/python -m bench.ingest_scaleout [--batches N] [--size N] [--workers 1,2,4]

For each backend and worker count: a fresh database (PostgreSQL: its own cachet_bench_<random>
database; SQLite: a temp folder), edges enrolled, ``cachet coordinator ingest-worker`` started
(PostgreSQL: N processes; SQLite: one process with N consumer tasks, SQLite having one writer),
then every batch (pre-sealed, not timed) is published to a fresh stream and the clock runs
until the database holds every record. Each record is verified (signature, Merkle root),
parsed, deduplicated and written in one transaction per batch, as over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from billing.config import CoordinatorConfig
from billing.ingest.nats import StreamNames, connect, ensure_stream, publish_batch
from billing.service import Coordinator
from provenance.batches import SealedBatch, batch_log_leaf_hash, format_sealed_batch
from tests.component.billing.fleet import Edge, signing_key
from tests.services import NATS_URL, create_database, drop_database, ensure_nats, ensure_postgres

EDGES = 8


def _seal_all(batches: int, size: int) -> tuple[list[SealedBatch], list[Edge]]:
    now = datetime.now(UTC)  # the workers check batches against the real clock
    edges = [Edge(f"bench-{i}", signing_key(f"bench-{i}"), epoch=now) for i in range(EDGES)]
    return [edges[n % EDGES].seal(count=size) for n in range(batches)], edges


def _start_workers(
    data: Path, dsn: str | None, names: StreamNames, workers: int
) -> list[subprocess.Popen[bytes]]:
    processes = workers if dsn is not None else 1
    consumers = 1 if dsn is not None else workers
    command = [
        sys.executable, "-m", "cachet.cli", "coordinator", "ingest-worker", "--data", str(data),
        "--nats", NATS_URL, "--stream", names.stream, "--subject-prefix", names.subject_prefix,
        "--durable", names.durable, "--consumers", str(consumers), "--fetch", "4",
    ] + (["--db", dsn] if dsn is not None else [])  # fmt: skip
    env = {**os.environ, "CACHET_COORDINATOR_SQLITE_SYNCHRONOUS": "FULL"}
    started = []
    for n in range(processes):
        log = data / f"worker-{n}.log"
        with log.open("wb") as sink:
            started.append(subprocess.Popen(command, stderr=sink, env=env))
        while b"consuming" not in log.read_bytes():
            if started[-1].poll() is not None:
                raise RuntimeError(f"ingest worker exited at start: {log.read_text()[-500:]}")
            time.sleep(0.05)
    return started


async def _count(c: Coordinator) -> int:
    return int((await c.store._all("SELECT COUNT(*) FROM record_ids"))[0][0])  # type: ignore[attr-defined]


async def run_one(dsn: str | None, workers: int, batches: int, size: int) -> float:
    data = Path(tempfile.mkdtemp(prefix="cachet-bench-"))
    config = CoordinatorConfig(data=str(data), db=dsn)
    sealed, edges = _seal_all(batches, size)
    coordinator = await Coordinator.open(config)
    for edge in edges:
        token = (await coordinator.issue_enrolment_token()).token
        await coordinator.enrol(token, edge.name, edge.verifier)
    tag = secrets.token_hex(5)
    names = StreamNames(f"CACHET_BENCH_{tag}", f"cachet-bench.{tag}", f"bench-{tag}")
    nc = await connect(NATS_URL, "cachet-bench")
    await ensure_stream(nc, names)
    processes = _start_workers(data, dsn, names, workers)
    try:
        bodies = [(b, format_sealed_batch(b)) for b in sealed]
        started = time.perf_counter()
        for batch, body in bodies:
            batch_id = batch_log_leaf_hash(batch.header, batch.signature).hex()
            await publish_batch(nc, names, body, batch_id=batch_id, edge=batch.header.edge,
                                seq=batch.header.seq)  # fmt: skip
        async with asyncio.timeout(600):
            while await _count(coordinator) < batches * size:  # noqa: ASYNC110 - polls the db
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        await nc.jetstream().delete_stream(names.stream)
        await nc.close()
        await coordinator.close()
    return batches * size / elapsed


async def main(batches: int, size: int, worker_counts: list[int], backends: list[str]) -> None:
    for reason in (ensure_nats(), ensure_postgres() if "postgresql" in backends else None):
        if reason is not None:
            raise SystemExit(reason)
    print(f"{batches} batches x {size} records, {EDGES} edges, {os.cpu_count()} cores")
    for backend in backends:
        for workers in worker_counts:
            name = f"cachet_bench_{secrets.token_hex(5)}"
            dsn = create_database(name) if backend == "postgresql" else None
            try:
                rate = await run_one(dsn, workers, batches, size)
            finally:
                if dsn is not None:
                    drop_database(name)
            print(f"{backend:10} workers={workers}  {rate:10,.0f} records/s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--backends", default="sqlite,postgresql")
    a = parser.parse_args()
    counts = [int(n) for n in a.workers.split(",")]
    asyncio.run(main(a.batches, a.size, counts, a.backends.split(",")))
