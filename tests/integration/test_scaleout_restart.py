"""Restarting NATS or PostgreSQL under load (issue 9, "Faults"; docs/design/scale-out.md):
edges keep sealing batches into their spools while the NATS server is SIGKILLed and restarted,
or PostgreSQL is restarted (``pg_ctl restart -m fast``; stopped, or its postmaster SIGKILLed,
while a backlog piles up), or an ingest worker holding batches is SIGKILLed with a long ack
wait; the forwarders keep retrying, the ``cachet coordinator ingest-worker`` processes
reconnect (or wait for their predecessor batches), and at
the end every record is stored exactly once, every batch has exactly one log index, each edge's
chain head is its last batch, and the log's nodes are the RFC 9162 tree of the batches in log
order. The services restarted are the test's own (tests/private_services.py): the machine's
PostgreSQL and NATS are shared with other test runs."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from billing.config import CoordinatorConfig
from billing.ingest.nats import StreamNames, connect, ensure_stream
from billing.log.integrate import EMPTY_LOG, integrate, root_of
from billing.service import Coordinator
from billing.store.postgres import PostgresStore
from provenance.batches import ChainHead, format_sealed_batch, header_hash
from proxy.records.nats_forwarder import NatsForwarder
from proxy.records.sealer import list_batches, write_atomically
from tests.component.billing.fleet import Edge, signing_key
from tests.private_services import (
    PrivateNats,
    PrivatePostgres,
    ServiceUnavailable,
    private_nats,
    private_postgres,
)
from tests.services import create_database, drop_database, ensure_postgres

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
EDGES, RECORDS = 3, 40  # records per batch
SEAL_EVERY_S = 0.05  # each edge seals a batch this often while the fault happens
MAX_BATCHES_PER_EDGE = 400  # a bound on the load, should the pipeline never catch up
BACKLOG = 150  # batches sealed while the service is down: the catch-up is real work


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[PrivateNats]:
    try:
        with private_nats(tmp_path / "nats") as server:
            yield server
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def shared_pg_database() -> Iterator[str]:
    reason = ensure_postgres()
    if reason is not None:
        pytest.skip(reason)
    name = f"cachet_test_{secrets.token_hex(6)}"
    yield create_database(name)
    drop_database(name)


@pytest.fixture
def postgres_cluster() -> Iterator[PrivatePostgres]:
    try:
        with private_postgres() as cluster:
            yield cluster
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))


@dataclass
class Fleet:
    """Edges under load: each seals a batch into its spool every SEAL_EVERY_S (as a proxy that
    keeps serving would), and a NatsForwarder per spool publishes them."""

    edges: list[Edge]
    spools: list[Path]
    forwarders: list[NatsForwarder] = field(default_factory=list)
    sealing: asyncio.Event = field(default_factory=asyncio.Event)  # set: stop sealing
    sealers: list[asyncio.Task[None]] = field(default_factory=list)
    publishers: list[asyncio.Task[None]] = field(default_factory=list)

    async def seal_while_serving(self, edge: Edge, spool: Path) -> None:
        while not self.sealing.is_set() and edge.seq < MAX_BATCHES_PER_EDGE:
            batch = edge.seal(count=RECORDS)
            name = f"{batch.header.seq:016d}-{0:016d}-{0:016d}.batch"
            await asyncio.to_thread(write_atomically, spool / name, format_sealed_batch(batch))
            await asyncio.sleep(SEAL_EVERY_S)

    @property
    def batches(self) -> int:
        return sum(edge.seq for edge in self.edges)

    def spooled(self) -> int:
        """Batch files not yet accepted by JetStream."""
        return sum(len(list_batches(spool)) for spool in self.spools)

    def published(self) -> int:
        return sum(f.acked for f in self.forwarders)

    async def backlog_grows(self, count: int, now: Callable[[], int]) -> None:
        """Return once ``now()`` grew by ``count`` batches (the edges seal on meanwhile)."""
        start = now()

        async def grown() -> bool:
            return now() >= start + count

        await _wait_for(f"{count} batches of backlog", 30, grown)

    def request_ids(self) -> set[str]:
        return {r.request_id for edge in self.edges for batch in edge.sent for r in batch.records}


@dataclass
class Scene:
    """The pipeline under test: the edges, the ingest-worker processes, a store to watch."""

    fleet: Fleet
    store: PostgresStore
    workers: list[subprocess.Popen[bytes]]
    spawn: Callable[[], subprocess.Popen[bytes]]  # one more ingest-worker process


def _worker(
    data: Path, dsn: str, nats_url: str, names: StreamNames, ack_wait_s: int, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "cachet.cli", "coordinator", "ingest-worker", "--data", str(data),
        "--db", dsn, "--nats", nats_url, "--stream", names.stream, "--subject-prefix",
        names.subject_prefix, "--durable", names.durable, "--ack-wait", str(ack_wait_s),
        "--fetch", "4",
    ]  # fmt: skip
    with log.open("ab") as sink:
        return subprocess.Popen(command, stderr=sink, env=dict(os.environ))


async def _answer(store: PostgresStore, sql: str) -> list[Any] | None:
    """The rows of ``sql``, or None while the database is restarting."""
    try:
        return await store._all(sql)
    except Exception:  # restarting: asked again on the next poll
        return None


async def _records(store: PostgresStore) -> int:
    rows = await _answer(store, "SELECT COUNT(*) FROM record_ids")
    return -1 if rows is None else int(rows[0][0])


async def _wait_for(what: str, timeout_s: float, done: Callable[[], Awaitable[bool]]) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await done():  # noqa: ASYNC110 - polls a database, bounded by the timeout
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"not done within {timeout_s:.0f} s: {what}") from None


@asynccontextmanager
async def _pipeline(
    tmp_path: Path, dsn: str, nats_url: str, ack_wait_s: int
) -> AsyncIterator[Scene]:
    """Enrolled edges sealing under load, their forwarders, two worker processes, and a plain
    store to watch (no sequencer of its own: the workers alone must keep the log going)."""
    data = tmp_path / "coordinator"
    config = CoordinatorConfig(data=str(data), db=dsn)
    now = datetime.now(UTC)
    edges = [Edge(f"edge-{i}", signing_key(f"edge-{i}"), epoch=now) for i in range(EDGES)]
    coordinator = await Coordinator.open(config)
    try:
        for edge in edges:
            token = (await coordinator.issue_enrolment_token()).token
            await coordinator.enrol(token, edge.name, edge.verifier)
    finally:
        await coordinator.close()
    tag = secrets.token_hex(5)
    names = StreamNames(f"CACHET_TEST_{tag}", f"cachet-test.{tag}", f"ingest-{tag}")
    nc = await connect(nats_url, "cachet-test-edges")
    store = await PostgresStore.open(dsn)
    spools = [tmp_path / edge.name for edge in edges]
    fleet = Fleet(edges, spools)
    workers: list[subprocess.Popen[bytes]] = []
    stop_forwarding = asyncio.Event()

    def spawn() -> subprocess.Popen[bytes]:
        log = tmp_path / f"w{len(list(tmp_path.glob('w*.log')))}.log"
        return _worker(data, dsn, nats_url, names, ack_wait_s, log)

    scene = Scene(fleet, store, workers, spawn)
    try:
        await ensure_stream(nc, names)
        workers += [spawn(), spawn()]
        for edge, spool in zip(edges, spools, strict=True):
            spool.mkdir()
            forwarder = NatsForwarder(
                spool, nc, subject_prefix=names.subject_prefix, publish_timeout_s=2.0,
                max_backoff_s=1.0, poll_s=0.05,
            )  # fmt: skip
            fleet.forwarders.append(forwarder)
            fleet.sealers.append(asyncio.create_task(fleet.seal_while_serving(edge, spool)))
            fleet.publishers.append(asyncio.create_task(forwarder.run(stop_forwarding)))
        yield scene
    finally:
        fleet.sealing.set()
        stop_forwarding.set()
        await asyncio.gather(*fleet.sealers, *fleet.publishers, return_exceptions=True)
        for worker in scene.workers:
            if worker.poll() is None:
                worker.terminate()
        try:
            for worker in scene.workers:
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:  # a loaded machine; what is tested is above
                    worker.kill()
                    worker.wait(10)
        finally:
            await nc.close()
            await store.close()


async def _under_load(
    tmp_path: Path,
    dsn: str,
    nats_url: str,
    fault: Callable[[Scene], Awaitable[None]],
    ack_wait_s: int = 3,
) -> None:
    async with _pipeline(tmp_path, dsn, nats_url, ack_wait_s) as scene:
        fleet, store, workers = scene.fleet, scene.store, scene.workers
        logs = [tmp_path / f"w{i}.log" for i in range(len(workers))]

        async def running() -> bool:  # both workers consuming, and batches landing
            consuming = all(b"consuming" in log.read_bytes() for log in logs)
            return consuming and await _stored_more_than(store, 5 * RECORDS)

        await _wait_for("both workers consuming and storing", 30, running)
        await fault(scene)
        stored_after_fault = await _eventually_records(store)
        await _wait_for(
            "records stored after the fault",
            30,
            lambda: _stored_more_than(store, stored_after_fault),
        )
        fleet.sealing.set()  # the load ends; the pipeline must catch up with all of it
        await asyncio.gather(*fleet.sealers)
        total = fleet.batches
        assert stored_after_fault < total * RECORDS  # part of the load came after the fault

        async def caught_up() -> bool:
            incidents = await _answer(store, "SELECT edge, kind, seq FROM incidents")
            assert not incidents, f"batches refused as gaps (lost): {[tuple(i) for i in incidents]}"
            spooled = sum(f.acked for f in fleet.forwarders)
            logged = await _answer(store, "SELECT COUNT(*) FROM batches WHERE log_index >= 0")
            return spooled == total and logged is not None and int(logged[0][0]) == total

        await _wait_for("the pipeline catching up", 45, caught_up)
        assert [w.poll() for w in workers] == [None] * len(workers)  # they rode it out
        await _assert_exactly_once(fleet, store, tmp_path / "coordinator", dsn)


async def _stored_more_than(store: PostgresStore, count: int) -> bool:
    return await _records(store) > count


async def _eventually_records(store: PostgresStore) -> int:
    counts: list[int] = []

    async def answered() -> bool:
        counts.append(await _records(store))
        return counts[-1] >= 0

    await _wait_for("the database answering after the fault", 30, answered)
    return counts[-1]


async def _assert_exactly_once(fleet: Fleet, store: PostgresStore, data: Path, dsn: str) -> None:
    total = fleet.batches
    assert sum(f.failures["quarantined"] for f in fleet.forwarders) == 0
    assert not any(list(spool.glob("*.batch")) for spool in fleet.spools)  # every spool drained
    rows = await store._all("SELECT request_id FROM record_ids")
    assert len(rows) == total * RECORDS  # nothing doubled (request_id is the primary key) ...
    assert {row[0] for row in rows} == fleet.request_ids()  # ... and nothing lost
    indexes = await store._all("SELECT log_index FROM batches ORDER BY log_index")
    assert [row[0] for row in indexes] == list(range(total))  # one log index per batch
    assert await store.log_size() == total
    assert await store.unsequenced_batch_ids(10) == []
    assert await store.list_incidents(None) == []  # no gap nor fork was recorded
    for edge in fleet.edges:  # ARCHITECTURE.md "Batch": a chain per edge, its head the last one
        last = edge.sent[-1].header
        assert await store.chain_head(edge.name) == ChainHead(
            edge.name, last.seq, header_hash(last)
        )
    leaves = [bytes.fromhex((await store.batch_at(i)).batch_id) for i in range(total)]  # type: ignore[union-attr]
    expected_root = root_of(integrate(EMPTY_LOG, leaves)[0]).hex()
    coordinator = await Coordinator.open(CoordinatorConfig(data=str(data), db=dsn))
    try:  # RFC 9162 §2.1.1: the stored frontier is the tree of the batches in log order
        checkpoint = await coordinator.sequencer.flush()
        assert (checkpoint.size, checkpoint.root_hash) == (total, expected_root)
    finally:
        await coordinator.close()


async def test_nats_sigkilled_and_restarted_under_load_nothing_lost_or_doubled(
    nats_server: PrivateNats, shared_pg_database: str, tmp_path: Path
) -> None:
    async def kill_and_restart_nats(scene: Scene) -> None:
        fleet = scene.fleet
        nats_server.kill()  # SIGKILL: JetStream recovers the stream and consumer from its files
        assert nats_server.process is not None and nats_server.process.returncode == -9
        await fleet.backlog_grows(BACKLOG, fleet.spooled)  # the edges spool meanwhile
        await asyncio.to_thread(nats_server.start)  # same port, same store folder

    await _under_load(tmp_path, shared_pg_database, nats_server.url, kill_and_restart_nats)


@pytest.mark.parametrize(
    "how", ["pg_ctl restart -m fast", "pg_ctl stop -m fast, start", "postmaster SIGKILL, start"]
)
async def test_postgresql_restarted_under_load_nothing_lost_or_doubled(
    how: str, postgres_cluster: PrivatePostgres, nats_server: PrivateNats, tmp_path: Path
) -> None:
    """The restart at once; or the database down (stopped, or its postmaster killed and the
    WAL replayed at start) while a backlog piles up in the stream."""

    async def restart_postgresql(scene: Scene) -> None:
        fleet = scene.fleet
        before = postgres_cluster.postmaster_pid()
        if how == "pg_ctl restart -m fast":
            await asyncio.to_thread(postgres_cluster.restart)
        else:
            down = postgres_cluster.kill if how.startswith("postmaster") else postgres_cluster.stop
            await asyncio.to_thread(down)
            await fleet.backlog_grows(BACKLOG, fleet.published)  # JetStream takes them
            await asyncio.to_thread(postgres_cluster.start)
        assert postgres_cluster.postmaster_pid() != before

    await _under_load(tmp_path, postgres_cluster.dsn, nats_server.url, restart_postgresql)


async def test_worker_sigkilled_holding_batches_with_a_long_ack_wait_nothing_lost(
    nats_server: PrivateNats, shared_pg_database: str, tmp_path: Path
) -> None:
    """A worker SIGKILLed under load holds fetched batches that JetStream hands out again only
    after the ack wait (15 s here, 30 s by default); the edges' later batches wait for them
    rather than being refused as gaps (they waited 20 naks of 0.5 s before: 10 s, then were
    termed and lost)."""

    async def kill_a_worker(scene: Scene) -> None:
        scene.workers[0].kill()
        scene.workers[0].wait(10)
        assert scene.workers[0].returncode == -9
        scene.workers[0] = scene.spawn()  # its replacement, as a supervisor would start

    await _under_load(tmp_path, shared_pg_database, nats_server.url, kill_a_worker, 15)
