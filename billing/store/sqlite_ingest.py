"""Writing batches for ``SqliteStore``: group commit (a mixin, as ``sqlite_registry`` is, so
``sqlite.py`` stays one concept per screen; it uses the store's writer connection and lock).

``apply_batch`` queues its batch; one writer task takes every batch queued by the
time it gets the lock (batches arriving while a commit is running wait for the next one, so
nothing is ever delayed to wait for company) and applies them in arrival order in ONE
transaction, each under its own savepoint, then commits once and only then answers each caller.
Every batch's outcome is the one it would have had alone: a later batch sees the earlier ones
(a resend of a batch earlier in the group is a DUPLICATE, the next seq of an edge links to its
head), a chain refusal keeps its incident, and a batch that fails for any other reason is rolled
back to its savepoint alone. If the COMMIT fails, every batch of the group fails: none was
acknowledged, none is half-applied.

Why (docs/design/coordinator.md, Performance): with random request ids each record dirties its
own leaf of the dedup index, and every dirty page is written to the WAL at each commit; a group
shares those pages and the fsync between its batches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

import aiosqlite

from billing.errors import ChainForkError, ChainGapError
from billing.ingest.decide import check_chain
from billing.store.base import (
    ApplyResult,
    IncomingBatch,
    Outcome,
    counters_hour,
    record_id_rows,
)
from provenance.batches import ChainHead, header_canonical_bytes

# One group commit holds at most this many records (a bound on the transaction, not a wait).
GROUP_MAX_RECORDS = 64_000
# A batch's records are stored once, as its records JSON (batch_records); per record only the
# request-id dedup is a row (migration 8): which batch and index hold the winning copy.
_RECORD_ID_COLUMNS = 4
# Each row is its own upsert (SQLite applies ON CONFLICT row by row, in order, so a request id
# twice in one statement behaves as in two). The serving edge's copy (served = 1: no
# upstream_of) replaces an upstream_of copy; otherwise the first copy stays.
_UPSERT_HEAD = "INSERT INTO record_ids (request_id, batch_ref, record_index, served) VALUES "
_ROW_PLACEHOLDERS = "(" + ",".join("?" * _RECORD_ID_COLUMNS) + ")"
_UPSERT_TAIL = (
    " ON CONFLICT (request_id) DO UPDATE SET batch_ref = excluded.batch_ref,"
    " record_index = excluded.record_index, served = excluded.served"
    " WHERE excluded.served = 1 AND record_ids.served = 0"
)
# Rows per INSERT statement: one statement for a whole batch of 1,000 records (4,000 bound
# values; SQLite allows 32,766 since 3.32, 999 before). One multi-row statement costs less of
# SQLite's CPU per record than executemany's reset/bind/step per row (docs/design/
# coordinator.md, Performance).
ROWS_PER_STATEMENT = (
    1000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999 // _RECORD_ID_COLUMNS
)


@functools.lru_cache(maxsize=16)
def upsert_rows_sql(count: int) -> str:
    """The dedup upsert of ``count`` records in one statement."""
    return _UPSERT_HEAD + ",".join([_ROW_PLACEHOLDERS] * count) + _UPSERT_TAIL


# The ledger's table (billing/ledger/schema.py), written with the batch it describes.
_INSERT_COUNTERS = (
    "INSERT INTO edge_counters (edge, seq, hour, requests_served, records_emitted,"
    " records_dropped) VALUES (?,?,?,?,?,?)"
)


@dataclass(slots=True)
class QueuedBatch:
    batch: IncomingBatch
    now: str
    incident_id: str
    answer: asyncio.Future[ApplyResult]


def _take_group(queue: list[QueuedBatch]) -> list[QueuedBatch]:
    """The oldest queued batches up to GROUP_MAX_RECORDS (always at least one)."""
    size, records = 0, 0
    for queued in queue:
        records += len(queued.batch.records)
        if size and records > GROUP_MAX_RECORDS:
            break
        size += 1
    group = queue[:size]
    del queue[:size]
    return group


class SqliteIngestMixin:
    if TYPE_CHECKING:  # provided by SqliteStore; declared for the type checker
        _db: aiosqlite.Connection
        _lock: asyncio.Lock
        _queue: list[QueuedBatch]
        _group_writer: asyncio.Task[None] | None

    async def apply_batch(self, batch: IncomingBatch, now: str, incident_id: str) -> ApplyResult:
        """Queue the batch for the next group commit and wait for its outcome (see the module
        docstring); returns only after the COMMIT that made it durable."""
        answer: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._queue.append(QueuedBatch(batch, now, incident_id, answer))
        if self._group_writer is None or self._group_writer.done():
            self._group_writer = asyncio.create_task(self._write_groups())
        return await answer

    async def _write_groups(self) -> None:
        while self._queue:
            async with self._lock:
                group = _take_group(self._queue)
                outcomes = await self._commit_group(group)
            for queued, outcome in zip(group, outcomes, strict=True):
                if queued.answer.done():  # its caller gave up waiting; the outcome stands
                    continue
                if isinstance(outcome, BaseException):
                    queued.answer.set_exception(outcome)
                else:
                    queued.answer.set_result(outcome)

    async def _commit_group(
        self, group: Sequence[QueuedBatch]
    ) -> list[ApplyResult | BaseException]:
        """Apply the group in one transaction; each entry is the batch's result or error."""
        db = self._db
        outcomes: list[ApplyResult | BaseException] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            for queued in group:
                await db.execute("SAVEPOINT batch")
                try:
                    outcomes.append(await self._apply_one(db, queued))
                except (ChainGapError, ChainForkError) as exc:
                    outcomes.append(exc)  # refused, but its incident is kept
                except Exception as exc:  # this batch fails alone; the others go on
                    await db.execute("ROLLBACK TO batch")
                    outcomes.append(exc)
                await db.execute("RELEASE batch")
            await db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):  # SQLite may have rolled back already
                await db.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise  # cancelled at shutdown: nothing of the group was committed
            return [exc] * len(group)
        return outcomes

    async def _apply_one(self, db: aiosqlite.Connection, queued: QueuedBatch) -> ApplyResult:
        """One batch inside the group's transaction: DUPLICATE, a chain refusal stored as an
        incident (raised), or the batch stored."""
        batch, header = queued.batch, queued.batch.header
        async with db.execute(
            "SELECT 1 FROM batches WHERE batch_id = ?", (batch.batch_id,)
        ) as cursor:
            if await cursor.fetchone() is not None:
                return ApplyResult(Outcome.DUPLICATE, 0, 0)
        async with db.execute(
            "SELECT head_seq, head_hash FROM edges WHERE edge = ?", (header.edge,)
        ) as cursor:
            row = await cursor.fetchone()
        head = None if row is None or row[0] is None else ChainHead(header.edge, *row)
        try:
            check_chain(head, header)
        except (ChainGapError, ChainForkError) as exc:
            await db.execute(
                "INSERT INTO incidents VALUES (?, ?, ?, ?, ?, ?, ?)",
                (queued.incident_id, header.edge, exc.reason, header.seq, str(exc),
                 header_canonical_bytes(header).decode(), queued.now),
            )  # fmt: skip
            raise
        return await self._insert_batch(db, batch, queued.now)

    async def _insert_batch(
        self, db: aiosqlite.Connection, batch: IncomingBatch, now: str
    ) -> ApplyResult:
        h = batch.header
        header_json = header_canonical_bytes(h).decode()
        signature = base64.b64encode(batch.signature).decode()
        # the one writer holds the transaction: MAX + 1 cannot race (the unique index reads it)
        async with db.execute("SELECT COALESCE(MAX(batch_ref), 0) + 1 FROM batches") as cursor:
            row = await cursor.fetchone()
        batch_ref = int(row[0]) if row is not None else 1
        await db.execute(
            "INSERT INTO batches (batch_id, edge, seq, header_json, signature, record_count,"
            " first_ts, last_ts, received_at, batch_ref) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (batch.batch_id, h.edge, h.seq, header_json, signature, h.count, h.first_ts,
             h.last_ts, now, batch_ref),
        )  # fmt: skip
        await db.execute(
            "INSERT INTO batch_records (batch_id, records_json) VALUES (?, ?)",
            (batch.batch_id, batch.records_json),
        )
        rows = record_id_rows(batch_ref, batch.records)
        stored = 0
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            values = tuple(chain.from_iterable(chunk))
            cursor = await db.execute(upsert_rows_sql(len(chunk)), values)
            stored += max(cursor.rowcount, 0)
        if batch.counters is not None:
            c = batch.counters
            await db.execute(_INSERT_COUNTERS, (h.edge, h.seq, counters_hour(h.last_ts),
                                                c.served, c.emitted, c.dropped))  # fmt: skip
        head_hash = hashlib.sha256(header_json.encode()).hexdigest()
        await db.execute(
            "UPDATE edges SET head_seq = ?, head_hash = ?, last_seen_at = ?,"
            " spool_lag = COALESCE(?, spool_lag), batches_accepted = batches_accepted + 1"
            " WHERE edge = ?",
            (h.seq, head_hash, now, batch.spool_lag, h.edge),
        )
        return ApplyResult(Outcome.ACCEPTED, stored, len(rows) - stored)
