"""The storage seam: every read and write the coordinator makes, as one typing Protocol.

Durability contract: a method that writes MUST have committed durably when it returns, and MUST
apply all of its writes or none (one transaction). Timestamps are RFC 3339 UTC ms strings passed
in by the caller (the store never reads the clock); hashes are lowercase hex.

Backends implement this with their own SQL (no sharing between backends); the schema in
``migrations`` is written in the SQL subset PostgreSQL and SQLite both run (TEXT, BIGINT,
INTEGER, composite primary keys, ``ON CONFLICT``), so billing and the later PostgreSQL backend read
the same tables. The manifest registry (creators, manifests, change feed) has its own methods
(below ``-- registry``) and migration version 2; see docs/design/registry.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from billing.log.integrate import NodeId
from billing.log.leaves import LogLeaf
from provenance.batches import BatchHeader, ChainHead
from provenance.manifests import ManifestItem
from provenance.records import Record, RecordFields


@dataclass(frozen=True, slots=True)
class EdgeKey:
    edge: str
    key_id: str
    verifier: str  # C2SP verifier key text
    added_at: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class EdgeStatus:
    edge: str
    enrolled_at: str
    last_seen_at: str | None
    head_seq: int | None
    head_hash: str | None
    spool_lag: int | None
    batches_accepted: int
    rejected: dict[str, int]  # reason -> count
    incidents: int


@dataclass(frozen=True, slots=True)
class BatchCounters:
    """What an edge reports with a batch for reconciliation (docs/billing.md §5), since its
    previous batch: requests it served, records it emitted, and records its full spool refused
    (the answers were served, unrecorded). ``dropped <= served - emitted``."""

    served: int
    emitted: int
    dropped: int = 0


def record_id_rows(
    batch_ref: int, records: Sequence[Record | RecordFields]
) -> list[tuple[str, int, int, int]]:
    """A batch's request-id dedup rows (migration 8), as both backends write them: (request id,
    batch_ref, record index, served), served 1 for the serving edge's copy (no upstream_of)."""
    return [
        (r.request_id, batch_ref, index, 1 if r.upstream_of is None else 0)
        for index, r in enumerate(records)
    ]


def counters_hour(last_ts: str) -> str:
    """The hour a batch's counters count in: that of its last record (docs/billing.md §6)."""
    return last_ts[:13] + ":00:00.000Z"


@dataclass(frozen=True, slots=True)
class IncomingBatch:
    """A batch that passed every check but the chain; ``batch_id`` is its log leaf hash.
    ``counters``, when the edge sent them, are stored with the batch, in its transaction: a
    batch is never stored without them nor they without it, and a duplicate stores nothing."""

    batch_id: str
    header: BatchHeader
    signature: bytes
    records: tuple[
        Record | RecordFields, ...
    ]  # batch order; the two share the billed fields' names
    records_json: str  # the canonical records as one JSON array, kept for receipts and audit
    counters: BatchCounters | None = None
    # the edge's spool backlog as it reported it with this batch: written with the batch's own
    # update of its edge row (one transaction per batch, not two)
    spool_lag: int | None = None


@dataclass(frozen=True, slots=True)
class StoredBatch:
    batch_id: str
    header: BatchHeader
    signature: bytes
    log_index: int | None
    records_json: str


class Outcome(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    outcome: Outcome
    records_stored: int  # new request ids, or upstream_of records replaced by the serving edge's
    records_duplicate: int  # request ids already held by a preferred record


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    edge: str
    kind: str  # chain-gap | chain-fork
    seq: int
    detail: str
    header_json: str
    at: str


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root_hash: str
    note: str
    created_at: str


@dataclass(frozen=True, slots=True)
class RecordLocation:
    batch: StoredBatch
    record_index: int


@dataclass(frozen=True, slots=True)
class CreatorKey:
    account: str
    key_id: str
    verifier: str  # C2SP verifier key text, named after the account
    added_at: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """One published manifest version; ``lineage`` is the id of its lineage's version 1."""

    manifest_id: str
    creator: str
    key_id: str
    lineage: str
    version: int
    supersedes: str | None
    signed_json: str  # exactly as ``provenance.manifests.format_signed_manifest`` writes it
    published_at: str
    superseded_at: str | None = None
    revoked_at: str | None = None
    effective_at: str | None = None  # revoked_at + grace: inactive from this instant on
    revoke_reason: str | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A change-feed event to append in the same transaction as the write it reports."""

    kind: str
    at: str
    payload_json: str


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    seq: int
    kind: str
    at: str
    payload_json: str


class Store(Protocol):
    async def close(self) -> None: ...

    # -- admin tokens (hashes only) ------------------------------------------------------------
    async def replace_admin_token(self, token_hash: str, now: str) -> None: ...
    async def has_admin_token(self, token_hash: str) -> bool: ...
    async def count_admin_tokens(self) -> int: ...

    # -- edges ------------------------------------------------------------------------------
    async def add_enrolment_token(self, token_hash: str, now: str, expires_at: str) -> None: ...
    async def enrol_edge(self, token_hash: str, edge: str, key: EdgeKey, now: str) -> None:
        """Consume the token and enrol the edge with its first key, in one transaction.
        EnrolmentError if the token is unknown, used or expired; ConflictError if enrolled."""
        ...

    async def add_edge_key(self, key: EdgeKey) -> None: ...
    async def revoke_edge_key(self, edge: str, key_id: str, now: str) -> None: ...
    async def edge_keys(self, edge: str) -> list[EdgeKey]: ...
    async def list_edges(self) -> list[EdgeStatus]: ...
    async def note_edge_seen(self, edge: str, now: str, spool_lag: int | None) -> None: ...
    async def count_rejection(self, edge: str, reason: str) -> None: ...
    async def list_incidents(self, edge: str | None) -> list[Incident]: ...

    # -- ingest ------------------------------------------------------------------------------
    async def find_batch(self, batch_id: str) -> StoredBatch | None: ...
    async def chain_head(self, edge: str) -> ChainHead | None: ...
    async def apply_batch(self, batch: IncomingBatch, now: str, incident_id: str) -> ApplyResult:
        """In ONE transaction: acknowledge a stored batch as DUPLICATE; else check the chain
        (``billing.ingest.decide.check_chain``) against the edge's head, storing a refused batch
        as an incident (``incident_id``) and re-raising; else store the batch, upsert its records
        (dedup by request id, ``decide.is_preferred``), store its ``counters`` (the ledger's
        ``edge_counters`` row, hour of ``last_ts``) and advance the edge's head."""
        ...

    # -- the log -----------------------------------------------------------------------------
    async def unsequenced_batch_ids(self, limit: int) -> list[str]: ...
    async def unsequenced_leaves(self, limit: int) -> list[LogLeaf]:
        """Up to ``limit`` leaves waiting for the log, batches and closed statements, in
        arrival order (``billing.log.leaves.in_arrival_order``)."""
        ...

    async def log_size(self) -> int: ...
    async def append_leaves(
        self, first_index: int, leaves: Sequence[LogLeaf], nodes: Sequence[tuple[NodeId, bytes]]
    ) -> None:
        """Give the leaves' batches and statements log indexes first_index.. and store the
        nodes; RuntimeError if the log's size is not ``first_index`` (a second sequencer) or a
        leaf is unknown or already in the log (nothing is written then)."""
        ...

    async def read_nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]: ...
    async def batch_at(self, log_index: int) -> StoredBatch | None: ...
    async def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...
    async def latest_checkpoint(self) -> StoredCheckpoint | None: ...
    async def find_record(self, request_id: str) -> RecordLocation | None: ...

    # -- registry (docs/design/registry.md); each write appends its events atomically ----------
    async def add_creator(
        self, account: str, keys: Sequence[CreatorKey], now: str, events: Sequence[NewEvent]
    ) -> None:
        """ConflictError if the account exists."""
        ...

    async def add_creator_key(self, key: CreatorKey, events: Sequence[NewEvent]) -> bool:
        """NotFoundError if no such creator; False (and no event) if the key was there."""
        ...

    async def revoke_creator_key(
        self, account: str, key_id: str, now: str, events: Sequence[NewEvent]
    ) -> bool:
        """NotFoundError if no such key; False (and no event) if it was already revoked."""
        ...

    async def creator_keys(self, account: str) -> list[CreatorKey]: ...
    async def list_creators(self) -> list[tuple[str, str]]:
        """(account, created_at) pairs, by account."""
        ...

    async def add_creator_token(self, token_hash: str, account: str, now: str) -> None: ...
    async def creator_of_token(self, token_hash: str) -> str | None: ...
    async def find_manifest(self, manifest_id: str) -> StoredManifest | None: ...
    async def insert_manifest(
        self, manifest: StoredManifest, items: Sequence[ManifestItem], events: Sequence[NewEvent]
    ) -> None:
        """Store a new version and mark its predecessor superseded at ``published_at``.
        ConflictError if the id, the (lineage, version) or the predecessor's successor slot is
        already taken (a racing publisher)."""
        ...

    async def revoke_manifest(
        self,
        manifest_id: str,
        revoked_at: str,
        effective_at: str,
        reason: str,
        events: Sequence[NewEvent],
    ) -> bool:
        """False (and no event) if it was already revoked; NotFoundError if unknown."""
        ...

    async def manifests_naming(
        self, *, content_id: str | None = None, path: str | None = None
    ) -> list[tuple[StoredManifest, ManifestItem]]:
        """Every version (active or not) with an item of that content id or path, oldest
        published first."""
        ...

    async def registry_events(self, after_seq: int, limit: int) -> list[RegistryEvent]: ...
