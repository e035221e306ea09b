"""The attribution runner: sequenced batches -> one outcome per deduplicated record -> hourly and
daily usage rows and outcome counts, each step in one transaction with the cursor.

Exactly once: the cursor is the next log index to attribute; a step reads the batches at
``[cursor, cursor + n)`` (log indexes are dense and assigned in order by the sequencer), and
writes their rows together with the new cursor, refusing if the cursor moved. A batch's winning
records are the deduplicated rows that name it (``records.batch_id``): a record an
``upstream_of`` copy held until the serving edge's copy replaced it is attributed again with the
later batch (the first outcome was an exclusion, so nothing is billed twice). Losing copies are
counted as ``copies`` only: reconciliation lists them as duplicates.

The registry is read once per content id per step (``manifests_naming``), and the pure
``billing.attribution.attribute`` decides with ``billing.registry.timeline.choose_active`` --
the same rule as ``Registry.manifest_active_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from billing.aggregate import _sum_raw
from billing.attribution import ATTRIBUTED, UPSTREAM_DUPLICATE, Attributed, attribute
from billing.ledger.metrics import BillingMetrics
from billing.ledger.periods import UsageRow
from billing.ledger.store import LedgerStore, StepBatch, StepWrite
from billing.registry.timeline import choose_active
from billing.store.base import Store, StoredManifest
from provenance.manifests import ManifestItem
from provenance.records import Record

COPIES = "copies"
BATCHES_PER_STEP = 256
_log = logging.getLogger("cachet.billing")


def hour_of(ts: str) -> str:
    """The hour bucket start of a record timestamp, in the same fixed-width form."""
    return ts[:13] + ":00:00.000Z"


def _rows(sums: dict[tuple[str, ...], list[int]], suffix: str) -> list[UsageRow]:
    return [
        UsageRow(prefix + suffix, creator, cid, mid, edge, use, rate, tuple(s))  # type: ignore[arg-type]
        for (prefix, creator, cid, mid, edge, use, rate), s in sums.items()
    ]


class RegistrySnapshot:
    """The registry's manifests per content id, read once per step."""

    def __init__(self, pairs: dict[str, list[tuple[StoredManifest, ManifestItem]]]) -> None:
        self._pairs = pairs

    @classmethod
    async def load(cls, store: Store, content_ids: set[str]) -> RegistrySnapshot:
        pairs = {cid: await store.manifests_naming(content_id=cid) for cid in content_ids}
        return cls(pairs)

    def active_at(self, content_id: str, ts: str) -> tuple[str, str, object] | None:
        pairs = self._pairs.get(content_id, [])
        chosen = choose_active((m for m, _ in pairs), ts)
        return None if chosen is None else (chosen.manifest_id, chosen.creator, dict(pairs)[chosen])

    def is_revoked_at(self, content_id: str, ts: str) -> bool:
        return any(
            m.effective_at is not None and m.effective_at <= ts
            for m, _ in self._pairs.get(content_id, [])
        )


def plan_step(
    first_index: int,
    batches: list[StepBatch],
    winners: list[tuple[str, Record]],
    registry: RegistrySnapshot,
    now: datetime,
) -> tuple[StepWrite, list[Attributed], Counter[str]]:
    """Pure: the rows one step writes, the attributed records and the outcome counts.

    Per (hour, edge): ``copies`` received; each winner's outcome; a losing copy with
    ``upstream_of`` set is counted ``upstream-duplicate`` for its edge (the serving edge's copy
    won, as it should); a losing copy without it is a plain duplicate (copies only)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    won = {(batch_id, r.request_id) for batch_id, r in winners}
    by_outcome: Counter[str] = Counter()
    for b in batches:
        for ts, request_id, upstream in b.copies:
            counts[(hour_of(ts), b.edge, COPIES)] += 1
            if upstream and (b.batch_id, request_id) not in won:
                counts[(hour_of(ts), b.edge, UPSTREAM_DUPLICATE)] += 1
                by_outcome[UPSTREAM_DUPLICATE] += 1
    attributed: list[Attributed] = []
    for _batch_id, record in winners:
        outcome = attribute(record, registry.active_at, now=now,
                            is_revoked_at=registry.is_revoked_at)  # fmt: skip
        name = ATTRIBUTED if isinstance(outcome, Attributed) else outcome.reason
        if isinstance(outcome, Attributed):
            attributed.append(outcome)
        counts[(hour_of(record.ts), record.edge, name)] += 1
        by_outcome[name] += 1
    hourly = _sum_raw(attributed, 13)
    daily: dict[tuple[str, ...], list[int]] = {}
    for key, s in hourly.items():
        day_key = (key[0][:10], *key[1:])
        total = daily.setdefault(day_key, [0] * 8)
        for i, value in enumerate(s):
            total[i] += value
    step = StepWrite(
        first_index=first_index,
        next_index=first_index + len(batches),
        hourly=_rows(hourly, ":00:00.000Z"),  # type: ignore[arg-type]
        daily=_rows(daily, "T00:00:00.000Z"),
        counts=[(h, e, o, n) for (h, e, o), n in sorted(counts.items())],
        batches=[(b.batch_id, b.edge, b.seq, hour_of(b.last_ts), len(b.copies)) for b in batches],
    )
    return step, attributed, by_outcome


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
        """Attribute the next batches below ``log_size``; the number of batches done."""
        first = await self._ledger.attribution_cursor()
        limit = min(BATCHES_PER_STEP, log_size - first)
        if limit <= 0:
            return 0
        batches, winners = await self._ledger.read_step(first, limit)
        if not batches:
            return 0
        content_ids = {r.content_id for _, r in winners if r.content_id is not None}
        registry = await RegistrySnapshot.load(self._store, content_ids)
        step, attributed, by_outcome = plan_step(first, batches, winners, registry, self._clock())
        await self._ledger.write_step(step)
        self._metrics.note_step(attributed, by_outcome)
        return len(batches)

    async def run_until_caught_up(self, log_size: int) -> int:
        """Attribute everything sequenced below ``log_size`` (tests and period closes)."""
        done = 0
        async with self.lock:
            while n := await self.step(log_size):
                done += n
        return done

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
