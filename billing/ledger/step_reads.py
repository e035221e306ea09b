"""The attribution step's reads, shared by the SQLite and PostgreSQL ledgers.

A batch's records are kept once, as its records JSON (migration 8); which copies won request-id
dedup is ``record_ids`` (request id -> batch_ref, record index). A step's winning records are
the fields of its batches' JSON at the indexes ``record_ids`` names, read in windows of about
``WINDOW_RECORDS`` records (a few batches: a window's records are in memory at once) and summed
per ``UsageGroup`` in Python across the step (``GroupSums``), so the planner handles groups,
not records.

Each record's checks that need neither the registry nor the clock are folded into one integer
``flags`` (bits below), and the hit and "saved" cases are grouping flags too, so the sums are
plain: a hit group's bytes are its bytes from cache; a saved group's ``bytes - origin_bytes``
is its origin bytes saved (others save 0). Python's integers make every sum exact, squares
included.

Consistency: a batch's records JSON is written once and never changes; only the dedup rows
move. Ingest may move a winner from an ``upstream_of`` copy in a step batch to a newer batch's
serving copy between two reads. The summary takes a batch whose winners numbered its records
whole and reads the others' dedup rows, each window's in one statement (``winning_indexes``);
``billing.ledger.jobs`` compares the per-batch winner counts before and after and, if any
moved, takes the reference path, whose dedup rows are read in one statement (one snapshot).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any

from billing.aggregate import FROM_CACHE_TIERS
from billing.attribution import BILLABLE_CACHE_OUTCOMES, BILLABLE_METHODS
from billing.ledger.store import Claim, StepBatch, StepBatchInfo, StepSummary, UsageGroup
from provenance.batches import stored_record_fields
from provenance.records import Record, RecordFields

WINDOW_RECORDS = 8_000
HAS_CREATOR, HAS_MANIFEST, UPSTREAM, BILLABLE, FROM_CACHE, SAVED = 1, 2, 4, 8, 16, 32

_IN_STEP = "b.log_index >= ? AND b.log_index < ?"
BATCHES_SQL = f"""SELECT b.batch_id, b.edge, b.seq, b.last_ts, b.record_count,
    (SELECT COUNT(*) FROM record_ids d WHERE d.batch_ref = b.batch_ref), b.log_index
    FROM batches b WHERE {_IN_STEP} ORDER BY b.log_index"""  # noqa: S608 (constants only)
_RECORD_IDS_OF = "SELECT batch_ref, record_index FROM record_ids WHERE batch_ref IN "
# A batch's row with its records JSON (its own table since migration 7).
_BATCH_WITH_RECORDS = (
    "SELECT b.batch_id, b.log_index, b.edge, b.seq, b.last_ts, j.records_json, b.batch_ref"
    " FROM batches b JOIN batch_records j ON j.batch_id = b.batch_id"
)
_STEP_BATCHES = f" WHERE {_IN_STEP} ORDER BY b.log_index"

CLAIMS_SQL = (
    "SELECT i.content_id, m.manifest_id, m.creator, m.published_at, m.superseded_at,"
    " m.effective_at FROM manifest_items i JOIN manifests m ON m.manifest_id = i.manifest_id"
    " WHERE i.content_id IN "
)
CLAIMS_CHUNK = 500


def record_of(fields: RecordFields) -> Record:
    """The ``Record`` of a record's stored fields."""
    return Record(**fields._asdict())


def _outcome_flags(method: str, cache: str, status: int, tier: str) -> int:
    """The flags of a record's request outcome: billing.attribution's BILLABLE_METHODS,
    BILLABLE_CACHE_OUTCOMES and 2xx-or-304 rule, and billing.aggregate's FROM_CACHE_TIERS."""
    billable = (
        method in BILLABLE_METHODS
        and cache in BILLABLE_CACHE_OUTCOMES
        and (200 <= status <= 299 or status == 304)
    )
    return (BILLABLE if billable else 0) | (FROM_CACHE if tier in FROM_CACHE_TIERS else 0)


class GroupSums:
    """Records summed per (hour, content id, flags, edge, use, sample rate), with the first and
    last ``ts`` of each group, fed a window at a time (``add``) so a step's groups span its
    windows; tests/component/billing/test_fast_step.py holds the plan made from ``groups()``
    equal to the record-by-record reference. Flags: the checks that need neither the registry
    nor the clock (``_outcome_flags``, whether creator, manifest and upstream_of are set, saved
    when bytes > origin_bytes)."""

    def __init__(self) -> None:
        # per key: [first ts, last ts, records, bytes, bytes^2, diff, diff^2]
        self._sums: dict[tuple[Any, ...], list[Any]] = {}
        self._outcomes: dict[tuple[str, str, int, str], int] = {}  # a few distinct per step

    def add(self, records: Iterable[RecordFields]) -> None:
        sums, outcomes = self._sums, self._outcomes
        for (_, edge, ts, upstream_of, method, status, cache, tier, size, origin, content_id,
             creator, manifest, sample_rate, use) in records:  # fmt: skip
            outcome = (method, cache, status, tier)
            flags = outcomes.get(outcome)
            if flags is None:
                flags = outcomes[outcome] = _outcome_flags(*outcome)
            if creator is not None:
                flags |= HAS_CREATOR
            if manifest is not None:
                flags |= HAS_MANIFEST
            if upstream_of is not None:
                flags |= UPSTREAM
            diff = size - origin
            if diff > 0:
                flags |= SAVED
            key = (ts[:13], content_id, flags, edge, use, sample_rate)
            acc = sums.get(key)
            if acc is None:
                sums[key] = [ts, ts, 1, size, size * size, diff, diff * diff]
                continue
            if ts < acc[0]:
                acc[0] = ts
            elif ts > acc[1]:
                acc[1] = ts
            acc[2] += 1
            acc[3] += size
            acc[4] += size * size
            acc[5] += diff
            acc[6] += diff * diff

    def groups(self) -> list[UsageGroup]:
        groups = []
        for (hour, content_id, flags, edge, use, sample_rate), acc in self._sums.items():
            first, last, n, total, square, diff, diff_square = acc
            hit, saved = bool(flags & FROM_CACHE), bool(flags & SAVED)
            totals = (
                n, n if hit else 0, total, square, total if hit else 0, square if hit else 0,
                diff if saved else 0, diff_square if saved else 0,
            )  # fmt: skip
            groups.append(UsageGroup(
                hour, content_id, bool(flags & HAS_CREATOR), bool(flags & HAS_MANIFEST),
                bool(flags & UPSTREAM), bool(flags & BILLABLE), edge, use, sample_rate, first,
                last, totals,
            ))  # fmt: skip
        return groups


def next_window(
    batches: Sequence[tuple[int, int]], first: int, size: int
) -> tuple[range, int, int]:
    """From ``batches[first]`` on ((log index, winning records) in log order): the log index
    range of about ``size`` winning records (a batch is never split), its records and the
    position after it."""
    end, records = first, 0
    while end < len(batches) and (end == first or records < size):
        records += batches[end][1]
        end += 1
    return range(batches[first][0], batches[end - 1][0] + 1), records, end


RowsReader = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


async def winning_indexes(read: RowsReader, batch_refs: Sequence[int]) -> dict[int, list[int]]:
    """For each batch of ``batch_refs``, the indexes (sorted) of its records whose copy won
    request-id dedup (``record_ids``): one statement, so one snapshot of the dedup. ``read``
    runs ``?``-style SQL (a store's or the admin's ``_all``)."""
    owned: dict[int, list[int]] = {}
    if batch_refs:
        sql = _RECORD_IDS_OF + "(" + ",".join("?" * len(batch_refs)) + ")"  # placeholders only
        for batch_ref, index in await read(sql, list(batch_refs)):
            owned.setdefault(int(batch_ref), []).append(int(index))
    for indexes in owned.values():
        indexes.sort()
    return owned


def copies_of(batch_id: str, log_index: int, edge: str, seq: int, last_ts: str,
              records: Sequence[RecordFields]) -> StepBatch:  # fmt: skip
    """Every record copy of a batch, from its stored records."""
    copies = tuple((r.ts, r.request_id, r.upstream_of is not None) for r in records)
    return StepBatch(batch_id, log_index, edge, seq, last_ts, copies)


class StepReads:
    """``LedgerStore``'s step reads over the subclass's ``_all(sql, params)`` (``?`` style)."""

    window_records = WINDOW_RECORDS

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def read_step_batches(self, first_index: int, limit: int) -> list[StepBatchInfo]:
        rows = await self._all(BATCHES_SQL, (first_index, first_index + limit))
        return [StepBatchInfo(r[0], r[1], int(r[2]), r[3], int(r[4]), int(r[5]), int(r[6]))
                for r in rows]  # fmt: skip

    async def _winners(
        self, start: int, stop: int, complete: frozenset[int] = frozenset()
    ) -> list[tuple[str, RecordFields]]:
        """The winning records of the batches at log indexes ``[start, stop)``, in log order
        and record order, with their batch ids. ``complete``: the log indexes of batches the
        caller counted every copy of as a winner (``StepBatchInfo``); those are taken whole
        (the caller re-checks the counts afterwards), the others' dedup rows are read in one
        statement."""
        rows = await self._all(_BATCH_WITH_RECORDS + _STEP_BATCHES, (start, stop))
        owned = await winning_indexes(
            self._all, [int(r[6]) for r in rows if int(r[1]) not in complete]
        )
        winners: list[tuple[str, RecordFields]] = []
        for batch_id, log_index, _, _, _, records_json, batch_ref in rows:
            if int(log_index) in complete:
                winners += [(batch_id, f) for f in stored_record_fields(records_json)]
            elif indexes := owned.get(int(batch_ref)):
                fields = stored_record_fields(records_json)
                winners += [(batch_id, fields[i]) for i in indexes]
        return winners

    async def read_step_summary(self, first_index: int, limit: int) -> StepSummary:
        batches = await self.read_step_batches(first_index, limit)
        pending = [(b.log_index, b.winners) for b in batches]
        complete = frozenset(b.log_index for b in batches if b.winners == b.records)
        sums = GroupSums()
        position = 0
        while position < len(pending):
            window, _, position = next_window(pending, position, self.window_records)
            winners = await self._winners(window.start, window.stop, complete)
            sums.add(fields for _, fields in winners)
        return StepSummary(batches, sums.groups())

    async def read_claims(self, content_ids: set[str]) -> dict[str, list[Claim]]:
        # the registry's own manifests_naming() also reads each manifest's signed JSON, which
        # is as long as its item list: per content id, that made steps quadratic in catalogue
        # size (10k assets: 1.7k records/s)
        ids = sorted(content_ids)
        claims: dict[str, list[Claim]] = {}
        for start in range(0, len(ids), CLAIMS_CHUNK):
            chunk = ids[start : start + CLAIMS_CHUNK]
            sql = CLAIMS_SQL + "(" + ",".join("?" * len(chunk)) + ")"  # placeholders only
            for r in await self._all(sql, chunk):
                claims.setdefault(r[0], []).append(Claim(r[1], r[2], r[3], r[4], r[5]))
        return claims

    async def read_step(
        self, first_index: int, limit: int
    ) -> tuple[list[StepBatch], list[tuple[str, Record]]]:
        """The reference path's reads: every batch with its copies, and every winner."""
        batches = await self.read_step_copies(first_index, limit)
        winners = await self._winners(first_index, first_index + limit)
        return batches, [(batch_id, record_of(fields)) for batch_id, fields in winners]

    async def read_step_winners(
        self, first_index: int, limit: int, groups: Collection[tuple[str, str | None]]
    ) -> list[tuple[str, Record]]:
        wanted = set(groups)
        winners = await self._winners(first_index, first_index + limit)
        return [
            (batch_id, record_of(fields))
            for batch_id, fields in winners
            if (fields.ts[:13], fields.content_id) in wanted
        ]

    async def read_step_copies(self, first_index: int, limit: int) -> list[StepBatch]:
        """The batches at log indexes ``first_index`` to ``first_index + limit``, in log order,
        with every record copy (``copies_of``)."""
        sql = _BATCH_WITH_RECORDS + _STEP_BATCHES
        rows = await self._all(sql, (first_index, first_index + limit))
        return [
            copies_of(r[0], int(r[1]), r[2], int(r[3]), r[4], stored_record_fields(r[5]))
            for r in rows
        ]

    async def read_batch_copies(self, batch_id: str) -> tuple[StepBatch, list[tuple[str, str]]]:
        rows = await self._all(_BATCH_WITH_RECORDS + " WHERE b.batch_id = ?", (batch_id,))
        r = rows[0]
        fields = stored_record_fields(r[5])
        batch = copies_of(r[0], int(r[1]), r[2], int(r[3]), r[4], fields)
        indexes = (await winning_indexes(self._all, [int(r[6])])).get(int(r[6]), [])
        return batch, [(fields[i].request_id, fields[i].ts) for i in indexes]
