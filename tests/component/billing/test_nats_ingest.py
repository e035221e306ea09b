"""JetStream ingest (issue 9) on both storage backends: the batch id as Nats-Msg-Id, ack only
after the commit, redelivery applied once, out-of-order delivery across workers, and one
sequencer for the log when several coordinator processes share PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from billing.ingest.nats import IngestWorker, StreamNames, connect, ensure_stream, publish_batch
from billing.log.integrate import EMPTY_LOG, integrate, root_of
from billing.service import Coordinator
from provenance.batches import SealedBatch, batch_log_leaf_hash, format_sealed_batch
from provenance.compression import gzip_compress
from tests.component.billing.fleet import Edge, FakeClock, coordinator_config, signing_key
from tests.services import NATS_URL, ensure_nats

pytestmark = pytest.mark.asyncio
ACK_WAIT_S = 1.0


@pytest_asyncio.fixture
async def nats_stream() -> AsyncIterator[tuple[NatsClient, StreamNames]]:
    """A stream of this test's own (random name and subjects), deleted at the end."""
    reason = ensure_nats()
    if reason is not None:
        pytest.skip(reason)
    tag = secrets.token_hex(6)
    names = StreamNames(f"CACHET_TEST_{tag}", f"cachet-test.{tag}", f"ingest-{tag}")
    nc = await connect(NATS_URL, "cachet-test")
    await ensure_stream(nc, names)
    yield nc, names
    await nc.jetstream().delete_stream(names.stream)
    await nc.close()


async def _coordinator(tmp_path: Path, store_dsn: str | None, edges: list[Edge]) -> Coordinator:
    coordinator = await Coordinator.open(coordinator_config(tmp_path, db=store_dsn), FakeClock())
    for edge in edges:
        token = (await coordinator.issue_enrolment_token()).token
        await coordinator.enrol(token, edge.name, edge.verifier)
    return coordinator


async def _publish(nc: NatsClient, names: StreamNames, batch: SealedBatch) -> bool:
    batch_id = batch_log_leaf_hash(batch.header, batch.signature).hex()
    return await publish_batch(
        nc, names, format_sealed_batch(batch), batch_id=batch_id,
        edge=batch.header.edge, seq=batch.header.seq,
    )  # fmt: skip


def _worker(nc: NatsClient, names: StreamNames, c: Coordinator, **kw: object) -> IngestWorker:
    return IngestWorker(nc, names, c.store, c.ingestor, ack_wait_s=ACK_WAIT_S,
                        retry_delay_s=0.05, **kw)  # type: ignore[arg-type]  # fmt: skip


async def _drain(
    worker: IngestWorker, sub_messages: int, timeout_s: float = 10.0, *, refused_too: bool = False
) -> None:
    """Run the worker until it applied (or, with ``refused_too``, applied or refused)
    ``sub_messages`` or the time is up."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(timeout_s):
        while worker.applied + (worker.refused if refused_too else 0) < sub_messages:  # noqa: ASYNC110 - polls a counter, bounded by the timeout
            await asyncio.sleep(0.02)
    stop.set()
    await task


async def _stored_records(c: Coordinator) -> int:
    rows = await c.store._all("SELECT COUNT(*) FROM record_ids")  # type: ignore[attr-defined]
    return int(rows[0][0])


async def test_a_resent_batch_is_dropped_by_the_duplicate_window(
    store_dsn: str | None, nats_stream: tuple[NatsClient, StreamNames], tmp_path: Path
) -> None:
    nc, names = nats_stream
    edge = Edge("edge-a", signing_key("edge-a"))
    c = await _coordinator(tmp_path, store_dsn, [edge])
    try:
        batch = edge.seal(count=4)
        assert await _publish(nc, names, batch) is True
        assert await _publish(nc, names, batch) is False  # same Nats-Msg-Id: dropped
        await _drain(_worker(nc, names, c), 1)
        assert await _stored_records(c) == 4
    finally:
        await c.close()


async def test_worker_killed_after_commit_before_ack_redelivered_applied_once(
    store_dsn: str | None, nats_stream: tuple[NatsClient, StreamNames], tmp_path: Path
) -> None:
    nc, names = nats_stream
    edge = Edge("edge-a", signing_key("edge-a"))
    c = await _coordinator(tmp_path, store_dsn, [edge])
    try:
        await _publish(nc, names, edge.seal(count=5))

        async def die(message: Msg) -> None:
            raise RuntimeError("killed between the commit and the ack")

        with pytest.raises(RuntimeError, match="killed"):
            await _drain(_worker(nc, names, c, after_apply=die), 1)
        second = _worker(nc, names, c)  # the batch comes back after ack_wait
        await _drain(second, 1)
        assert await _stored_records(c) == 5
        assert c.metrics.batches_duplicate._value.get() == 1  # the redelivery: a duplicate
        assert len(await c.store.unsequenced_batch_ids(10)) <= 1
    finally:
        await c.close()


async def test_worker_killed_mid_batch_before_commit_redelivered_applied_once(
    store_dsn: str | None, nats_stream: tuple[NatsClient, StreamNames], tmp_path: Path
) -> None:
    nc, names = nats_stream
    edge = Edge("edge-a", signing_key("edge-a"))
    c = await _coordinator(tmp_path, store_dsn, [edge])
    try:
        await _publish(nc, names, edge.seal(count=5))
        doomed = await _worker(nc, names, c).subscribe()
        taken = await doomed.fetch(1, timeout=5)  # fetched, never applied nor acked: a crash
        assert len(taken) == 1
        await _drain(_worker(nc, names, c), 1)
        assert await _stored_records(c) == 5
        assert c.metrics.batches_accepted._value.get() == 1
    finally:
        await c.close()


async def test_batches_delivered_out_of_order_wait_for_their_predecessor(
    store_dsn: str | None, nats_stream: tuple[NatsClient, StreamNames], tmp_path: Path
) -> None:
    nc, names = nats_stream
    edge = Edge("edge-a", signing_key("edge-a"))
    c = await _coordinator(tmp_path, store_dsn, [edge])
    try:
        first, second, third = (edge.seal(count=2) for _ in range(3))
        for batch in (third, second, first):
            await _publish(nc, names, batch)
        await _drain(_worker(nc, names, c), 3)
        assert await _stored_records(c) == 6
        assert await c.store.list_incidents(None) == []
    finally:
        await c.close()


async def test_one_sequencer_across_coordinators_sharing_postgresql(
    store_dsn: str | None, nats_stream: tuple[NatsClient, StreamNames], tmp_path: Path
) -> None:
    """Three worker processes (here: coordinators) on one database: each batch gets exactly
    one log index, the log is the RFC 9162 tree of the batches in index order."""
    if store_dsn is None:
        pytest.skip("SQLite is one coordinator process's database: nothing runs beside it")
    nc, names = nats_stream
    edges = [Edge(f"edge-{i}", signing_key(f"edge-{i}")) for i in range(6)]
    first = await _coordinator(tmp_path, store_dsn, edges)
    others = [await Coordinator.open(first.config, FakeClock()) for _ in range(2)]
    coordinators = [first, *others]
    try:
        for _ in range(4):
            for edge in edges:
                await _publish(nc, names, edge.seal(count=3))
        workers = [_worker(nc, names, c) for c in coordinators]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        async with asyncio.timeout(20):
            while sum(w.applied for w in workers) < 24:  # noqa: ASYNC110 - bounded by the timeout
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
        for c in coordinators:
            await c.sequencer.flush()
        size = await first.store.log_size()
        assert size == 24
        leaves = [bytes.fromhex((await first.store.batch_at(i)).batch_id) for i in range(size)]  # type: ignore[union-attr]
        state, _ = integrate(EMPTY_LOG, leaves)
        for c in coordinators:
            checkpoint = await c.sequencer.flush()
            assert checkpoint.size == 24 and checkpoint.root_hash == root_of(state).hex()
        leaders = [await c.store.try_lead_log() for c in coordinators]  # type: ignore[attr-defined]
        assert leaders.count(True) == 1
    finally:
        for c in coordinators:
            await c.close()


async def test_counters_on_the_message_are_stored_with_the_batch(
    store_dsn: str | None, nats_stream: tuple[NatsClient, StreamNames], tmp_path: Path
) -> None:
    """The edge's reconciliation counters ride on the JetStream message as on POST /v1/batches
    (docs/billing.md); malformed ones refuse the batch there too."""
    nc, names = nats_stream
    edge = Edge("edge-n", signing_key("edge-n"))
    c = await _coordinator(tmp_path, store_dsn, [edge])
    try:
        good, bad = edge.seal(count=3), edge.seal(count=2)
        counters = {"Cachet-Requests-Served": "7", "Cachet-Records-Emitted": "3",
                    "Cachet-Records-Dropped": "1"}  # fmt: skip
        for batch, sent in ((good, counters), (bad, {**counters, "Cachet-Records-Dropped": "9"})):
            await publish_batch(
                nc, names, format_sealed_batch(batch),
                batch_id=batch_log_leaf_hash(batch.header, batch.signature).hex(),
                edge=edge.name, seq=batch.header.seq, counters=sent,
            )  # fmt: skip
        worker = _worker(nc, names, c)
        await _drain(worker, 2, refused_too=True)
        assert (worker.applied, worker.refused) == (1, 1)
        rows = await c.store._all(  # type: ignore[attr-defined]
            "SELECT requests_served, records_emitted, records_dropped FROM edge_counters"
        )
        assert [tuple(row) for row in rows] == [(7, 3, 1)]
        assert await _stored_records(c) == 3  # dropped 9 > served - emitted: refused
    finally:
        await c.close()


async def test_gzip_payloads_are_inflated_and_a_corrupt_one_is_refused(
    store_dsn: str | None, nats_stream: tuple[NatsClient, StreamNames], tmp_path: Path
) -> None:
    """Edges publish their batches gzip-compressed with ``Content-Encoding: gzip`` (RFC 9110
    §8.4, as their HTTP bodies; proxy/records/nats_forwarder.py): the worker inflates them. A
    payload that says gzip and is not is refused with its reason, never stored."""
    nc, names = nats_stream
    edge = Edge("edge-z", signing_key("edge-z"))
    c = await _coordinator(tmp_path, store_dsn, [edge])
    try:
        for batch, payload in (
            (first := edge.seal(count=6), gzip_compress(format_sealed_batch(first))),
            (second := edge.seal(count=3), b"\x1f\x8b not gzip at all"),
        ):
            await nc.jetstream().publish(
                names.subject_of("edge-z"), payload,
                headers={"Nats-Msg-Id": batch_log_leaf_hash(batch.header, batch.signature).hex(),
                         "Cachet-Edge": "edge-z", "Cachet-Seq": str(batch.header.seq),
                         "Content-Encoding": "gzip"},
            )  # fmt: skip
        worker = _worker(nc, names, c)
        await _drain(worker, 2, refused_too=True)
        assert (worker.applied, worker.refused) == (1, 1)
        assert await _stored_records(c) == 6
        assert second.header.seq == first.header.seq + 1
    finally:
        await c.close()
