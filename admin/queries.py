"""Read-only views of the coordinator's tables that ``billing.store.base.Store`` does not offer
yet: time series for the dashboard, the checkpoint history, a creator's manifests and a lineage's
versions. Each function names the Store method it should become; until then this module is the
one place the admin reads billing's tables (never writes them), on whichever database the
coordinator runs (``admin.db``: SQLite or PostgreSQL). Portable SQL: ``substr`` on the RFC 3339
text buckets by hour; sums are converted with ``int`` (PostgreSQL's SUM of BIGINT is NUMERIC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from admin.db import AdminDb
from billing.store.base import StoredCheckpoint, StoredManifest

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

    async def traffic_by_hour(self, since: str) -> list[HourTraffic]:
        """Store.traffic_by_hour: requests, hits and bytes per hour served (record ts)."""
        # Records have no ts index (migration 7): a "since" query first narrows to the batches
        # that may hold records at or after the moment (a record's ts is never past its batch's
        # last_ts: batches_by_last_ts), then reads their records through records_by_batch.
        rows = await self._all(
            "SELECT substr(ts, 1, 13), COUNT(*), SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END),"
            " SUM(bytes), SUM(origin_bytes) FROM records WHERE ts >= ?"
            " AND batch_id IN (SELECT batch_id FROM batches WHERE last_ts >= ?)"
            " GROUP BY substr(ts, 1, 13) ORDER BY 1",
            (since, since),
        )
        return [HourTraffic(str(r[0]), *(int(v or 0) for v in r[1:])) for r in rows]

    async def top_creators(self, since: str, limit: int) -> list[TopCreator]:
        """Store.top_creators: the creators with the most requests since ``since``."""
        # narrowed by batch as in traffic_by_hour
        rows = await self._all(
            "SELECT creator, COUNT(*), SUM(bytes) FROM records"
            " WHERE creator IS NOT NULL AND ts >= ?"
            " AND batch_id IN (SELECT batch_id FROM batches WHERE last_ts >= ?)"
            " GROUP BY creator ORDER BY COUNT(*) DESC, creator LIMIT ?",
            (since, since, limit),
        )
        return [TopCreator(str(c), int(n), int(b or 0)) for c, n, b in rows]

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
