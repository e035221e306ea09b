"""Proofs and receipts assembled from the store: O(log n) node reads per proof (see
``integrate``), then the pure RFC 9162 generation of ``provenance.merkle``."""

from __future__ import annotations

from billing.errors import NotFoundError
from billing.log.integrate import (
    consistency_node_ids,
    consistency_proof,
    inclusion_node_ids,
    inclusion_proof,
)
from billing.store.base import Store
from provenance.canonical_json import parse
from provenance.errors import ProofFormatError
from provenance.merkle import MerkleTree
from provenance.receipts import Receipt
from provenance.records import record_from_obj, record_leaf_hash


class PendingError(NotFoundError):
    """The record is stored but its batch is not yet covered by a signed checkpoint."""

    reason = "pending"


async def inclusion_proof_at(store: Store, index: int, size: int, log_size: int) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1); ProofFormatError for impossible arguments."""
    if not 0 <= index < size <= log_size:
        raise ProofFormatError(f"need 0 <= leaf_index < tree_size <= {log_size}")
    nodes = await store.read_nodes(inclusion_node_ids(index, size))
    return inclusion_proof(nodes, index, size)


async def consistency_proof_between(
    store: Store, first: int, second: int, log_size: int
) -> list[bytes]:
    """PROOF(first, D[0:second]) (RFC 9162 §2.1.4.1); empty when first == second."""
    if not 0 < first <= second <= log_size:
        raise ProofFormatError(f"need 0 < first <= second <= {log_size}")
    if first == second:
        return []
    nodes = await store.read_nodes(consistency_node_ids(first, second))
    return consistency_proof(nodes, first, second)


async def build_receipt(store: Store, request_id: str) -> Receipt:
    """The receipt of a request's (winning) record, anchored in the latest stored checkpoint.

    The checkpoint read here bounds the proof: its nodes were stored before it was signed, and
    a size sampled from the sequencer before these awaits may already be older than it."""
    location = await store.find_record(request_id)
    if location is None:
        raise NotFoundError("no record for that request id")
    batch = location.batch
    checkpoint = await store.latest_checkpoint()
    if batch.log_index is None or checkpoint is None or batch.log_index >= checkpoint.size:
        raise PendingError("the record's batch is not in a checkpoint yet; retry shortly")
    items = parse(batch.records_json.encode())
    if not isinstance(items, list):
        raise RuntimeError("stored records_json is not a list")
    records = [record_from_obj(item) for item in items]
    index = location.record_index
    record_proof = MerkleTree([record_leaf_hash(r) for r in records]).inclusion_proof(index)
    batch_proof = await inclusion_proof_at(store, batch.log_index, checkpoint.size, checkpoint.size)
    return Receipt(
        record=records[index],
        header=batch.header,
        signature=batch.signature,
        record_index=index,
        record_proof=tuple(record_proof),
        batch_index=batch.log_index,
        batch_proof=tuple(batch_proof),
        checkpoint=checkpoint.note,
    )
