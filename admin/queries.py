"""Read-only views of the coordinator's tables that ``billing.store.base.Store`` does not offer
yet: time series for the dashboard, the checkpoint history, a creator's manifests and a lineage's
versions. Each function names the Store method it should become; until then this module is the
one place the admin reads billing's tables (never writes them), on whichever database the
coordinator runs (``admin.db``: SQLite or PostgreSQL). Portable SQL: ``substr`` on the RFC 3339
text buckets by hour; sums are converted with ``int`` (PostgreSQL's SUM of BIGINT is NUMERIC).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from admin.db import AdminDb
from billing.aggregate import add_sums
from billing.ledger.step_reads import winning_indexes
from billing.store.base import StoredCheckpoint, StoredManifest
from provenance.batches import stored_record_fields
from provenance.records import RecordFields

_MANIFEST_COLUMNS = (
    "manifest_id, creator, key_id, lineage, version, supersedes, signed_json, published_at,"
    " superseded_at, revoked_at, effective_at, revoke_reason"
)


@dataclass(frozen=True, slots=True)
class HourTraffic:
    hour: str  # "YYYY-MM-DDTHH"
    requests: int
    hits: int
    bytes_served: int
    origin_bytes: int


@dataclass(frozen=True, slots=True)
class HourBatches:
    hour: str
    batches: int
    records: int


@dataclass(frozen=True, slots=True)
class TopCreator:
    creator: str
    requests: int
    bytes_served: int


# Batches read per step of a "since" view (~440 KB of records JSON each at 1,000 records).
_BATCHES_PER_READ = 32
# Whole batches' sums kept for the dashboard (~1 KB each; 20,000 batches of 1,000 records are
# 20M records, more than a small host serves in the dashboard's 48 hours).
_WHOLE_BATCHES_KEPT = 20_000
_RECENT_BATCHES = (
    "SELECT b.batch_ref, b.first_ts, b.record_count,"
    " (SELECT COUNT(*) FROM record_ids d WHERE d.batch_ref = b.batch_ref)"
    " FROM batches b WHERE b.last_ts >= ? ORDER BY b.batch_ref"
)
_RECORDS_JSON = (
    "SELECT b.batch_ref, j.records_json FROM batches b JOIN batch_records j"
    " ON j.batch_id = b.batch_id"
)


@dataclass(frozen=True, slots=True)
class Traffic:
    """Records summed per hour (requests, hits, bytes served, origin bytes) and per creator
    (requests, bytes served)."""

    hours: dict[str, list[int]]
    creators: dict[str, list[int]]

    @classmethod
    def of(cls, records: Sequence[RecordFields], indexes: Iterable[int], since: str) -> Traffic:
        """The sums of ``records[i]`` for the given indexes, those at or after ``since``."""
        hours: dict[str, list[int]] = {}
        creators: dict[str, list[int]] = {}
        for index in indexes:
            (_, _, ts, _, _, _, cache, _, size, origin, _, by, _, _, _) = records[index]
            if ts < since:
                continue
            hour = hours.get(ts[:13])
            if hour is None:
                hour = hours[ts[:13]] = [0, 0, 0, 0]
            hour[0] += 1
            hour[1] += cache == "hit"
            hour[2] += size
            hour[3] += origin
            if by is not None:
                creator = creators.get(by)
                if creator is None:
                    creator = creators[by] = [0, 0]
                creator[0] += 1
                creator[1] += size
        return cls(hours, creators)

    def add(self, other: Traffic) -> None:
        for target, source in ((self.hours, other.hours), (self.creators, other.creators)):
            for key, sums in source.items():
                add_sums(target, key, sums)

    def by_hour(self) -> list[HourTraffic]:
        return [HourTraffic(hour, *self.hours[hour]) for hour in sorted(self.hours)]

    def top_creators(self, limit: int) -> list[TopCreator]:
        ranked = sorted(self.creators.items(), key=lambda item: (-item[1][0], item[0]))
        return [TopCreator(creator, n, size) for creator, (n, size) in ranked[:limit]]


class CoordinatorQueries:
    def __init__(self, db: AdminDb) -> None:
        self.db = db
        self._whole_batches: OrderedDict[tuple[int, int], Traffic] = OrderedDict()

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self.db.fetch(sql, params)

    async def batches_by_hour(self, since: str) -> list[HourBatches]:
        """Store.batches_by_hour: accepted batches and their records per hour received."""
        rows = await self._all(
            "SELECT substr(received_at, 1, 13), COUNT(*), SUM(record_count) FROM batches"
            " WHERE received_at >= ? GROUP BY substr(received_at, 1, 13) ORDER BY 1",
            (since,),
        )
        return [HourBatches(str(h), int(b), int(r or 0)) for h, b, r in rows]

    async def traffic_since(self, since: str) -> Traffic:
        """The deduplicated records served at or after ``since``, summed per hour and per
        creator in one pass.

        Records are kept once, in their batch's records JSON (migration 8): the batches whose
        last record is that recent (batches_by_last_ts; a record's ts is never past its batch's
        last_ts) are read a few at a time, each record counted where record_ids says its
        winning copy is. A batch wholly after ``since`` is summed once and kept
        (``_whole_batches``, keyed by its winners count: a sequenced batch only ever loses
        winners, to a newer batch's serving copy, so the count names the set), so a dashboard
        reloaded every few seconds reads only new batches. Reads are separate statements: a
        winner moving to a newer batch meanwhile may be counted in both or in neither, which a
        dashboard can bear."""
        traffic = Traffic({}, {})
        todo: list[tuple[int, bool, int, bool]] = []  # batch_ref, whole, winners, all won
        for ref, first_ts, count, winners in await self._all(_RECENT_BATCHES, (since,)):
            whole = str(first_ts) >= since
            summed = self._whole_batches.get((int(ref), int(winners))) if whole else None
            if summed is None:
                todo.append((int(ref), whole, int(winners), int(winners) == int(count)))
            else:
                traffic.add(summed)
        for start in range(0, len(todo), _BATCHES_PER_READ):
            chunk = todo[start : start + _BATCHES_PER_READ]
            refs = [ref for ref, _, _, _ in chunk]
            marks = ",".join("?" * len(refs))
            # a batch whose every copy won needs no dedup rows
            partial = [ref for ref, _, _, all_won in chunk if not all_won]
            owned = await winning_indexes(self._all, partial)
            json_sql = f"{_RECORDS_JSON} WHERE b.batch_ref IN ({marks})"  # placeholders only
            records = {int(ref): text for ref, text in await self._all(json_sql, refs)}
            for ref, whole, winners, all_won in chunk:
                fields = stored_record_fields(records[ref])
                indexes = range(len(fields)) if all_won else owned.get(ref, [])
                summed = Traffic.of(fields, indexes, since)
                if whole and len(indexes) == winners:
                    self._keep(ref, winners, summed)
                traffic.add(summed)
        return traffic

    def _keep(self, ref: int, winners: int, summed: Traffic) -> None:
        self._whole_batches[(ref, winners)] = summed
        if len(self._whole_batches) > _WHOLE_BATCHES_KEPT:
            self._whole_batches.popitem(last=False)  # the oldest batch read

    async def traffic_by_hour(self, since: str) -> list[HourTraffic]:
        """Store.traffic_by_hour: requests, hits and bytes per hour served (record ts)."""
        return (await self.traffic_since(since)).by_hour()

    async def top_creators(self, since: str, limit: int) -> list[TopCreator]:
        """Store.top_creators: the creators with the most requests since ``since``."""
        return (await self.traffic_since(since)).top_creators(limit)

    async def checkpoints(self, offset: int, limit: int) -> list[StoredCheckpoint]:
        """Store.list_checkpoints: newest first."""
        rows = await self._all(
            "SELECT tree_size, root_hash, note, created_at FROM checkpoints"
            " ORDER BY tree_size DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [StoredCheckpoint(int(s), str(h), str(n), str(c)) for s, h, n, c in rows]

    async def count_checkpoints(self) -> int:
        return int((await self._all("SELECT COUNT(*) FROM checkpoints"))[0][0])

    async def manifests_of(self, creator: str) -> list[StoredManifest]:
        """Store.manifests_of: every version of a creator, by lineage then version."""
        rows = await self._all(
            f"SELECT {_MANIFEST_COLUMNS} FROM manifests WHERE creator = ?"  # noqa: S608 - constant columns
            " ORDER BY lineage, version",
            (creator,),
        )
        return [StoredManifest(*row) for row in rows]

    async def lineage_versions(self, lineage: str) -> list[StoredManifest]:
        """Store.lineage_versions: the versions of one lineage, oldest first."""
        rows = await self._all(
            f"SELECT {_MANIFEST_COLUMNS} FROM manifests WHERE lineage = ? ORDER BY version",  # noqa: S608 - constant columns
            (lineage,),
        )
        return [StoredManifest(*row) for row in rows]
