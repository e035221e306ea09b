"""Read-only views of the coordinator's tables that ``billing.store.base.Store`` does not offer
yet: time series for the dashboard, the checkpoint history, a creator's manifests and a lineage's
versions. Each function names the Store method it should become; until then this module is the
one place the admin reads billing's tables (never writes them), on whichever database the
coordinator runs (``admin.db``: SQLite or PostgreSQL). Portable SQL: ``substr`` on the RFC 3339
text buckets by hour; sums are converted with ``int`` (PostgreSQL's SUM of BIGINT is NUMERIC).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from admin.db import AdminDb
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
_RECORDS_JSON = (
    "SELECT b.batch_ref, j.records_json FROM batches b JOIN batch_records j"
    " ON j.batch_id = b.batch_id"
)


class CoordinatorQueries:
    def __init__(self, db: AdminDb) -> None:
        self.db = db

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

    async def _records_since(self, since: str) -> AsyncIterator[RecordFields]:
        """The deduplicated records served at or after ``since``, a few batches at a time.

        Records are kept once, in their batch's records JSON (migration 8): the batches whose
        last record is that recent (batches_by_last_ts; a record's ts is never past its batch's
        last_ts) are read in chunks, each record counted where record_ids says its winning
        copy is. Chunks are separate reads: a record whose winning copy moves to a newer batch
        meanwhile (the serving edge's copy replacing an upstream_of one) may be counted in
        both or in neither, which a dashboard can bear."""
        refs = [int(r[0]) for r in await self._all(
            "SELECT batch_ref FROM batches WHERE last_ts >= ? ORDER BY batch_ref", (since,)
        )]  # fmt: skip
        for start in range(0, len(refs), _BATCHES_PER_READ):
            chunk = refs[start : start + _BATCHES_PER_READ]
            marks = ",".join("?" * len(chunk))
            owned: dict[int, list[int]] = {}
            # placeholders only in the built SQL
            ids_sql = f"SELECT batch_ref, record_index FROM record_ids WHERE batch_ref IN ({marks})"  # noqa: S608
            for ref, index in await self._all(ids_sql, chunk):
                owned.setdefault(int(ref), []).append(int(index))
            json_sql = f"{_RECORDS_JSON} WHERE b.batch_ref IN ({marks})"
            for ref, records_json in await self._all(json_sql, chunk):
                fields = stored_record_fields(records_json)
                for index in owned.get(int(ref), ()):
                    if fields[index].ts >= since:
                        yield fields[index]

    async def traffic_by_hour(self, since: str) -> list[HourTraffic]:
        """Store.traffic_by_hour: requests, hits and bytes per hour served (record ts)."""
        hours: dict[str, list[int]] = {}
        async for r in self._records_since(since):
            sums = hours.setdefault(r.ts[:13], [0, 0, 0, 0])
            sums[0] += 1
            sums[1] += r.cache == "hit"
            sums[2] += r.bytes
            sums[3] += r.origin_bytes
        return [HourTraffic(hour, *hours[hour]) for hour in sorted(hours)]

    async def top_creators(self, since: str, limit: int) -> list[TopCreator]:
        """Store.top_creators: the creators with the most requests since ``since``."""
        creators: dict[str, list[int]] = {}
        async for r in self._records_since(since):
            if r.creator is not None:
                sums = creators.setdefault(r.creator, [0, 0])
                sums[0] += 1
                sums[1] += r.bytes
        ranked = sorted(creators.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return [TopCreator(creator, n, size) for creator, (n, size) in ranked]

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
