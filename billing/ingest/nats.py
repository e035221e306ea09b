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
  header; another worker may hold it): nak with a short delay, up to ``MAX_REORDER_DELIVERIES``
  times, then let the store record the gap as an incident;
- overloaded or storage/transport failure: nak with a delay (the database may be restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from billing.ingest.pipeline import Ingestor
from billing.store.base import Store
from provenance.batches import ChainHead
from provenance.errors import CachetError, PushbackError

log = logging.getLogger("cachet.ingest.nats")

DEFAULT_STREAM = "CACHET_BATCHES"
DEFAULT_SUBJECT_PREFIX = "cachet.batches"
DEFAULT_DURABLE = "cachet-ingest"
DUPLICATE_WINDOW_S = 24 * 3600.0  # resends within a day are dropped by JetStream itself
MAX_REORDER_DELIVERIES = 20
EDGE_HEADER, SEQ_HEADER, LAG_HEADER = "Cachet-Edge", "Cachet-Seq", "Cachet-Spool-Lag"
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


def is_ahead_of_head(head: ChainHead | None, seq: int) -> bool:
    """Whether a batch of ``seq`` cannot follow the edge's head yet (an earlier one is due)."""
    return seq > (0 if head is None else head.seq + 1)


def seq_of(headers: dict[str, str] | None) -> int | None:
    text = (headers or {}).get(SEQ_HEADER, "")
    return int(text) if text.isdigit() and len(text) < 19 else None


def spool_lag_of(headers: dict[str, str] | None) -> int | None:
    text = (headers or {}).get(LAG_HEADER, "")
    return int(text) if text.isdigit() and len(text) < 16 else None


async def connect(url: str, name: str) -> NatsClient:
    """A client that keeps reconnecting (NATS may restart under load)."""
    return await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=5
    )


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
    timeout_s: float = 5.0,
) -> bool:
    """Publish one sealed batch; True if the stream stored it, False if it was a duplicate."""
    headers = {MSG_ID_HEADER: batch_id, EDGE_HEADER: edge, SEQ_HEADER: str(seq)}
    if spool_lag is not None:
        headers[LAG_HEADER] = str(spool_lag)
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
    ) -> None:
        self._nc, self._names, self._store, self._ingestor = nc, names, store, ingestor
        self._fetch_batch, self._ack_wait_s = fetch_batch, ack_wait_s
        self._retry_delay_s = retry_delay_s
        self._after_apply = after_apply  # a test hook: runs between the commit and the ack
        self.applied = 0

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
        sub = await self.subscribe()
        while not stop.is_set():
            try:
                messages = await sub.fetch(self._fetch_batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, OSError) as exc:  # NATS restarting: the client reconnects
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(self._retry_delay_s)
                continue
            for message in messages:
                await self.handle(message)

    async def handle(self, message: Msg) -> Disposition:
        disposition = await self._apply(message)
        with contextlib.suppress(nats.errors.Error, OSError):  # unacked: redelivered later
            if disposition is Disposition.ACK:
                await message.ack()
            elif disposition is Disposition.TERM:
                await message.term()
            else:
                await message.nak(delay=self._retry_delay_s)
        return disposition

    async def _apply(self, message: Msg) -> Disposition:
        headers = message.headers
        try:
            if await self._is_early(message, headers):
                return Disposition.RETRY
            await self._ingestor.ingest(message.data, None, spool_lag_of(headers))
        except PushbackError:
            return Disposition.RETRY
        except CachetError as exc:
            log.warning("batch refused: %s", exc)
            return Disposition.TERM
        except Exception as exc:  # storage down or restarting: keep the message, retry later
            log.warning("batch not applied (%s: %s); will retry", type(exc).__name__, exc)
            return Disposition.RETRY
        self.applied += 1
        if self._after_apply is not None:
            await self._after_apply(message)
        return Disposition.ACK

    async def _is_early(self, message: Msg, headers: dict[str, str] | None) -> bool:
        edge, seq = (headers or {}).get(EDGE_HEADER), seq_of(headers)
        if edge is None or seq is None:
            return False
        if message.metadata.num_delivered is not None and (
            message.metadata.num_delivered > MAX_REORDER_DELIVERIES
        ):
            return False  # give up waiting: the store records the gap as an incident
        return is_ahead_of_head(await self._store.chain_head(edge), seq)
