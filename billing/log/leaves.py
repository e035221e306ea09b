"""The two kinds of leaf in the coordinator's one log, and the order the sequencer takes them in.

A **batch** leaf stands for an accepted batch (``batches.log_index``); its leaf hash is the
batch id (``provenance.batches.batch_log_leaf_hash``). A **statement** leaf stands for a closed
statement (``statements.log_index``); its leaf hash is
``provenance.statement_leaves.statement_leaf_hash``. Both wait with a NULL ``log_index`` until the
sequencer integrates them, in arrival order: batches by ``received_at``, statements by their
period's ``closed_at`` (then their close order), ties to batches. Pure; no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from provenance.statement_leaves import StatementLeaf, statement_leaf_hash


@dataclass(frozen=True, slots=True)
class BatchLeaf:
    batch_id: str  # hex of the batch's log leaf hash


LogLeaf = BatchLeaf | StatementLeaf


def leaf_hash_of(leaf: LogLeaf) -> bytes:
    if isinstance(leaf, BatchLeaf):
        return bytes.fromhex(leaf.batch_id)
    return statement_leaf_hash(leaf)


def in_arrival_order(
    batches: Sequence[tuple[str, BatchLeaf]],
    statements: Sequence[tuple[str, StatementLeaf]],
    limit: int,
) -> list[LogLeaf]:
    """The first ``limit`` pending leaves of both kinds by arrival time (RFC 3339 strings, each
    list already in its own order); a batch goes first on a tie."""
    keyed_batches: list[tuple[str, int, int, LogLeaf]] = [
        (at, 0, i, leaf) for i, (at, leaf) in enumerate(batches)
    ]
    keyed_statements: list[tuple[str, int, int, LogLeaf]] = [
        (at, 1, i, leaf) for i, (at, leaf) in enumerate(statements)
    ]
    out: list[LogLeaf] = []
    for _, _, _, leaf in heapq.merge(keyed_batches, keyed_statements, key=lambda k: k[:3]):
        if len(out) == limit:
            break
        out.append(leaf)
    return out
