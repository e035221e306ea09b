"""NATS JetStream ingest (issue 9; docs/design/scale-out.md): a stream of sealed batches and the
stateless workers that consume it.

Edges publish each sealed batch (its canonical bytes) to ``<subject_prefix>.<edge>`` with the
batch id (its log leaf hash, hex) as ``Nats-Msg-Id``, so the stream's duplicate window drops a
resend. Workers share one durable pull consumer; each message is verified and applied by the
same ``Ingestor`` as ``POST /v1/batches`` and acknowledged only after the store committed it.
Delivery is at least once; the store makes it exactly once (a redelivered batch is a DUPLICATE).

What a worker does with a message (``disposition``, pure):
- accepted or duplicate: ack;
- refused (malformed, forged, unknown key, chain fork, …): term, never redelivered;
- the edge's earlier batch not applied yet (seq beyond the head + 1, from the ``Cachet-Seq``
  header; another worker may hold it): nak with a delay proportional to the distance from the
  head (``early_delay_s``), so that redeliveries come back in seq order; after waiting
  ``reorder_patience_s`` (as this worker saw it), let the store record the gap as an incident;
- overloaded: nak with a delay;
- storage failure (the database restarting): nak the batch and the rest of the fetch untried,
  and fetch nothing until the store answers again (with back-off): an outage then costs one
  redelivery of the messages in hand, not a nak storm over the whole stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from billing.api.billing import DROPPED_HEADER, EMITTED_HEADER, SERVED_HEADER, counters_of
from billing.ingest.pipeline import Ingestor
from billing.store.base import Store
from provenance.batches import ChainHead
from provenance.errors import CachetError, PushbackError

log = logging.getLogger("cachet.ingest.nats")

DEFAULT_STREAM = "CACHET_BATCHES"
DEFAULT_SUBJECT_PREFIX = "cachet.batches"
DEFAULT_DURABLE = "cachet-ingest"
DUPLICATE_WINDOW_S = 24 * 3600.0  # resends within a day are dropped by JetStream itself
REORDER_STEP_S = 0.02  # nak delay per batch that must land before an early one
REORDER_PATIENCE_S = 60.0
REORDER_PATIENCE_ACK_WAITS = 3
MAX_TRACKED_EARLY = 100_000  # early batches whose first sighting a worker remembers
MAX_OUTAGE_BACKOFF_S = 5.0
EDGE_HEADER, SEQ_HEADER, LAG_HEADER = "Cachet-Edge", "Cachet-Seq", "Cachet-Spool-Lag"
COUNTER_HEADERS = {  # message header -> the HTTP header POST /v1/batches reads
    "Cachet-Requests-Served": SERVED_HEADER,
    "Cachet-Records-Emitted": EMITTED_HEADER,
    "Cachet-Records-Dropped": DROPPED_HEADER,
}
MSG_ID_HEADER = "Nats-Msg-Id"


@dataclass(frozen=True, slots=True)
class StreamNames:
    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    durable: str = DEFAULT_DURABLE

    def subject_of(self, edge: str) -> str:
        return f"{self.subject_prefix}.{edge}"


class Disposition(Enum):
    ACK = "ack"
    TERM = "term"
    RETRY = "retry"  # nak with a delay
    UNAVAILABLE = "unavailable"  # storage failed: nak, and pause fetching until it answers


@dataclass(frozen=True, slots=True)
class Verdict:
    disposition: Disposition
    delay_s: float = 0.0  # of a nak; 0: the worker's retry delay


def early_delay_s(head: ChainHead | None, seq: int, step_s: float, cap_s: float) -> float:
    """The nak delay of a batch ahead of its edge's head: one step per batch that must land
    first. Redeliveries then come back in seq order and a backlog drains at a batch per step;
    with one fixed delay every round keeps the previous round's order, and each inversion in
    it (two workers interleave their naks) costs a whole round."""
    distance = seq - (0 if head is None else head.seq + 1)
    return min(cap_s, step_s * max(1, distance))


def reorder_patience_s(ack_wait_s: float) -> float:
    """How long an early batch waits for its predecessor before the gap is recorded. The
    predecessor may sit unacknowledged with a worker that died or lost its connection, and
    JetStream redelivers it only after ``ack_wait``; a gap is an incident either way (edges
    publish in order), so waiting long costs little."""
    return max(REORDER_PATIENCE_S, REORDER_PATIENCE_ACK_WAITS * ack_wait_s)


def is_ahead_of_head(head: ChainHead | None, seq: int) -> bool:
    """Whether a batch of ``seq`` cannot follow the edge's head yet (an earlier one is due)."""
    return seq > (0 if head is None else head.seq + 1)


def seq_of(headers: dict[str, str] | None) -> int | None:
    text = (headers or {}).get(SEQ_HEADER, "")
    return int(text) if text.isdigit() and len(text) < 19 else None


def nats_counter_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """The edge's reconciliation counters (``Cachet-Requests-Served`` etc. on the message) under
    the names ``POST /v1/batches`` uses, so both paths apply one rule (``counters_of``)."""
    return {
        http: (headers or {})[nats]
        for nats, http in COUNTER_HEADERS.items()
        if nats in (headers or {})
    }


def spool_lag_of(headers: dict[str, str] | None) -> int | None:
    text = (headers or {}).get(LAG_HEADER, "")
    return int(text) if text.isdigit() and len(text) < 16 else None


async def connect(url: str, name: str) -> NatsClient:
    """A client that keeps reconnecting (NATS may restart under load), saying so in one line
    per event rather than a traceback per reconnect attempt."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s: %s", name, type(exc).__name__, exc)

    async def on_disconnected() -> None:
        log.warning("nats %s: disconnected; reconnecting", name)

    async def on_reconnected() -> None:
        log.warning("nats %s: reconnected", name)

    return await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=5,
        error_cb=on_error, disconnected_cb=on_disconnected, reconnected_cb=on_reconnected,
    )  # fmt: skip


async def ensure_stream(nc: NatsClient, names: StreamNames) -> None:
    """Create the stream (file storage, the duplicate window) unless it exists."""
    js = nc.jetstream()
    config = StreamConfig(
        name=names.stream,
        subjects=[f"{names.subject_prefix}.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
    )
    try:
        await js.stream_info(names.stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)


async def publish_batch(
    nc: NatsClient,
    names: StreamNames,
    body: bytes,
    *,
    batch_id: str,
    edge: str,
    seq: int,
    spool_lag: int | None = None,
    counters: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> bool:
    """Publish one sealed batch; True if the stream stored it, False if it was a duplicate.
    ``counters``: message headers of COUNTER_HEADERS (the edge's reconciliation counters)."""
    headers = {MSG_ID_HEADER: batch_id, EDGE_HEADER: edge, SEQ_HEADER: str(seq)}
    if spool_lag is not None:
        headers[LAG_HEADER] = str(spool_lag)
    headers.update(counters or {})
    ack = await nc.jetstream().publish(
        names.subject_of(edge), body, timeout=timeout_s, headers=headers
    )
    return not ack.duplicate


class IngestWorker:
    """One stateless worker: fetch, apply through the Ingestor, ack after the commit."""

    def __init__(
        self,
        nc: NatsClient,
        names: StreamNames,
        store: Store,
        ingestor: Ingestor,
        *,
        fetch_batch: int = 8,
        ack_wait_s: float = 30.0,
        retry_delay_s: float = 0.5,
        after_apply: Callable[[Msg], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nc, self._names, self._store, self._ingestor = nc, names, store, ingestor
        self._fetch_batch, self._ack_wait_s = fetch_batch, ack_wait_s
        self._retry_delay_s = retry_delay_s
        self._patience_s, self._clock = reorder_patience_s(ack_wait_s), clock
        self._early_since: dict[tuple[str, int], float] = {}  # (edge, seq): first seen early
        self._after_apply = after_apply  # a test hook: runs between the commit and the ack
        self.applied = 0
        self.refused = 0  # batches terminated: the coordinator will never take them

    async def subscribe(self) -> nats.js.JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            durable_name=self._names.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            max_deliver=-1,
            max_ack_pending=1024,
        )
        return await self._nc.jetstream().pull_subscribe(
            f"{self._names.subject_prefix}.>",
            durable=self._names.durable,
            stream=self._names.stream,
            config=config,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (each fetch waits at most a second)."""
        sub = await self._subscribe_when_up(stop)
        while sub is not None and not stop.is_set():
            try:
                messages = await sub.fetch(self._fetch_batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, OSError) as exc:  # NATS restarting: the client reconnects
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(self._retry_delay_s)
                continue
            storage_down = False
            for message in messages:
                if storage_down:  # the rest would fail the same way: hand them back untried
                    await self._settle(message, Verdict(Disposition.UNAVAILABLE))
                    continue
                storage_down = await self.handle(message) is Disposition.UNAVAILABLE
            if storage_down:
                await self._wait_for_store(stop)

    async def _subscribe_when_up(
        self, stop: asyncio.Event
    ) -> nats.js.JetStreamContext.PullSubscription | None:
        """Bind the durable consumer, waiting out a NATS restart; None if stopped first."""
        delay_s = self._retry_delay_s
        while not stop.is_set():
            try:
                return await self.subscribe()
            except (nats.errors.Error, OSError) as exc:
                log.warning("subscribe failed (%s); retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
            delay_s = min(delay_s * 2, MAX_OUTAGE_BACKOFF_S)
        return None

    async def handle(self, message: Msg) -> Disposition:
        verdict = await self._apply(message)
        await self._settle(message, verdict)
        return verdict.disposition

    async def _settle(self, message: Msg, verdict: Verdict) -> None:
        with contextlib.suppress(nats.errors.Error, OSError):  # unacked: redelivered later
            if verdict.disposition is Disposition.ACK:
                await message.ack()
            elif verdict.disposition is Disposition.TERM:
                self.refused += 1
                await message.term()
            else:
                await message.nak(delay=verdict.delay_s or self._retry_delay_s)

    async def _wait_for_store(self, stop: asyncio.Event) -> None:
        """Fetch nothing until the store answers a query (with back-off): a message fetched now
        could not be applied, and each fetch counts one more delivery against it."""
        delay_s = self._retry_delay_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
            try:
                await self._store.chain_head("")
            except Exception as exc:  # still down or restarting
                log.info("store still unavailable (%s); waiting", type(exc).__name__)
                delay_s = min(delay_s * 2, MAX_OUTAGE_BACKOFF_S)
                continue
            log.warning("store answers again; resuming")
            return

    async def _apply(self, message: Msg) -> Verdict:
        headers = message.headers
        try:
            delay_s = await self._early_delay_s(headers)
            if delay_s is not None:
                return Verdict(Disposition.RETRY, delay_s)
            counters = counters_of(nats_counter_headers(headers))
            encoding = headers.get("Content-Encoding") if headers else None  # gzip from edges
            await self._ingestor.ingest(message.data, encoding, spool_lag_of(headers), counters)
        except PushbackError:
            return Verdict(Disposition.RETRY)
        except CachetError as exc:
            log.warning("batch refused: %s", exc)
            return Verdict(Disposition.TERM)
        except Exception as exc:  # storage down or restarting: keep the message, retry later
            log.warning("batch not applied (%s: %s); will retry", type(exc).__name__, exc)
            return Verdict(Disposition.UNAVAILABLE)
        self.applied += 1
        if self._after_apply is not None:
            await self._after_apply(message)
        return Verdict(Disposition.ACK)

    async def _early_delay_s(self, headers: dict[str, str] | None) -> float | None:
        """None when the batch may be applied now (or waited for long enough: the store then
        records the gap as an incident); else how long to wait for its predecessor."""
        edge, seq = (headers or {}).get(EDGE_HEADER), seq_of(headers)
        if edge is None or seq is None:
            return None
        head = await self._store.chain_head(edge)
        if not is_ahead_of_head(head, seq):
            self._early_since.pop((edge, seq), None)
            return None
        now = self._clock()
        first_seen = self._early_since.setdefault((edge, seq), now)
        if now - first_seen > self._patience_s:
            del self._early_since[(edge, seq)]
            return None
        if len(self._early_since) > MAX_TRACKED_EARLY:  # forget the oldest sighting
            del self._early_since[next(iter(self._early_since))]
        return early_delay_s(head, seq, REORDER_STEP_S, self._retry_delay_s)
