"""The attribution step's reads as set-based SQL, shared by the SQLite and PostgreSQL ledgers.

The per-record work of a step (millions of rows) stays in the database: a GROUP BY sums the
winning records per ``UsageGroup``, so Python handles groups, not records. It runs over windows
of about ``WINDOW_RECORDS`` records (a few batches): SQLite groups by sorting, and small sorts
stay in the CPU cache (measured: ~35 % faster than one sort per 256-batch step). When a window
barely reduces (a long tail of content: fewer than ``POOR_REDUCTION`` records per group), the
next ones grow 4x up to ``MAX_WINDOW_RECORDS``, as Python's per-group work then dominates
(10k assets: 113k records/s CPU with 8k windows, 310k/s with whole steps). Groups of different
windows are not merged; the planner adds them up.

Each row's checks that need neither the registry nor the clock are folded into one integer
``flags`` (bits below), and the hit and "saved" cases are grouping flags too, so the sums are
plain: a hit group's bytes are its bytes from cache; a saved group's ``bytes - origin_bytes``
is its origin bytes saved (others save 0).

Exact sums of squares: ``SUM(bytes * bytes)`` first. SQLite turns an overflowing product into a
float and raises on an overflowing SUM; PostgreSQL raises on both. Either way the window is read
again with 20-bit limbs, ``b = h * 2^20 + l`` (arithmetic shift and mask, exact for any integer):
``sum(b^2) = (sum h*h << 40) + (sum h*l << 21) + sum l*l``, in Python integers. If even that is
not exact, the step gets None and the caller takes the record-by-record reference path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from billing.attribution import BILLABLE_CACHE_OUTCOMES, BILLABLE_METHODS
from billing.ledger.store import Claim, StepBatch, StepBatchInfo, StepSummary, UsageGroup
from provenance.records import Record

WINDOW_RECORDS = 8_000
MAX_WINDOW_RECORDS = 256_000
POOR_REDUCTION = 8  # fewer than 8 records per group: the next windows grow 4x
LIMB_BITS = 20
LIMB_MASK = (1 << LIMB_BITS) - 1
HAS_CREATOR, HAS_MANIFEST, UPSTREAM, BILLABLE, FROM_CACHE, SAVED = 1, 2, 4, 8, 16, 32

RECORD_COLUMNS = (
    "request_id, ts, edge, method, status, cache, tier, bytes, origin_bytes, content_id,"
    " creator, manifest, sample_rate, use_kind, upstream_of"
)
_STEP_BATCH_IDS = "SELECT batch_id FROM batches WHERE log_index >= ? AND log_index < ?"


def _sql_list(words: frozenset[str]) -> str:
    """Constant words as SQL string literals (plain tokens: no quote to escape)."""
    return ", ".join(f"'{w}'" for w in sorted(words))


# The same checks as billing.attribution (its BILLABLE_METHODS, BILLABLE_CACHE_OUTCOMES, 2xx or
# 304) and billing.aggregate (FROM_CACHE_TIERS; saved when bytes > origin_bytes);
# tests/component/billing/test_fast_step.py holds the two paths equal.
_FLAGS = f"""(CASE WHEN r.creator IS NULL THEN 0 ELSE {HAS_CREATOR} END
    + CASE WHEN r.manifest IS NULL THEN 0 ELSE {HAS_MANIFEST} END
    + CASE WHEN r.upstream_of IS NULL THEN 0 ELSE {UPSTREAM} END
    + CASE WHEN r.method IN ({_sql_list(BILLABLE_METHODS)})
        AND r.cache IN ({_sql_list(BILLABLE_CACHE_OUTCOMES)})
        AND ((r.status >= 200 AND r.status <= 299) OR r.status = 304) THEN {BILLABLE} ELSE 0 END
    + CASE WHEN r.tier IN ('memory', 'disk') THEN {FROM_CACHE} ELSE 0 END
    + CASE WHEN r.bytes > r.origin_bytes THEN {SAVED} ELSE 0 END)"""
_DIFF = "(r.bytes - r.origin_bytes)"


def _plain_square(value: str) -> str:
    return f"SUM({value} * {value})"


def _limb_squares(value: str) -> str:
    high, low = f"({value} >> {LIMB_BITS})", f"({value} & {LIMB_MASK})"
    return f"SUM({high} * {high}), SUM({high} * {low}), SUM({low} * {low})"


def _groups_sql(square: Any) -> str:
    return f"""SELECT substr(r.ts, 1, 13), r.content_id, {_FLAGS}, r.edge, r.use_kind,
    r.sample_rate, MIN(r.ts), MAX(r.ts), COUNT(*), SUM(r.bytes), {square("r.bytes")},
    SUM({_DIFF}), {square(_DIFF)}
    FROM records r WHERE r.batch_id IN ({_STEP_BATCH_IDS})
    GROUP BY 1, 2, 3, 4, 5, 6"""  # noqa: S608 (constants only)


PLAIN_GROUPS_SQL = _groups_sql(_plain_square)
LIMB_GROUPS_SQL = _groups_sql(_limb_squares)

BATCHES_SQL = """SELECT b.batch_id, b.edge, b.seq, b.last_ts, b.record_count,
    (SELECT COUNT(*) FROM records r WHERE r.batch_id = b.batch_id), b.log_index
    FROM batches b WHERE b.log_index >= ? AND b.log_index < ? ORDER BY b.log_index"""

CLAIMS_SQL = (
    "SELECT i.content_id, m.manifest_id, m.creator, m.published_at, m.superseded_at,"
    " m.effective_at FROM manifest_items i JOIN manifests m ON m.manifest_id = i.manifest_id"
    " WHERE i.content_id IN "
)
CLAIMS_CHUNK = 500

WINNERS_SQL = (
    f"SELECT batch_id, {RECORD_COLUMNS} FROM records WHERE batch_id IN ({_STEP_BATCH_IDS})"  # noqa: S608
    " AND substr(ts, 1, 13) = ? AND COALESCE(content_id, '') = ?"
)


def record_from_row(r: Sequence[Any]) -> Record:
    """A ``Record`` from the ``RECORD_COLUMNS`` of a records row."""
    return Record(
        request_id=r[0], ts=r[1], edge=r[2], method=r[3], status=int(r[4]), cache=r[5],
        tier=r[6], bytes=int(r[7]), origin_bytes=int(r[8]), content_id=r[9], creator=r[10],
        manifest=r[11], sample_rate=r[12], use=r[13], upstream_of=r[14],
    )  # fmt: skip


def _exact(values: Sequence[Any]) -> list[int] | None:
    """The values as integers (PostgreSQL's SUM gives Decimals), or None if the database
    rounded one to a float."""
    out: list[int] = []
    for v in values:
        if type(v) is float:
            return None
        out.append(v if type(v) is int else int(v))
    return out


def _limbs_square(hh: int, hl: int, ll: int) -> int:
    return (hh << (2 * LIMB_BITS)) + (hl << (LIMB_BITS + 1)) + ll


def group_from_row(r: Sequence[Any], limbs: bool) -> UsageGroup | None:
    """A ``UsageGroup`` from a groups row (``LIMB_GROUPS_SQL`` if ``limbs``); None if a sum
    was not exact."""
    values = _exact(r[8:])
    if values is None:
        return None
    if limbs:
        n, total, b_hh, b_hl, b_ll, diff, d_hh, d_hl, d_ll = values
        square, diff_square = _limbs_square(b_hh, b_hl, b_ll), _limbs_square(d_hh, d_hl, d_ll)
    else:
        n, total, square, diff, diff_square = values
    flags = int(r[2])
    hit, saved = bool(flags & FROM_CACHE), bool(flags & SAVED)
    sums = (n, n if hit else 0, total, square, total if hit else 0, square if hit else 0,
            diff if saved else 0, diff_square if saved else 0)  # fmt: skip
    return UsageGroup(
        r[0], r[1], bool(flags & HAS_CREATOR), bool(flags & HAS_MANIFEST),
        bool(flags & UPSTREAM), bool(flags & BILLABLE), r[3], r[4], r[5], r[6], r[7], sums,
    )  # fmt: skip


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


# A batch's row with its records JSON (its own table since migration 7).
_BATCH_WITH_RECORDS = (
    "SELECT b.batch_id, b.log_index, b.edge, b.seq, b.last_ts, j.records_json"
    " FROM batches b JOIN batch_records j ON j.batch_id = b.batch_id"
)


def copies_of(batch_id: str, log_index: int, edge: str, seq: int, last_ts: str,
              records_json: str) -> StepBatch:  # fmt: skip
    """Every record copy of a batch, from its stored records JSON."""
    copies = tuple(
        (str(c["ts"]), str(c["request_id"]), c.get("upstream_of") is not None)
        for c in json.loads(records_json)
    )
    return StepBatch(batch_id, log_index, edge, seq, last_ts, copies)


class StepReads:
    """``LedgerStore``'s step reads over the subclass's ``_all(sql, params)`` (``?`` style)."""

    window_records = WINDOW_RECORDS

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def _overflowed(self, exc: Exception) -> bool:
        """True if ``exc`` is the database refusing an integer overflow."""
        raise NotImplementedError

    async def read_step_batches(self, first_index: int, limit: int) -> list[StepBatchInfo]:
        rows = await self._all(BATCHES_SQL, (first_index, first_index + limit))
        return [StepBatchInfo(r[0], r[1], int(r[2]), r[3], int(r[4]), int(r[5]), int(r[6]))
                for r in rows]  # fmt: skip

    async def read_step_summary(self, first_index: int, limit: int) -> StepSummary | None:
        batches = await self.read_step_batches(first_index, limit)
        pending = [(b.log_index, b.winners) for b in batches]
        groups: list[UsageGroup] = []
        position, size = 0, self.window_records
        while position < len(pending):
            window, records, position = next_window(pending, position, size)
            found = await self._window_groups(window)
            if found is None:
                return None
            groups += found
            if len(found) * POOR_REDUCTION > records:  # a long tail: sort more at once
                size = min(size * 4, MAX_WINDOW_RECORDS)
        return StepSummary(batches, groups)

    async def _window_groups(self, window: range) -> list[UsageGroup] | None:
        for sql, limbs in ((PLAIN_GROUPS_SQL, False), (LIMB_GROUPS_SQL, True)):
            try:
                rows = await self._all(sql, (window.start, window.stop))
            except Exception as exc:
                if self._overflowed(exc):
                    continue
                raise
            groups = [group_from_row(r, limbs) for r in rows]
            exact = [g for g in groups if g is not None]
            if len(exact) == len(groups):
                return exact
        return None

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

    async def read_step_winners(
        self, first_index: int, limit: int, hour: str, content_id: str | None
    ) -> list[tuple[str, Record]]:
        params = (first_index, first_index + limit, hour, content_id or "")
        return [(r[0], record_from_row(r[1:])) for r in await self._all(WINNERS_SQL, params)]

    async def read_step_copies(self, first_index: int, limit: int) -> list[StepBatch]:
        """The batches at log indexes ``first_index`` to ``first_index + limit``, in log order,
        with every record copy (``copies_of``)."""
        where = " WHERE b.log_index >= ? AND b.log_index < ? ORDER BY b.log_index"
        rows = await self._all(_BATCH_WITH_RECORDS + where, (first_index, first_index + limit))
        return [copies_of(r[0], int(r[1]), r[2], int(r[3]), r[4], r[5]) for r in rows]

    async def read_batch_copies(self, batch_id: str) -> tuple[StepBatch, list[tuple[str, str]]]:
        rows = await self._all(_BATCH_WITH_RECORDS + " WHERE b.batch_id = ?", (batch_id,))
        r = rows[0]
        batch = copies_of(r[0], int(r[1]), r[2], int(r[3]), r[4], r[5])
        sql = "SELECT request_id, ts FROM records WHERE batch_id = ?"
        return batch, [(str(w[0]), str(w[1])) for w in await self._all(sql, (batch_id,))]
