"""Test helpers: a fake clock, edges that seal batches, and a coordinator app on a temp folder."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from billing.config import CoordinatorConfig
from billing.ingest.pipeline import records_json_of
from billing.service import Coordinator
from billing.store.base import EdgeKey, IncomingBatch, Store
from provenance.batches import (
    ZERO_HASH_HEX,
    SealedBatch,
    batch_log_leaf_hash,
    format_sealed_batch,
    header_hash,
    seal_batch,
)
from provenance.keys import SigningKey, format_verifier_key
from provenance.records import Record, format_timestamp

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def signing_key(edge: str, label: str = "k1") -> SigningKey:
    return SigningKey(edge, hashlib.sha256(f"{edge}/{label}".encode()).digest())


@dataclass
class Edge:
    """An edge that seals consecutive batches of its records."""

    name: str
    key: SigningKey
    seq: int = 0
    prev: str = ZERO_HASH_HEX
    served: int = 0
    sent: list[SealedBatch] = field(default_factory=list)
    epoch: datetime = T0  # records are dated from a minute before this

    @property
    def verifier(self) -> str:
        return format_verifier_key(self.key.verifier)

    def record(self, request_id: str | None = None, **overrides: object) -> Record:
        self.served += 1
        fields: dict[str, object] = {
            "request_id": request_id or f"{self.name}-req-{self.served}",
            "ts": format_timestamp(
                self.epoch - timedelta(seconds=60) + timedelta(milliseconds=self.served)
            ),
            "edge": self.name,
            "method": "GET",
            "status": 200,
            "cache": "hit",
            "tier": "memory",
            "bytes": 1000 + self.served,
            "origin_bytes": 0,
        }
        fields.update(overrides)
        return Record(**fields)  # type: ignore[arg-type]

    def seal(self, records: list[Record] | None = None, count: int = 3) -> SealedBatch:
        """Seal the next batch of the chain (and advance the chain)."""
        records = records or [self.record() for _ in range(count)]
        batch = seal_batch(records, self.name, self.seq, self.prev, self.key)
        self.seq += 1
        self.prev = header_hash(batch.header)
        self.sent.append(batch)
        return batch


def incoming_of(sealed: SealedBatch) -> IncomingBatch:
    """A sealed batch as ingest hands it to the store (its id, fields and records JSON)."""
    batch_id = batch_log_leaf_hash(sealed.header, sealed.signature).hex()
    return IncomingBatch(
        batch_id, sealed.header, sealed.signature, sealed.records, records_json_of(sealed)
    )


async def enrolled(store: Store, *names: str) -> list[Edge]:
    """Edges of these names, each enrolled in ``store`` with a one-time token of its own (the
    store checks no signature: ingest does)."""
    now = format_timestamp(T0)
    edges = []
    for name in names:
        await store.add_enrolment_token(f"t-{name}", now, format_timestamp(T0 + timedelta(1)))
        await store.enrol_edge(f"t-{name}", name, EdgeKey(name, "k", "v", now, None), now)
        edges.append(Edge(name, signing_key(name)))
    return edges


def body_of(batch: SealedBatch) -> bytes:
    return format_sealed_batch(batch)


def coordinator_config(data: Path, **overrides: object) -> CoordinatorConfig:
    values: dict[str, object] = {
        "data": str(data),
        "checkpoint_every_batches": 1,
        "checkpoint_interval_s": 3600.0,
        "sqlite_synchronous": "NORMAL",
    }
    values.update(overrides)
    return CoordinatorConfig(**values)  # type: ignore[arg-type]


async def open_coordinator(config: CoordinatorConfig, clock: FakeClock) -> Coordinator:
    return await Coordinator.open(config, clock)
