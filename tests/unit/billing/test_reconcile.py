"""Reconciliation (issue 6 "Reconciliation"): per period and edge, expected (counters the edges
report) vs billed, every difference explained by a reason: duplicates, invalid signatures, chain
gaps, unknown or revoked content, hash mismatches, late records, sampling. "A discrepancy without
a reason is a bug": the unexplained remainder is zero for consistent inputs, non-zero otherwise."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.attribution import Attributed, Excluded, attribute_all
from billing.reconcile import (
    CoordinatorCounts,
    EdgeCounters,
    reconcile,
    reconcile_period,
    unexplained_remainder,
)
from provenance.records import Record
from tests.unit.billing.billing_builders import (
    NOW,
    is_revoked_at,
    manifest_active_at,
    records,
)

START = datetime(2026, 11, 27, tzinfo=UTC)
FATES = ("sampled-out", "spool-full", "bad-signature", "gap", "late", "received")


def _simulate(fates: list[str], batch: list[Record], copies: list[int], late_in: int):
    """The edge served one request per fate; the coordinator's counts follow from the fates."""
    received = [r for f, r in zip(fates, batch, strict=False) if f == "received"]
    outcomes = attribute_all(received, manifest_active_at, now=NOW + timedelta(days=3),
                             is_revoked_at=is_revoked_at)  # fmt: skip
    excluded = Counter(o.reason for o in outcomes if isinstance(o, Excluded))
    attributed = sum(isinstance(o, Attributed) for o in outcomes)
    n_copies = [1 + copies[i % len(copies)] if copies else 1 for i in range(len(received))]
    tally = Counter(fates)
    unrecorded = tally["sampled-out"] + tally["spool-full"]
    counters = EdgeCounters(len(fates), len(fates) - unrecorded, tally["spool-full"])
    counts = CoordinatorCounts(
        copies_received=sum(n_copies), duplicates=sum(n_copies) - len(received),
        invalid_signature=tally["bad-signature"], chain_gap=tally["gap"], late=tally["late"],
        excluded=dict(excluded), late_in=late_in, billed=attributed + late_in,
    )  # fmt: skip
    return counters, counts


@given(
    st.lists(st.sampled_from(FATES), max_size=20),
    st.lists(records(), min_size=20, max_size=20),
    st.lists(st.integers(0, 3), max_size=5),
    st.integers(0, 5),
)
@settings(max_examples=50, deadline=None)
def test_consistent_inputs_leave_no_unexplained_remainder(
    fates: list[str], batch: list[Record], copies: list[int], late_in: int
) -> None:
    counters, counts = _simulate(fates, batch, copies, late_in)
    result = reconcile(START, "edge-a", counters, counts)
    assert unexplained_remainder(result) == 0
    assert result.expected - result.billed == sum(n for _, n in result.differences)
    assert result.duplicates == counts.duplicates


@given(
    st.lists(st.sampled_from(FATES), min_size=1, max_size=15),
    st.lists(records(), min_size=15, max_size=15),
    st.sampled_from(["lost", "billed-twice", "uncounted-exclusion"]),
)
@settings(max_examples=40, deadline=None)
def test_a_discrepancy_without_a_reason_is_reported(
    fates: list[str], batch: list[Record], fault: str
) -> None:
    counters, counts = _simulate(fates, batch, [], 0)
    if fault == "lost":  # a batch vanished: the edge emitted one record nobody accounts for
        counters = EdgeCounters(counters.requests_served + 1, counters.records_emitted + 1)
    elif fault == "billed-twice":
        counts = replace(counts, billed=counts.billed + 1)
    else:
        excluded = dict(counts.excluded)
        excluded["revoked"] = excluded.get("revoked", 0) + 1
        counts = replace(counts, excluded=excluded)
    assert unexplained_remainder(reconcile(START, "edge-a", counters, counts)) == 1


def test_each_reason_is_listed_with_its_records() -> None:
    counters = EdgeCounters(requests_served=100, records_emitted=60)
    counts = CoordinatorCounts(
        copies_received=52, duplicates=2, invalid_signature=3, chain_gap=4, late=3,
        excluded={"unknown-content": 5, "revoked": 1, "hash-mismatch": 2}, late_in=7, billed=49,
    )  # fmt: skip
    result = reconcile(START, "edge-a", counters, counts)
    reasons = dict(result.differences)
    assert reasons["sampling"] == 40 and reasons["invalid-signature"] == 3
    assert reasons["spool-full"] == 0
    assert (
        reasons["chain-gap"] == 4 and reasons["late"] == 3 and reasons["late-adjustments-in"] == -7
    )
    assert (reasons["unknown-content"], reasons["revoked"], reasons["hash-mismatch"]) == (5, 1, 2)
    assert result.duplicates == 2
    assert unexplained_remainder(result) == 0


def test_records_a_full_spool_dropped_have_their_own_reason() -> None:
    """docs/billing.md §5: ``spool-full`` = records dropped; ``sampling`` = served - emitted -
    dropped. An edge that does not report drops (old edges) dropped none."""
    counts = CoordinatorCounts(copies_received=60, billed=60)
    result = reconcile(START, "edge-a", EdgeCounters(100, 60, 15), counts)
    reasons = dict(result.differences)
    assert (reasons["sampling"], reasons["spool-full"]) == (25, 15)
    assert unexplained_remainder(result) == 0
    assert result.expected - result.billed == sum(n for _, n in result.differences)
    old_edge = dict(reconcile(START, "edge-a", EdgeCounters(100, 60), counts).differences)
    assert (old_edge["sampling"], old_edge["spool-full"]) == (40, 0)


def test_opposite_errors_in_the_two_stages_do_not_cancel() -> None:
    counters = EdgeCounters(10, 10)
    counts = CoordinatorCounts(copies_received=9, billed=10)  # one lost, one invented
    result = reconcile(START, "edge-a", counters, counts)
    assert (result.unexplained_transport, result.unexplained_billing) == (1, -1)
    assert unexplained_remainder(result) == 2


def test_an_edge_known_to_one_side_only_is_unexplained() -> None:
    results = reconcile_period(
        START, {"edge-a": EdgeCounters(3, 3)}, {"edge-b": CoordinatorCounts(2, billed=2)}
    )
    assert [(r.edge, unexplained_remainder(r)) for r in results] == [("edge-a", 3), ("edge-b", 2)]


def test_unknown_exclusion_reason_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown exclusion"):
        reconcile(START, "e", EdgeCounters(1, 1), CoordinatorCounts(1, excluded={"meh": 1}))
