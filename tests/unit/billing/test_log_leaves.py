"""The order the sequencer takes pending leaves of both kinds in (billing.log.leaves): arrival
time, batches first on a tie, each kind's own order kept, never more than asked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from billing.log.leaves import BatchLeaf, in_arrival_order, leaf_hash_of
from provenance.statement_leaves import StatementLeaf, statement_leaf_hash

_TIMES = st.sampled_from(
    [f"2026-11-27T00:00:0{s}.000Z" for s in range(4)]  # few values: many ties
)


def _statement(n: int) -> StatementLeaf:
    return StatementLeaf(f"creator-{n}", "day-2026-11-26T00:00:00Z", f"{n:064x}")


@given(
    st.lists(_TIMES, max_size=12).map(sorted),
    st.lists(_TIMES, max_size=12).map(sorted),
    st.integers(min_value=0, max_value=30),
)
def test_leaves_come_in_arrival_order_batches_first_on_a_tie(
    batch_times: list[str], statement_times: list[str], limit: int
) -> None:
    batches = [(at, BatchLeaf(f"{i:064x}")) for i, at in enumerate(batch_times)]
    statements = [(at, _statement(i)) for i, at in enumerate(statement_times)]
    taken = in_arrival_order(batches, statements, limit)
    every = sorted(
        [(at, 0, i, leaf) for i, (at, leaf) in enumerate(batches)]
        + [(at, 1, i, leaf) for i, (at, leaf) in enumerate(statements)],
        key=lambda item: item[:3],
    )
    assert taken == [leaf for *_, leaf in every][:limit]


def test_a_batch_leaf_hash_is_its_id_and_a_statements_is_provenances() -> None:
    batch_id = "ab" * 32
    assert leaf_hash_of(BatchLeaf(batch_id)) == bytes.fromhex(batch_id)
    assert leaf_hash_of(_statement(7)) == statement_leaf_hash(_statement(7))
