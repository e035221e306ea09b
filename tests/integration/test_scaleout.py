"""Scale-out ingest with real processes (issue 9): an edge's spool published by NatsForwarder,
``cachet coordinator ingest-worker`` processes on PostgreSQL, one SIGKILLed mid-run; every
record is stored once and every batch has exactly one log index."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing.config import CoordinatorConfig
from billing.ingest.nats import StreamNames, connect, ensure_stream
from billing.service import Coordinator
from provenance.batches import format_sealed_batch
from proxy.records.nats_forwarder import NatsForwarder
from tests.component.billing.fleet import Edge, signing_key
from tests.services import (
    NATS_URL,
    create_database,
    drop_database,
    ensure_nats,
    ensure_postgres,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
BATCHES, RECORDS = 30, 50


@pytest.fixture
def database() -> Iterator[str]:
    for reason in (ensure_postgres(), ensure_nats()):
        if reason is not None:
            pytest.skip(reason)
    name = f"cachet_test_{secrets.token_hex(6)}"
    yield create_database(name)
    drop_database(name)


def _worker(data: Path, dsn: str, names: StreamNames, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "cachet.cli", "coordinator", "ingest-worker", "--data", str(data),
        "--db", dsn, "--nats", NATS_URL, "--stream", names.stream, "--subject-prefix",
        names.subject_prefix, "--durable", names.durable, "--ack-wait", "2", "--fetch", "2",
    ]  # fmt: skip
    with log.open("ab") as sink:
        return subprocess.Popen(command, stderr=sink, env=dict(os.environ))


async def test_worker_sigkilled_mid_run_nothing_lost_or_doubled(
    database: str, tmp_path: Path
) -> None:
    data = tmp_path / "coordinator"
    config = CoordinatorConfig(data=str(data), db=database)
    edges = [Edge(f"edge-{i}", signing_key(f"edge-{i}"), epoch=datetime.now(UTC)) for i in range(3)]
    coordinator = await Coordinator.open(config)
    tag = secrets.token_hex(5)
    names = StreamNames(f"CACHET_TEST_{tag}", f"cachet-test.{tag}", f"ingest-{tag}")
    nc = await connect(NATS_URL, "cachet-test")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for edge in edges:
            token = (await coordinator.issue_enrolment_token()).token
            await coordinator.enrol(token, edge.name, edge.verifier)
        await ensure_stream(nc, names)
        forwarders = []
        for edge in edges:  # each edge's spool: sealed batch files, published by NatsForwarder
            spool = tmp_path / edge.name
            spool.mkdir()
            for _ in range(BATCHES // len(edges)):
                batch = edge.seal(count=RECORDS)
                name = f"{batch.header.seq:016d}-{0:016d}-{0:016d}.batch"
                (spool / name).write_bytes(format_sealed_batch(batch))
            forwarders.append(NatsForwarder(spool, nc, subject_prefix=names.subject_prefix))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(f.run(stop)) for f in forwarders]
        workers = [_worker(data, database, names, tmp_path / f"w{i}.log") for i in range(2)]
        async with asyncio.timeout(60):
            while await _count(coordinator) == 0:  # noqa: ASYNC110 - bounded by the timeout
                await asyncio.sleep(0.01)
        workers[0].send_signal(signal.SIGKILL)  # mid-run: its fetched batches come back
        workers.append(_worker(data, database, names, tmp_path / "w2.log"))
        async with asyncio.timeout(90):
            while await _count(coordinator) < BATCHES * RECORDS:  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0.1)
            while await coordinator.store.log_size() < BATCHES:  # noqa: ASYNC110 - bounded
                await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        assert sum(f.acked for f in forwarders) == BATCHES
        assert await _count(coordinator) == BATCHES * RECORDS
        assert await coordinator.store.log_size() == BATCHES
        assert await coordinator.store.unsequenced_batch_ids(10) == []
        assert await coordinator.store.list_incidents(None) == []
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in workers:
            worker.wait(10)
        await nc.jetstream().delete_stream(names.stream)
        await nc.close()
        await coordinator.close()


async def _count(c: Coordinator) -> int:
    rows = await c.store._all("SELECT COUNT(*) FROM record_ids")  # type: ignore[attr-defined]
    return int(rows[0][0])
