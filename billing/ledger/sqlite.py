"""SqliteLedgerStore: ``LedgerStore`` on the coordinator's SqliteStore (its writer transaction
and its reader connection), so ledger writes serialise with ingest's under one lock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

from billing.errors import ConflictError
from billing.ledger.periods import UsageRow
from billing.ledger.step_reads import StepReads
from billing.ledger.store import (
    PeriodRow,
    PeriodUsage,
    PricingVersion,
    ReportedCounters,
    StepWrite,
    StoredStatement,
)
from billing.store.sqlite import SqliteStore

_CURSOR = "attribution_cursor"
_SELECT_STATEMENTS = (
    "SELECT period_id, creator, sha256, leaf_index, statement_json, log_index FROM statements"
)
_USAGE_INSERT = (
    " (start, creator, content_id, manifest_id, edge, use_kind, sample_rate, step, records,"
    " hits, bytes, bytes_sq, cache_bytes, cache_bytes_sq, saved, saved_sq)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_USAGE_SELECT = (
    "SELECT start, creator, content_id, manifest_id, edge, use_kind, sample_rate, records, hits,"
    " bytes, bytes_sq, cache_bytes, cache_bytes_sq, saved, saved_sq FROM usage_hourly"
)


def _usage_params(step: int, row: UsageRow) -> tuple[Any, ...]:
    s = row.sums
    return (row.start, row.creator, row.content_id, row.manifest_id, row.edge, row.use,
            row.sample_rate, step, s[0], s[1], s[2], str(s[3]), s[4], str(s[5]), s[6],
            str(s[7]))  # fmt: skip


def _usage_row(r: Sequence[Any]) -> UsageRow:
    sums = (int(r[7]), int(r[8]), int(r[9]), int(r[10]), int(r[11]), int(r[12]), int(r[13]),
            int(r[14]))  # fmt: skip
    return UsageRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], sums)


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class SqliteLedgerStore(StepReads):
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._store._one(sql, params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self._store._all(sql, params)

    # -- attribution -------------------------------------------------------------------------
    async def attribution_cursor(self) -> int:
        row = await self._one("SELECT value FROM ledger_state WHERE name = ?", (_CURSOR,))
        return 0 if row is None else int(row[0])

    async def write_step(self, step: StepWrite) -> None:
        async with self._store._transaction() as db:
            async with db.execute(
                "SELECT value FROM ledger_state WHERE name = ?", (_CURSOR,)
            ) as cursor:
                row = await cursor.fetchone()
            if (0 if row is None else int(row[0])) != step.first_index:
                raise RuntimeError("attribution cursor moved (two runners?)")
            n = step.first_index
            await db.executemany("INSERT INTO usage_hourly" + _USAGE_INSERT,
                                 [_usage_params(n, r) for r in step.hourly])  # fmt: skip
            await db.executemany("INSERT INTO usage_daily" + _USAGE_INSERT,
                                 [_usage_params(n, r) for r in step.daily])  # fmt: skip
            await db.executemany(
                "INSERT INTO outcome_counts (step, hour, edge, outcome, records)"
                " VALUES (?,?,?,?,?)",
                [(n, *c) for c in step.counts],
            )
            await db.executemany(
                "INSERT INTO ledger_batches (batch_id, edge, seq, hour, records)"
                " VALUES (?,?,?,?,?) ON CONFLICT (batch_id) DO NOTHING",
                step.batches,
            )
            await db.execute(
                "INSERT INTO ledger_state (name, value) VALUES (?, ?) ON CONFLICT (name)"
                " DO UPDATE SET value = excluded.value",
                (_CURSOR, step.next_index),
            )

    # -- periods -------------------------------------------------------------------------------
    async def unbilled_rows(self, before: str) -> list[UsageRow]:
        sql = _USAGE_SELECT + " WHERE billed_in IS NULL AND start < ?"
        return [_usage_row(r) for r in await self._all(sql, (before,))]

    async def unbilled_hours(self) -> list[str]:
        sql = "SELECT DISTINCT start FROM usage_hourly WHERE billed_in IS NULL ORDER BY start"
        return [str(r[0]) for r in await self._all(sql)]

    async def close_period(
        self,
        period: PeriodRow,
        statements: Sequence[tuple[str, str, str]],
        before: str,
    ) -> None:
        async with self._store._transaction() as db:
            first = await self._check_close(db, period.period_id)
            p = period
            await db.execute(
                "INSERT INTO periods VALUES (?,?,?,?,?,?,?,?,?,?)",
                (p.period_id, p.kind, p.start, p.end_at, p.closed_at, p.statements,
                 p.payout_micros, p.currency, p.pricing_version, p.duration_ms),
            )  # fmt: skip
            await db.executemany(
                "INSERT INTO statements (period_id, creator, sha256, leaf_index, statement_json)"
                " VALUES (?,?,?,?,?)",
                [(p.period_id, c, h, first + i, j) for i, (c, h, j) in enumerate(statements)],
            )
            await db.execute(
                "UPDATE usage_hourly SET billed_in = ? WHERE billed_in IS NULL AND start < ?",
                (p.period_id, before),
            )

    @staticmethod
    async def _check_close(db: aiosqlite.Connection, period_id: str) -> int:
        """In the writer's transaction: refuse a closed period; the next statement's close
        order."""
        async with db.execute("SELECT 1 FROM periods WHERE period_id = ?", (period_id,)) as cur:
            if await cur.fetchone() is not None:
                raise ConflictError("period already closed")
        async with db.execute("SELECT COUNT(*) FROM statements") as cur:
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def list_periods(self) -> list[PeriodRow]:
        rows = await self._all("SELECT * FROM periods ORDER BY start DESC, kind")
        return [PeriodRow(*r) for r in rows]

    async def find_period(self, period_id: str) -> PeriodRow | None:
        row = await self._one("SELECT * FROM periods WHERE period_id = ?", (period_id,))
        return None if row is None else PeriodRow(*row)

    async def period_statements(self, period_id: str) -> list[StoredStatement]:
        sql = _SELECT_STATEMENTS + " WHERE period_id = ? ORDER BY creator"
        return [StoredStatement(*r) for r in await self._all(sql, (period_id,))]

    async def creator_statements(self, creator: str) -> list[StoredStatement]:
        sql = _SELECT_STATEMENTS + " WHERE creator = ? ORDER BY leaf_index"
        return [StoredStatement(*r) for r in await self._all(sql, (creator,))]

    async def find_statement(self, period_id: str, creator: str) -> StoredStatement | None:
        sql = _SELECT_STATEMENTS + " WHERE period_id = ? AND creator = ?"
        row = await self._one(sql, (period_id, creator))
        return None if row is None else StoredStatement(*row)

    # -- pricing -------------------------------------------------------------------------------
    async def latest_pricing(self) -> PricingVersion | None:
        row = await self._one("SELECT * FROM pricing_versions ORDER BY version DESC LIMIT 1")
        return None if row is None else PricingVersion(int(row[0]), *row[1:])

    async def add_pricing(self, version: PricingVersion) -> None:
        async with self._store._transaction() as db:
            async with db.execute("SELECT MAX(version) FROM pricing_versions") as cursor:
                row = await cursor.fetchone()
            if (0 if row is None or row[0] is None else int(row[0])) + 1 != version.version:
                raise ConflictError("pricing changed meanwhile; reload and retry")
            v = version
            await db.execute("INSERT INTO pricing_versions VALUES (?,?,?,?)",
                             (v.version, v.at, v.actor, v.pricing_json))  # fmt: skip

    async def pricing_history(self) -> list[PricingVersion]:
        rows = await self._all("SELECT * FROM pricing_versions ORDER BY version DESC")
        return [PricingVersion(int(r[0]), *r[1:]) for r in rows]

    # -- reconciliation ------------------------------------------------------------------------
    async def outcome_counts(self, start: str, end: str) -> dict[tuple[str, str], int]:
        rows = await self._all(
            "SELECT edge, outcome, SUM(records) FROM outcome_counts WHERE hour >= ? AND hour < ?"
            " GROUP BY edge, outcome",
            (start, end),
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def period_usage(self, period_id: str, start: str, end: str) -> list[PeriodUsage]:
        rows = await self._all(
            "SELECT edge,"
            " SUM(CASE WHEN start >= ? AND billed_in = ? THEN records ELSE 0 END),"
            " SUM(CASE WHEN start >= ? AND (billed_in IS NULL OR billed_in <> ?)"
            "   THEN records ELSE 0 END),"
            " SUM(CASE WHEN start < ? AND billed_in = ? THEN records ELSE 0 END)"
            " FROM usage_hourly WHERE (start >= ? AND start < ?) OR billed_in = ?"
            " GROUP BY edge ORDER BY edge",
            (start, period_id, start, period_id, start, period_id, start, end, period_id),
        )
        return [PeriodUsage(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]

    async def edge_counters(self, start: str, end: str) -> dict[str, ReportedCounters]:
        rows = await self._all(
            "SELECT b.edge, SUM(COALESCE(c.requests_served, b.records)),"
            " SUM(COALESCE(c.records_emitted, b.records)), SUM(COALESCE(c.records_dropped, 0)),"
            " SUM(CASE WHEN c.edge IS NULL THEN 1 ELSE 0 END)"
            " FROM ledger_batches b LEFT JOIN edge_counters c ON c.edge = b.edge AND c.seq = b.seq"
            " WHERE b.hour >= ? AND b.hour < ? GROUP BY b.edge",
            (start, end),
        )
        return {r[0]: ReportedCounters(int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}

    async def refused_records(self, start: str, end: str) -> dict[str, int]:
        rows = await self._all(
            "SELECT i.edge, i.header_json FROM incidents i WHERE NOT EXISTS"
            " (SELECT 1 FROM batches b WHERE b.edge = i.edge AND b.seq = i.seq)"
        )
        refused: dict[str, dict[int, int]] = {}
        for edge, header_json in rows:
            header = json.loads(header_json)
            if start <= str(header["first_ts"]) < end:
                refused.setdefault(edge, {})[int(header["seq"])] = int(header["count"])
        return {edge: sum(by_seq.values()) for edge, by_seq in refused.items()}
