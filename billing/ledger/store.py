"""The ledger's storage seam (``LedgerStore``), beside the coordinator's ``Store``.

Durability contract (as ``billing.store.base``): a writing method MUST commit all of its writes
or none before it returns. Timestamps are RFC 3339 UTC ms strings from the caller. Nothing here
is SQLite-specific; ``billing.ledger.sqlite`` is the first backend, on the coordinator's SQLite
connections (one writer, one reader).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from billing.ledger.periods import UsageRow
from provenance.records import Record


@dataclass(frozen=True, slots=True)
class StepBatch:
    """A sequenced batch the runner attributes: every record copy in it (ts, request id, whether
    ``upstream_of`` is set), the ones that lost request-id dedup too."""

    batch_id: str
    log_index: int
    edge: str
    seq: int
    last_ts: str
    copies: tuple[tuple[str, str, bool], ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """A manifest version naming a content id, as attribution needs it: who, and when it is
    active (``billing.registry.timeline``: from publication until supersession or revocation
    + grace)."""

    manifest_id: str
    creator: str
    published_at: str
    superseded_at: str | None
    effective_at: str | None


@dataclass(frozen=True, slots=True)
class StepBatchInfo:
    """A sequenced batch of a step as its header row says, with the number of deduplicated rows
    that name it (``winners``): equal to ``records`` unless some copy lost request-id dedup."""

    batch_id: str
    edge: str
    seq: int
    last_ts: str
    records: int
    winners: int
    log_index: int


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """Winning records of a step that attribution cannot tell apart without the registry: one
    (hour, content id, edge, use, sample rate) and the same answers to every check that does not
    need ``ts`` to the millisecond. ``sums`` are exact integers in ``aggregate._sum_raw``'s
    order (records, hits, bytes, bytes^2, cache bytes, cache bytes^2, saved, saved^2)."""

    hour: str  # ts[:13]
    content_id: str | None
    has_creator: bool
    has_manifest: bool
    upstream: bool
    billable: bool
    edge: str
    use: str
    sample_rate: str
    min_ts: str
    max_ts: str
    sums: tuple[int, int, int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class StepSummary:
    """A step summed per group: its batches and its winning records' groups."""

    batches: Sequence[StepBatchInfo]
    groups: Sequence[UsageGroup]


@dataclass(frozen=True, slots=True)
class StepWrite:
    """What one attribution step writes, in one transaction with the cursor."""

    first_index: int
    next_index: int
    hourly: Sequence[UsageRow]
    daily: Sequence[UsageRow]
    counts: Sequence[tuple[str, str, str, int]]  # (hour, edge, outcome, records)
    batches: Sequence[tuple[str, str, int, str, int]]  # (batch_id, edge, seq, hour, records)


@dataclass(frozen=True, slots=True)
class PeriodRow:
    period_id: str
    kind: str
    start: str
    end_at: str
    closed_at: str
    statements: int
    payout_micros: int
    currency: str
    pricing_version: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class StoredStatement:
    period_id: str
    creator: str
    sha256: str
    leaf_index: int  # close order (all statements, every period); the column's old name
    statement_json: str
    log_index: int | None = None  # its leaf in the global log; None until sequenced


@dataclass(frozen=True, slots=True)
class PricingVersion:
    version: int
    at: str
    actor: str
    pricing_json: str


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """Records of one edge by where they billed, for one period (reconciliation)."""

    edge: str
    billed_own: int  # records of the period billed in it
    late: int  # records of the period billed later (or not yet): arrived after the close
    late_in: int  # records of earlier periods billed in this one (adjustments)


@dataclass(frozen=True, slots=True)
class ReportedCounters:
    """An edge's counters summed over a period's batches (reconciliation)."""

    served: int
    emitted: int
    dropped: int
    unreported: int  # batches that came without counters


class LedgerStore(Protocol):
    # -- attribution ---------------------------------------------------------------------------
    async def attribution_cursor(self) -> int: ...
    async def read_step(
        self, first_index: int, limit: int
    ) -> tuple[list[StepBatch], list[tuple[str, Record]]]:
        """Sequenced batches from ``first_index`` (at most ``limit``) and their winning
        records as (batch id, record): the deduplicated rows naming one of them."""
        ...

    async def read_claims(self, content_ids: set[str]) -> dict[str, list[Claim]]:
        """Every manifest version naming each content id (absent: none), in one read."""
        ...

    async def read_step_batches(self, first_index: int, limit: int) -> list[StepBatchInfo]:
        """The step's batches in log order, with their winning rows counted now."""
        ...

    async def read_step_summary(self, first_index: int, limit: int) -> StepSummary:
        """The step's batches and its winning records summed per ``UsageGroup`` (exact
        integers)."""
        ...

    async def read_step_winners(
        self, first_index: int, limit: int, groups: Collection[tuple[str, str | None]]
    ) -> list[tuple[str, Record]]:
        """The step's winning records of the given (hour (``ts[:13]``), content id (None:
        none)) pairs, in log and record order, with their batch ids; one read of the step."""
        ...

    async def read_batch_copies(self, batch_id: str) -> tuple[StepBatch, list[tuple[str, str]]]:
        """Every record copy of a batch (its records JSON) and its winning rows (request id,
        ts): for a batch some of whose copies lost dedup."""
        ...

    async def write_step(self, step: StepWrite) -> None:
        """Append the step's rows and move the cursor to ``next_index``; RuntimeError if the
        cursor is not at ``first_index`` (a second runner)."""
        ...

    # -- periods -------------------------------------------------------------------------------
    async def unbilled_rows(self, before: str) -> list[UsageRow]: ...
    async def unbilled_hours(self) -> list[str]: ...
    async def close_period(
        self, period: PeriodRow, statements: Sequence[tuple[str, str, str]], before: str
    ) -> None:
        """Store the period and its statements (creator, sha256, json), next in close order
        and pending for the global log (``log_index`` NULL: the sequencer appends them), and
        claim every unbilled usage row before ``before``; ConflictError if the period id
        exists or another close stored statements meanwhile."""
        ...

    async def list_periods(self) -> list[PeriodRow]: ...
    async def find_period(self, period_id: str) -> PeriodRow | None: ...
    async def period_statements(self, period_id: str) -> list[StoredStatement]: ...
    async def creator_statements(self, creator: str) -> list[StoredStatement]: ...
    async def find_statement(self, period_id: str, creator: str) -> StoredStatement | None: ...

    # -- pricing (each update a new version: the audit trail) ----------------------------------
    async def latest_pricing(self) -> PricingVersion | None: ...
    async def add_pricing(self, version: PricingVersion) -> None: ...
    async def pricing_history(self) -> list[PricingVersion]: ...

    # -- reconciliation ------------------------------------------------------------------------
    async def outcome_counts(self, start: str, end: str) -> dict[tuple[str, str], int]:
        """(edge, outcome) -> records, for record hours in [start, end)."""
        ...

    async def period_usage(self, period_id: str, start: str, end: str) -> list[PeriodUsage]: ...
    async def edge_counters(self, start: str, end: str) -> dict[str, ReportedCounters]:
        """What each edge reported with its attributed batches of hours in [start, end) (the
        store writes the counters with their batch: ``IncomingBatch.counters``); a batch
        without counters counts its records as served and emitted, none dropped."""
        ...

    async def refused_records(self, start: str, end: str) -> dict[str, int]:
        """edge -> records in batches refused as a chain gap or fork and never accepted since
        (by the refused header's first_ts)."""
        ...
