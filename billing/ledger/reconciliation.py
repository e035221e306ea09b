"""Reconciliation of a closed period, per edge, from the ledger's counts (pure
``billing.reconcile`` does the arithmetic).

What the coordinator counted for (period, edge), by record timestamp:

- ``copies``: record copies in accepted batches (including those that arrived after the close);
- ``late``: records of the period that billed after it (arrived after the close) -- so
  ``copies_received`` is ``copies - late``;
- ``duplicates``: copies that lost request-id dedup without ``upstream_of`` (those with it are
  ``upstream-duplicate`` exclusions of their edge);
- exclusions by reason, ``late_in`` (earlier periods' records billed here as adjustments),
  ``billed`` (this period's own records billed here, plus ``late_in``);
- ``chain_gap``: records of batches refused as a gap or fork and never accepted since.
  Batches refused for a bad signature or root are not stored (only counted per edge), so
  ``invalid_signature`` is 0 here: such a loss shows as an unexplained transport remainder.

What the edge reported: ``X-Cachet-Requests-Served`` / ``-Records-Emitted`` / ``-Records-Dropped``
on each batch post (``edge_counters``, stored with the batch, by its last record hour). When an
edge did not report them for every batch of the period, its counters are *assumed* (served =
emitted = the records received and refused, none dropped): the transport stage then carries no
information and the result says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from billing.attribution import ATTRIBUTED, EXCLUSION_REASONS
from billing.ledger.jobs import COPIES
from billing.ledger.store import LedgerStore, PeriodRow, PeriodUsage
from billing.reconcile import (
    CoordinatorCounts,
    EdgeCounters,
    Reconciliation,
    reconcile,
)
from provenance.records import parse_timestamp

REPORTED = "reported"
ASSUMED = "assumed (edge did not report counters for every batch)"


@dataclass(frozen=True, slots=True)
class EdgeReconciliation:
    reconciliation: Reconciliation
    counters: str  # REPORTED or ASSUMED


def _coordinator_counts(
    edge: str, counts: Mapping[tuple[str, str], int], usage: PeriodUsage, refused: int
) -> CoordinatorCounts:
    copies = counts.get((edge, COPIES), 0)
    excluded = {reason: counts.get((edge, reason), 0) for reason in EXCLUSION_REASONS}
    winners = counts.get((edge, ATTRIBUTED), 0) + sum(excluded.values())
    duplicates = copies - winners
    return CoordinatorCounts(
        copies_received=copies - usage.late,
        duplicates=duplicates,
        chain_gap=refused,
        late=usage.late,
        excluded=excluded,
        late_in=usage.late_in,
        billed=usage.billed_own + usage.late_in,
    )


async def reconcile_closed(ledger: LedgerStore, row: PeriodRow) -> list[EdgeReconciliation]:
    """Expected vs billed for every edge either side knows of in the closed period ``row``."""
    counts = await ledger.outcome_counts(row.start, row.end_at)
    usage = {u.edge: u for u in await ledger.period_usage(row.period_id, row.start, row.end_at)}
    reported = await ledger.edge_counters(row.start, row.end_at)
    refused = await ledger.refused_records(row.start, row.end_at)
    edges = sorted({e for e, _ in counts} | set(usage) | set(reported) | set(refused))
    out = []
    for edge in edges:
        mine = _coordinator_counts(
            edge, counts, usage.get(edge, PeriodUsage(edge, 0, 0, 0)), refused.get(edge, 0)
        )
        found = reported.get(edge)
        if found is None or found.unreported:
            assumed = mine.copies_received - mine.duplicates + mine.late + mine.chain_gap
            counters, how = EdgeCounters(assumed, assumed), ASSUMED
        else:
            counters = EdgeCounters(found.served, found.emitted, found.dropped)
            how = REPORTED
        result = reconcile(parse_timestamp(row.start), edge, counters, mine)
        out.append(EdgeReconciliation(result, how))
    return out
