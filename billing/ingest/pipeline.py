"""The ingest shell: decode, parse, verify, check the chain and store one batch.

Order of checks (each refusal raises a typed error whose ``reason`` is counted): body size and
encoding (413/400), parse (400), an identical batch already stored (acknowledged as duplicate,
nothing written), the edge's key known and not revoked (403), signature, count, Merkle root and
timestamp span (422), not future-dated (422), then in the store's one transaction the chain (409
chain-gap / chain-fork, stored as an incident) and the write. Admission is bounded: more than
``max_pending`` batches in flight answer PushbackError (503 + Retry-After).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from billing.config import CoordinatorConfig
from billing.errors import PayloadTooLargeError, reason_of
from billing.ingest.decide import check_not_future, keyring_for
from billing.metrics import CoordinatorMetrics
from billing.store.base import BatchCounters, IncomingBatch, Outcome, Store
from provenance.batches import (
    SealedBatch,
    batch_log_leaf_hash,
    parse_canonical_batch,
    verify_canonical_batch,
)
from provenance.compression import DECOMPRESS_ERRORS, gzip_inflater
from provenance.errors import CachetError, FormatError, PushbackError
from provenance.keys import parse_verifier_key
from provenance.records import format_timestamp, record_to_canonical_bytes


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcome: Outcome
    batch_id: str
    edge: str
    seq: int
    records_stored: int
    records_duplicate: int


def decode_body(body: bytes, content_encoding: str | None, limit_bytes: int) -> bytes:
    """The identity bytes of a gzip or identity body (RFC 9110 §8.4); at most ``limit_bytes``."""
    if len(body) > limit_bytes:
        raise PayloadTooLargeError(f"body over {limit_bytes} bytes")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise FormatError(f"unsupported content-encoding {encoding[:20]!r}")
    inflater = gzip_inflater()
    try:
        data = inflater.decompress(body, limit_bytes + 1)
    except DECOMPRESS_ERRORS:
        raise FormatError("body is not valid gzip") from None
    if len(data) > limit_bytes:
        raise PayloadTooLargeError(f"decoded body over {limit_bytes} bytes")
    if not inflater.eof:
        raise FormatError("gzip body is truncated")
    return data


def records_json_of(sealed: SealedBatch) -> str:
    """The records of a generically parsed batch as one canonical JSON array (ingest itself
    takes ``CanonicalBatch.records_json``, the exact bytes received)."""
    return "[" + ",".join(record_to_canonical_bytes(r).decode() for r in sealed.records) + "]"


class Ingestor:
    def __init__(
        self,
        store: Store,
        metrics: CoordinatorMetrics,
        config: CoordinatorConfig,
        clock: Callable[[], datetime],
        on_accepted: Callable[[], None],
    ) -> None:
        self._store, self._metrics, self._config = store, metrics, config
        self._clock, self._on_accepted = clock, on_accepted
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def ingest(
        self,
        body: bytes,
        content_encoding: str | None,
        spool_lag: int | None = None,
        counters: BatchCounters | None = None,
    ) -> IngestResult:
        """Verify and store one batch (with the edge's ``counters``, in the same transaction);
        raise a CachetError with the reason if refused."""
        if self._pending >= self._config.max_pending_batches:
            self._metrics.batches_rejected.labels("overloaded").inc()
            raise PushbackError("ingest queue full", self._config.retry_after_s)
        self._pending += 1
        edge: list[str] = []
        try:
            result = await self._ingest(body, content_encoding, spool_lag, counters, edge)
        except CachetError as exc:
            reason = reason_of(exc)
            self._metrics.batches_rejected.labels(reason).inc()
            if edge:
                await self._store.count_rejection(edge[0], reason)
            raise
        finally:
            self._pending -= 1
        self._count(result)
        return result

    async def _ingest(
        self,
        body: bytes,
        encoding: str | None,
        spool_lag: int | None,
        counters: BatchCounters | None,
        edge: list[str],
    ) -> IngestResult:
        limit = self._config.max_batch_bytes
        sealed = parse_canonical_batch(decode_body(body, encoding, limit))
        header = sealed.header
        batch_id = batch_log_leaf_hash(header, sealed.signature).hex()
        now = self._clock()
        stamp = format_timestamp(now)
        if await self._store.find_batch(batch_id) is not None:
            await self._store.note_edge_seen(header.edge, stamp, spool_lag)
            return IngestResult(Outcome.DUPLICATE, batch_id, header.edge, header.seq, 0, 0)
        keys = await self._store.edge_keys(header.edge)
        if keys:
            edge.append(header.edge)  # an enrolled edge: count its refusals
        ring = keyring_for(
            header, [(parse_verifier_key(k.verifier), k.revoked_at is not None) for k in keys]
        )
        verify_canonical_batch(sealed, ring)
        check_not_future(header, now, self._config.max_future_skew_s)
        incoming = IncomingBatch(
            batch_id,
            header,
            sealed.signature,
            sealed.records,
            sealed.records_json,
            counters,
            spool_lag,
        )
        applied = await self._store.apply_batch(incoming, stamp, secrets.token_hex(16))
        # An accepted batch noted its edge as seen, with the lag, in its own transaction: a
        # second transaction per batch (a second fsync) cost every edge's every batch.
        if spool_lag is not None and applied.outcome is Outcome.DUPLICATE:
            await self._store.note_edge_seen(header.edge, stamp, spool_lag)
        return IngestResult(
            applied.outcome,
            batch_id,
            header.edge,
            header.seq,
            applied.records_stored,
            applied.records_duplicate,
        )

    def _count(self, result: IngestResult) -> None:
        if result.outcome is Outcome.DUPLICATE:
            self._metrics.batches_duplicate.inc()
            return
        self._metrics.batches_accepted.inc()
        self._metrics.records_ingested.inc(result.records_stored)
        self._metrics.records_duplicate.inc(result.records_duplicate)
        self._on_accepted()
