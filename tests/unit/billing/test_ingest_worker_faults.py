"""The JetStream ingest worker's fault handling without a server (issue 9, Faults;
docs/design/scale-out.md): what it does with a batch when storage fails, with a batch that
arrives before its predecessor, and how `cachet coordinator ingest-worker` waits for its
services at start. The same behaviour with real restarts: tests/integration/
test_scaleout_restart.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from billing.cli_worker import when_up
from billing.ingest.nats import (
    EDGE_HEADER,
    REORDER_PATIENCE_S,
    REORDER_STEP_S,
    SEQ_HEADER,
    Disposition,
    IngestWorker,
    StreamNames,
    early_delay_s,
    reorder_patience_s,
)
from provenance.batches import ChainHead
from provenance.errors import FormatError


def _head(seq: int) -> ChainHead:
    return ChainHead("edge-a", seq, "00" * 32)


def test_early_delay_grows_with_the_batches_that_must_land_first() -> None:
    assert early_delay_s(_head(4), 6, 0.02, 0.5) == pytest.approx(0.02)  # 5 is due first
    assert early_delay_s(_head(4), 9, 0.02, 0.5) == pytest.approx(0.08)  # 5..8 are due first
    assert early_delay_s(None, 3, 0.02, 0.5) == pytest.approx(0.06)  # 0..2 are due first


def test_early_delay_is_capped_at_the_retry_delay() -> None:
    assert early_delay_s(_head(0), 10_000, 0.02, 0.5) == 0.5


def test_reorder_patience_outlasts_a_redelivery_after_ack_wait() -> None:
    """A predecessor held by a worker that died comes back after ack_wait: wait longer."""
    assert reorder_patience_s(30.0) == 90.0
    assert reorder_patience_s(1.0) == REORDER_PATIENCE_S


@dataclass
class Metadata:
    num_delivered: int = 1


@dataclass
class FakeMessage:
    """What the worker reads of a JetStream message, and what it answered."""

    edge: str
    seq: int
    data: bytes = b"{}"
    metadata: Metadata = field(default_factory=Metadata)
    answers: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {EDGE_HEADER: self.edge, SEQ_HEADER: str(self.seq)}

    async def ack(self) -> None:
        self.answers.append(("ack", None))

    async def term(self) -> None:
        self.answers.append(("term", None))

    async def nak(self, delay: float | None = None) -> None:
        self.answers.append(("nak", delay))


class FakeStore:
    """``chain_head`` answers from ``heads``, or raises while ``down``."""

    def __init__(self) -> None:
        self.heads: dict[str, ChainHead] = {}
        self.down = False
        self.probes = 0

    async def chain_head(self, edge: str) -> ChainHead | None:
        self.probes += 1
        if self.down:
            raise ConnectionRefusedError("database restarting")
        return self.heads.get(edge)


class FakeIngestor:
    def __init__(self, store: FakeStore, error: Exception | None = None) -> None:
        self.store, self.error, self.applied = store, error, 0

    async def ingest(
        self, body: bytes, encoding: str | None, lag: int | None, counters: object = None
    ) -> None:
        if self.store.down:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        if self.error is not None:
            raise self.error
        self.applied += 1


class FakeSubscription:
    def __init__(self, rounds: list[list[FakeMessage]], store: FakeStore) -> None:
        self.rounds, self.store, self.fetches_while_down = rounds, store, 0

    async def fetch(self, batch: int, timeout: float) -> list[FakeMessage]:  # noqa: ASYNC109 - nats-py's signature
        self.fetches_while_down += int(self.store.down)
        if not self.rounds:
            raise asyncio.CancelledError  # the test is over: end run()
        return self.rounds.pop(0)


def _worker(store: FakeStore, ingestor: FakeIngestor, **options: Any) -> IngestWorker:
    options.setdefault("retry_delay_s", 0.01)
    return IngestWorker(None, StreamNames(), store, ingestor, **options)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_storage_failure_naks_and_hands_the_rest_back_untried() -> None:
    """Storage down mid-fetch: the failed batch and the ones after it are nak'd (redelivered
    later, not acked, not termed), and only the first one was attempted."""
    store = FakeStore()
    ingestor = FakeIngestor(store)
    store.heads["edge-a"] = _head(0)
    messages = [FakeMessage("edge-a", 1), FakeMessage("edge-a", 2), FakeMessage("edge-a", 3)]
    store.down = True
    worker = _worker(store, ingestor)
    subscription = FakeSubscription([messages], store)

    async def subscribe() -> FakeSubscription:
        return subscription

    worker.subscribe = subscribe  # type: ignore[method-assign,assignment]
    run = asyncio.create_task(worker.run(asyncio.Event()))
    async with asyncio.timeout(10):
        while store.probes < 4:  # noqa: ASYNC110 - the worker probing the store, bounded
            await asyncio.sleep(0.01)
    assert [m.answers for m in messages] == [[("nak", 0.01)]] * 3
    assert subscription.fetches_while_down == 1  # no fetch while the store is down
    store.down = False  # back: the worker fetches again (and the test's rounds end)
    with pytest.raises(asyncio.CancelledError):
        await run
    assert ingestor.applied == 0


@pytest.mark.asyncio
async def test_a_refused_batch_is_termed_and_an_applied_one_acked() -> None:
    store = FakeStore()
    applied, refused = FakeMessage("edge-a", 0), FakeMessage("edge-a", 0)
    assert await _worker(store, FakeIngestor(store)).handle(applied) is Disposition.ACK  # type: ignore[arg-type]
    worker = _worker(store, FakeIngestor(store, FormatError("not a batch")))
    assert await worker.handle(refused) is Disposition.TERM  # type: ignore[arg-type]
    assert (applied.answers, refused.answers) == ([("ack", None)], [("term", None)])


@pytest.mark.asyncio
async def test_an_early_batch_waits_for_its_predecessor_then_the_gap_is_recorded() -> None:
    """Seq 7 after head 4: nak'd with a delay of two steps (5 and 6 first) while the
    patience lasts; past it the store gets the batch and records the gap itself."""
    now = [0.0]
    store = FakeStore()
    store.heads["edge-a"] = _head(4)
    ingestor = FakeIngestor(store)
    worker = _worker(store, ingestor, ack_wait_s=1.0, retry_delay_s=0.5, clock=lambda: now[0])
    message = FakeMessage("edge-a", 7)
    assert await worker.handle(message) is Disposition.RETRY  # type: ignore[arg-type]
    now[0] = REORDER_PATIENCE_S - 1
    assert await worker.handle(message) is Disposition.RETRY  # type: ignore[arg-type]
    delays = [delay for answer, delay in message.answers if answer == "nak"]
    assert delays == [pytest.approx(2 * REORDER_STEP_S)] * 2
    assert ingestor.applied == 0
    now[0] = REORDER_PATIENCE_S + 1
    assert await worker.handle(message) is Disposition.ACK  # type: ignore[arg-type]
    assert ingestor.applied == 1


@pytest.mark.asyncio
async def test_an_early_batch_whose_predecessor_landed_is_applied() -> None:
    store = FakeStore()
    store.heads["edge-a"] = _head(4)
    ingestor = FakeIngestor(store)
    worker = _worker(store, ingestor)
    message = FakeMessage("edge-a", 6)
    assert await worker.handle(message) is Disposition.RETRY  # type: ignore[arg-type]
    store.heads["edge-a"] = _head(5)
    assert await worker.handle(message) is Disposition.ACK  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_start_waits_for_a_service_that_is_restarting() -> None:
    attempts: list[int] = []

    async def connect() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        return "connected"

    assert await when_up("database", connect, asyncio.Event(), 30.0) == "connected"
    assert len(attempts) == 3


@pytest.mark.asyncio
async def test_start_gives_up_after_its_patience_with_the_last_error() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError("nothing listens")

    with pytest.raises(ConnectionRefusedError):
        await when_up("database", refused, asyncio.Event(), 0.0)


@pytest.mark.asyncio
async def test_start_fails_at_once_on_a_configuration_error() -> None:
    attempts: list[int] = []

    async def wrong_password() -> None:
        attempts.append(1)
        raise asyncpg.exceptions.InvalidPasswordError("password authentication failed")

    with pytest.raises(asyncpg.exceptions.InvalidPasswordError):
        await when_up("database", wrong_password, asyncio.Event(), 30.0)
    assert attempts == [1]
