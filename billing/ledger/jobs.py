"""The attribution runner: sequenced batches -> one outcome per deduplicated record -> hourly and
daily usage rows and outcome counts, each step in one transaction with the cursor.

Exactly once: the cursor is the next log index to attribute; a step reads the batches at
``[cursor, cursor + n)`` (log indexes are dense and assigned in order by the sequencer; the
indexes of that range no batch holds are statement leaves, which bill nothing), and writes
their rows together with the new cursor ``cursor + n``, refusing if the cursor moved. A
batch's winning records are the copies whose request-id dedup row names it (``record_ids``,
by batch_ref and index; the records themselves are the batch's records JSON): a record an
``upstream_of`` copy held until the serving edge's copy replaced it is attributed again with the
later batch (the first outcome was an exclusion, so nothing is billed twice). Losing copies are
counted as ``copies`` only: reconciliation lists them as duplicates.

The registry is read once per content id per step (``manifests_naming``), and the pure
``billing.attribution.attribute`` decides with ``billing.registry.timeline.choose_active`` --
the same rule as ``Registry.manifest_active_at``.

A step is planned from per-group sums (``LedgerStore.read_step_summary``: the winning records
summed per group as they are read, ``step_reads.GroupSums``), reading single records only
where a group's records may differ; when ingest moved a winner during the step's reads it falls
back to the record-by-record reference (``read_step`` + ``plan_step``). Both give the same rows
(``billing.ledger.step_plan``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from billing.ledger.metrics import BillingMetrics
from billing.ledger.step_plan import (
    COPIES,
    PlannedStep,
    RegistrySnapshot,
    hour_of,
    judge_groups,
    plan_step,
    plan_summary_step,
)
from billing.ledger.store import LedgerStore, StepWrite
from billing.store.base import Store
from provenance.records import Record

__all__ = ["BATCHES_PER_STEP", "COPIES", "AttributionRunner", "RegistrySnapshot", "hour_of"]
BATCHES_PER_STEP = 256
_log = logging.getLogger("cachet.billing")


LoadRegistry = Callable[[set[str]], Awaitable[RegistrySnapshot]]


async def plan_from_summary(
    ledger: LedgerStore, first: int, limit: int, load_registry: LoadRegistry, now: datetime
) -> PlannedStep | None:
    """The step planned from the store's group sums; None if there is nothing to attribute or
    ingest moved a winning record while the step was read."""
    summary = await ledger.read_step_summary(first, limit)
    if not summary.batches:
        return None
    registry = await load_registry(
        {g.content_id for g in summary.groups if g.content_id is not None}
    )
    outcomes, mixed = judge_groups(summary, registry, now)
    mixed_winners: list[Record] = []
    if mixed:  # one read of the step for all of them (a registry change may mix many groups)
        rows = await ledger.read_step_winners(first, limit, mixed)
        mixed_winners = [record for _, record in rows]
    partial = [
        await ledger.read_batch_copies(b.batch_id)
        for b in summary.batches
        if b.winners != b.records
    ]
    # The reads above are separate queries: ingest may meanwhile move a row from a step batch's
    # upstream_of copy to a newer batch's serving copy (rows only ever leave sequenced batches).
    # Unchanged counts mean every read saw the same rows; otherwise the reference re-reads.
    if await ledger.read_step_batches(first, limit) != list(summary.batches):
        return None
    return plan_summary_step(first, summary, registry, now, outcomes, mixed, mixed_winners, partial)


async def plan_record_by_record(
    ledger: LedgerStore, first: int, limit: int, load_registry: LoadRegistry, now: datetime
) -> PlannedStep | None:
    """The reference: every winning record read and attributed on its own."""
    batches, winners = await ledger.read_step(first, limit)
    if not batches:
        return None
    registry = await load_registry({r.content_id for _, r in winners if r.content_id is not None})
    return plan_step(first, batches, winners, registry, now)


class AttributionRunner:
    def __init__(
        self,
        store: Store,
        ledger: LedgerStore,
        metrics: BillingMetrics,
        clock: Callable[[], datetime],
        interval_s: float = 5.0,
    ) -> None:
        self._store, self._ledger, self._metrics = store, ledger, metrics
        self._clock, self._interval_s = clock, interval_s
        self.lock = asyncio.Lock()  # held by a step and by a period close
        self._task: asyncio.Task[None] | None = None

    async def step(self, log_size: int) -> int:
        """Attribute the batches among the next log leaves below ``log_size``; the number of
        leaves the cursor moved over (statement leaves are passed over, they bill nothing)."""
        return (await self._step(log_size))[0]

    async def _step(self, log_size: int) -> tuple[int, int]:
        """(leaves the cursor moved over, batches among them)."""
        first = await self._ledger.attribution_cursor()
        limit = min(BATCHES_PER_STEP, log_size - first)
        if limit <= 0:
            return 0, 0
        now = self._clock()
        planned = await plan_from_summary(self._ledger, first, limit, self._load_registry, now)
        if planned is None:
            planned = await plan_record_by_record(
                self._ledger, first, limit, self._load_registry, now
            )
        # Every index below log_size is committed, a batch's or a statement's: the step covers
        # the whole range, so the cursor passes the statements among (or after) its batches.
        if planned is None:
            await self._ledger.write_step(StepWrite(first, first + limit, (), (), (), ()))
            return limit, 0
        await self._ledger.write_step(replace(planned.write, next_index=first + limit))
        self._metrics.note_step(planned.creator_totals, planned.by_outcome)
        return limit, len(planned.write.batches)

    async def _load_registry(self, content_ids: set[str]) -> RegistrySnapshot:
        return RegistrySnapshot(await self._ledger.read_claims(content_ids))

    async def run_until_caught_up(self, log_size: int) -> int:
        """Attribute everything sequenced below ``log_size`` (tests and period closes); the
        number of batches attributed."""
        done = 0
        async with self.lock:
            while True:
                leaves, batches = await self._step(log_size)
                if not leaves:
                    return done
                done += batches

    def start(self, log_size: Callable[[], int]) -> None:
        self._task = asyncio.create_task(self._run(log_size), name="cachet-billing-attribution")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, log_size: Callable[[], int]) -> None:
        while True:
            try:
                await self.run_until_caught_up(log_size())
            except Exception:  # keep attributing after a transient store error
                _log.exception("attribution step failed; retrying")
            await asyncio.sleep(self._interval_s)
