"""The manifest registry's part of ``PostgresStore`` (creators, manifests, the change feed).

Every write appends its change-feed events in the same transaction, numbering them
``MAX(seq) + 1`` under a transaction-scoped advisory lock (several coordinator processes may
write the registry at once; the lock makes the numbering gap-free and unique).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from billing.errors import ConflictError, NotFoundError
from billing.registry.errors import VersionExistsError
from billing.store.base import CreatorKey, NewEvent, RegistryEvent, StoredManifest
from provenance.manifests import ManifestItem

_REGISTRY_LOCK = 0x636163686574_0003  # as billing.store.postgres.REGISTRY_LOCK
_MANIFEST_COLUMNS = (
    "m.manifest_id, m.creator, m.key_id, m.lineage, m.version, m.supersedes, m.signed_json,"
    " m.published_at, m.superseded_at, m.revoked_at, m.effective_at, m.revoke_reason"
)


def _manifest_from_row(row: Sequence[Any]) -> StoredManifest:
    return StoredManifest(
        manifest_id=row[0], creator=row[1], key_id=row[2], lineage=row[3], version=int(row[4]),
        supersedes=row[5], signed_json=row[6], published_at=row[7], superseded_at=row[8],
        revoked_at=row[9], effective_at=row[10], revoke_reason=row[11],
    )  # fmt: skip


class PostgresRegistryMixin:
    if TYPE_CHECKING:  # provided by PostgresStore; declared for the type checker

        def _transaction(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
            raise NotImplementedError

        async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
        async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @staticmethod
    async def _append_events(db: asyncpg.Connection, events: Sequence[NewEvent]) -> None:
        if not events:
            return
        await db.execute("SELECT pg_advisory_xact_lock($1)", _REGISTRY_LOCK)
        seq = int(await db.fetchval("SELECT COALESCE(MAX(seq), 0) FROM registry_events"))
        await db.executemany(
            "INSERT INTO registry_events (seq, kind, at, payload_json) VALUES ($1, $2, $3, $4)",
            [(seq + i, e.kind, e.at, e.payload_json) for i, e in enumerate(events, start=1)],
        )

    @staticmethod
    async def _insert_creator_key(db: asyncpg.Connection, key: CreatorKey) -> bool:
        row = await db.fetchrow(
            "INSERT INTO creator_keys (account, key_id, verifier, added_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (account, key_id) DO NOTHING RETURNING 1",
            key.account, key.key_id, key.verifier, key.added_at,
        )  # fmt: skip
        return row is not None

    @staticmethod
    async def _has_creator(db: asyncpg.Connection, account: str) -> bool:
        sql = "SELECT 1 FROM creators WHERE account = $1"
        return await db.fetchval(sql, account) is not None

    async def add_creator(
        self, account: str, keys: Sequence[CreatorKey], now: str, events: Sequence[NewEvent]
    ) -> None:
        async with self._transaction() as db:
            inserted = await db.fetchrow(
                "INSERT INTO creators VALUES ($1, $2) ON CONFLICT (account) DO NOTHING"
                " RETURNING 1",
                account, now,
            )  # fmt: skip
            if inserted is None:
                raise ConflictError(f"creator {account} already exists")
            for key in keys:
                await self._insert_creator_key(db, key)
            await self._append_events(db, events)

    async def add_creator_key(self, key: CreatorKey, events: Sequence[NewEvent]) -> bool:
        async with self._transaction() as db:
            if not await self._has_creator(db, key.account):
                raise NotFoundError("no such creator")
            added = await self._insert_creator_key(db, key)
            if added:
                await self._append_events(db, events)
            return added

    async def revoke_creator_key(
        self, account: str, key_id: str, now: str, events: Sequence[NewEvent]
    ) -> bool:
        async with self._transaction() as db:
            row = await db.fetchrow(
                "SELECT revoked_at FROM creator_keys WHERE account = $1 AND key_id = $2"
                " FOR UPDATE",
                account, key_id,
            )  # fmt: skip
            if row is None:
                raise NotFoundError("no such creator key")
            if row[0] is not None:
                return False
            await db.execute(
                "UPDATE creator_keys SET revoked_at = $1 WHERE account = $2 AND key_id = $3",
                now, account, key_id,
            )  # fmt: skip
            await self._append_events(db, events)
            return True

    async def creator_keys(self, account: str) -> list[CreatorKey]:
        rows = await self._all(
            "SELECT account, key_id, verifier, added_at, revoked_at FROM creator_keys"
            " WHERE account = ? ORDER BY added_at, key_id",
            (account,),
        )
        return [CreatorKey(*row) for row in rows]

    async def list_creators(self) -> list[tuple[str, str]]:
        rows = await self._all("SELECT account, created_at FROM creators ORDER BY account")
        return [(str(row[0]), str(row[1])) for row in rows]

    async def add_creator_token(self, token_hash: str, account: str, now: str) -> None:
        async with self._transaction() as db:
            if not await self._has_creator(db, account):
                raise NotFoundError("no such creator")
            await db.execute(
                "INSERT INTO creator_tokens VALUES ($1, $2, $3)", token_hash, account, now
            )

    async def creator_of_token(self, token_hash: str) -> str | None:
        sql = "SELECT account FROM creator_tokens WHERE token_hash = ?"
        row = await self._one(sql, (token_hash,))
        return None if row is None else str(row[0])

    async def find_manifest(self, manifest_id: str) -> StoredManifest | None:
        sql = f"SELECT {_MANIFEST_COLUMNS} FROM manifests m WHERE m.manifest_id = ?"  # noqa: S608
        row = await self._one(sql, (manifest_id,))
        return None if row is None else _manifest_from_row(row)

    async def insert_manifest(
        self, manifest: StoredManifest, items: Sequence[ManifestItem], events: Sequence[NewEvent]
    ) -> None:
        m = manifest
        async with self._transaction() as db:
            try:
                await db.execute(
                    "INSERT INTO manifests (manifest_id, creator, key_id, lineage, version,"
                    " supersedes, signed_json, published_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                    m.manifest_id, m.creator, m.key_id, m.lineage, m.version, m.supersedes,
                    m.signed_json, m.published_at,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise VersionExistsError("manifest id, version or successor slot taken") from None
            if m.supersedes is not None:
                await db.execute(
                    "UPDATE manifests SET superseded_at = $1 WHERE manifest_id = $2",
                    m.published_at, m.supersedes,
                )  # fmt: skip
            await db.executemany(
                "INSERT INTO manifest_items VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (m.manifest_id, i, it.content_id, it.path, it.size_bytes, it.media_type)
                    for i, it in enumerate(items)
                ],
            )
            await self._append_events(db, events)

    async def revoke_manifest(
        self,
        manifest_id: str,
        revoked_at: str,
        effective_at: str,
        reason: str,
        events: Sequence[NewEvent],
    ) -> bool:
        async with self._transaction() as db:
            sql = "SELECT revoked_at FROM manifests WHERE manifest_id = $1 FOR UPDATE"
            row = await db.fetchrow(sql, manifest_id)
            if row is None:
                raise NotFoundError("no such manifest")
            if row[0] is not None:
                return False
            await db.execute(
                "UPDATE manifests SET revoked_at = $1, effective_at = $2, revoke_reason = $3"
                " WHERE manifest_id = $4",
                revoked_at, effective_at, reason, manifest_id,
            )  # fmt: skip
            await self._append_events(db, events)
            return True

    async def manifests_naming(
        self, *, content_id: str | None = None, path: str | None = None
    ) -> list[tuple[StoredManifest, ManifestItem]]:
        if (content_id is None) == (path is None):
            raise ValueError("manifests_naming() takes exactly one of content_id, path")
        column, value = ("content_id", content_id) if content_id is not None else ("path", path)
        rows = await self._all(
            f"SELECT {_MANIFEST_COLUMNS}, i.content_id, i.path, i.size_bytes, i.media_type"  # noqa: S608
            f" FROM manifest_items i JOIN manifests m ON m.manifest_id = i.manifest_id"
            f" WHERE i.{column} = ? ORDER BY m.published_at, m.manifest_id",
            (value,),
        )
        return [
            (_manifest_from_row(row[:12]), ManifestItem(row[12], row[13], int(row[14]), row[15]))
            for row in rows
        ]

    async def registry_events(self, after_seq: int, limit: int) -> list[RegistryEvent]:
        rows = await self._all(
            "SELECT seq, kind, at, payload_json FROM registry_events WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [RegistryEvent(int(row[0]), *row[1:]) for row in rows]
