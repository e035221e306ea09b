"""Reconciliation (issue 6 "Reconciliation"): per period and edge, what the edge says it served
against what was billed, with every difference explained by a reason. Pure; counts in records.

The edge reports, with its batches or heartbeats, ``requests_served``, ``records_emitted``
(the requests it kept a record of) and ``records_dropped`` (records its full spool refused: the
answers were served, unrecorded); sampling left the rest out. The coordinator counts what it
saw of that edge's records for the period. Two stages, each with its own remainder, so an
error in one cannot hide behind an opposite error in the other::

    transport:  records_emitted = (copies_received - duplicates)
                                  + invalid_signature + chain_gap + late + unexplained_transport
    billing:    (copies_received - duplicates) = sum(excluded by reason) + billed_own
                                  + unexplained_billing,      billed_own = billed - late_in

and ``requests_served - billed`` = sampling + spool_full + invalid signatures + chain gaps + late
- late_in + exclusions + both remainders, which is what ``differences`` lists, with
``spool_full = records_dropped`` and ``sampling = requests_served - records_emitted -
records_dropped`` (late_in with a minus sign: adjustments from earlier periods billed in this
one). Duplicates never change what is billed;
they are listed so the coordinator's received count reconciles too. A non-zero remainder is a
bug (or a loss nobody reported, such as a batch that never arrived): it is never folded into a
reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from billing.attribution import EXCLUSION_REASONS

SAMPLING = "sampling"
SPOOL_FULL = "spool-full"
DUPLICATES = "duplicates"
INVALID_SIGNATURE = "invalid-signature"
CHAIN_GAP = "chain-gap"
LATE = "late"
LATE_IN = "late-adjustments-in"
DIFFERENCE_REASONS = (
    SAMPLING,
    SPOOL_FULL,
    INVALID_SIGNATURE,
    CHAIN_GAP,
    LATE,
    LATE_IN,
    *EXCLUSION_REASONS,
)


@dataclass(frozen=True, slots=True)
class EdgeCounters:
    """What an edge reported for one period (``records_dropped``: 0 from edges that do not
    report it)."""

    requests_served: int
    records_emitted: int
    records_dropped: int = 0


@dataclass(frozen=True, slots=True)
class CoordinatorCounts:
    """What the coordinator saw of one edge's records for one period (by record ``ts``).

    ``copies_received``: record copies in batches accepted before the close, duplicates
    included; ``duplicates``: copies dropped by request-id dedup; ``invalid_signature``/
    ``chain_gap``: records in batches refused for signature or root / gap or fork (their
    header's ``count``), never accepted since; ``late``: this period's records that arrived
    after the close; ``excluded``: attribution exclusions by reason; ``late_in``: records of
    earlier periods billed in this period as adjustments; ``billed``: records billed in this
    period's statements (``late_in`` included)."""

    copies_received: int = 0
    duplicates: int = 0
    invalid_signature: int = 0
    chain_gap: int = 0
    late: int = 0
    excluded: Mapping[str, int] = field(default_factory=dict)
    late_in: int = 0
    billed: int = 0


@dataclass(frozen=True, slots=True)
class Reconciliation:
    period_start: datetime
    edge: str
    expected: int  # requests the edge served
    billed: int
    differences: tuple[tuple[str, int], ...]  # (reason, records); positive = not billed here
    duplicates: int  # copies received twice or more: explain received vs billed, not served
    unexplained_transport: int
    unexplained_billing: int


def reconcile(
    period_start: datetime, edge: str, counters: EdgeCounters, counts: CoordinatorCounts
) -> Reconciliation:
    """Expected vs billed for one (period, edge), every difference with its reason."""
    unknown = set(counts.excluded) - set(EXCLUSION_REASONS)
    if unknown:
        raise ValueError(f"unknown exclusion reason(s): {sorted(unknown)}")
    unique = counts.copies_received - counts.duplicates
    lost = counts.invalid_signature + counts.chain_gap + counts.late
    excluded = sum(counts.excluded.values())
    transport = counters.records_emitted - unique - lost
    billing = unique - excluded - (counts.billed - counts.late_in)
    differences = (
        (SAMPLING, counters.requests_served - counters.records_emitted - counters.records_dropped),
        (SPOOL_FULL, counters.records_dropped),
        (INVALID_SIGNATURE, counts.invalid_signature),
        (CHAIN_GAP, counts.chain_gap),
        (LATE, counts.late),
        (LATE_IN, -counts.late_in),
        *((reason, counts.excluded.get(reason, 0)) for reason in EXCLUSION_REASONS),
    )
    return Reconciliation(period_start, edge, counters.requests_served, counts.billed,
                          differences, counts.duplicates, transport, billing)  # fmt: skip


def unexplained_remainder(r: Reconciliation) -> int:
    """Records no reason explains (both stages, as absolute values): zero when consistent."""
    return abs(r.unexplained_transport) + abs(r.unexplained_billing)


def reconcile_period(
    period_start: datetime,
    counters_by_edge: Mapping[str, EdgeCounters],
    counts_by_edge: Mapping[str, CoordinatorCounts],
) -> list[Reconciliation]:
    """Every edge either side knows of; a side that is silent counts as zeros (so an edge that
    reported nothing but was billed, or the reverse, shows up unexplained)."""
    return [
        reconcile(
            period_start,
            edge,
            counters_by_edge.get(edge, EdgeCounters(0, 0)),
            counts_by_edge.get(edge, CoordinatorCounts()),
        )
        for edge in sorted(set(counters_by_edge) | set(counts_by_edge))
    ]
