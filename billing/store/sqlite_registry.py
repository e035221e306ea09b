"""The manifest registry's part of ``SqliteStore`` (creators, manifests, the change feed).

A mixin so ``sqlite.py`` stays one concept per screen; it uses the store's one writer
transaction and its reader connection. Every write appends its change-feed events in the same
transaction, numbering them ``MAX(seq) + 1`` (safe: writes are serialised by the writer lock; the
PostgreSQL backend will take a table lock or a sequence for the same guarantee).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiosqlite

from billing.errors import ConflictError, NotFoundError
from billing.registry.errors import VersionExistsError
from billing.store.base import CreatorKey, NewEvent, RegistryEvent, StoredManifest
from provenance.manifests import ManifestItem

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


class SqliteRegistryMixin:
    if TYPE_CHECKING:  # provided by SqliteStore; declared for the type checker

        def _transaction(self) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
            raise NotImplementedError

        async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
        async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    @staticmethod
    async def _append_events(db: aiosqlite.Connection, events: Sequence[NewEvent]) -> None:
        async with db.execute("SELECT COALESCE(MAX(seq), 0) FROM registry_events") as cursor:
            row = await cursor.fetchone()
        seq = int(row[0]) if row is not None else 0
        for event in events:
            seq += 1
            await db.execute(
                "INSERT INTO registry_events (seq, kind, at, payload_json) VALUES (?, ?, ?, ?)",
                (seq, event.kind, event.at, event.payload_json),
            )

    @staticmethod
    async def _exists(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> bool:
        async with db.execute(sql, params) as cursor:
            return await cursor.fetchone() is not None

    @staticmethod
    async def _insert_creator_key(db: aiosqlite.Connection, key: CreatorKey) -> bool:
        cursor = await db.execute(
            "INSERT INTO creator_keys (account, key_id, verifier, added_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (account, key_id) DO NOTHING",
            (key.account, key.key_id, key.verifier, key.added_at),
        )
        return cursor.rowcount == 1

    async def add_creator(
        self, account: str, keys: Sequence[CreatorKey], now: str, events: Sequence[NewEvent]
    ) -> None:
        async with self._transaction() as db:
            sql = "SELECT 1 FROM creators WHERE account = ?"
            if await self._exists(db, sql, (account,)):
                raise ConflictError(f"creator {account} already exists")
            await db.execute("INSERT INTO creators VALUES (?, ?)", (account, now))
            for key in keys:
                await self._insert_creator_key(db, key)
            await self._append_events(db, events)

    async def add_creator_key(self, key: CreatorKey, events: Sequence[NewEvent]) -> bool:
        async with self._transaction() as db:
            sql = "SELECT 1 FROM creators WHERE account = ?"
            if not await self._exists(db, sql, (key.account,)):
                raise NotFoundError("no such creator")
            added = await self._insert_creator_key(db, key)
            if added:
                await self._append_events(db, events)
            return added

    async def revoke_creator_key(
        self, account: str, key_id: str, now: str, events: Sequence[NewEvent]
    ) -> bool:
        async with self._transaction() as db:
            sql = "SELECT revoked_at FROM creator_keys WHERE account = ? AND key_id = ?"
            async with db.execute(sql, (account, key_id)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise NotFoundError("no such creator key")
            if row[0] is not None:
                return False
            await db.execute(
                "UPDATE creator_keys SET revoked_at = ? WHERE account = ? AND key_id = ?",
                (now, account, key_id),
            )
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
            sql = "SELECT 1 FROM creators WHERE account = ?"
            if not await self._exists(db, sql, (account,)):
                raise NotFoundError("no such creator")
            await db.execute(
                "INSERT INTO creator_tokens VALUES (?, ?, ?)", (token_hash, account, now)
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
                    " supersedes, signed_json, published_at) VALUES (?,?,?,?,?,?,?,?)",
                    (m.manifest_id, m.creator, m.key_id, m.lineage, m.version, m.supersedes,
                     m.signed_json, m.published_at),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                raise VersionExistsError("manifest id, version or successor slot taken") from None
            if m.supersedes is not None:
                await db.execute(
                    "UPDATE manifests SET superseded_at = ? WHERE manifest_id = ?",
                    (m.published_at, m.supersedes),
                )
            await db.executemany(
                "INSERT INTO manifest_items VALUES (?, ?, ?, ?, ?, ?)",
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
            sql = "SELECT revoked_at FROM manifests WHERE manifest_id = ?"
            async with db.execute(sql, (manifest_id,)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise NotFoundError("no such manifest")
            if row[0] is not None:
                return False
            await db.execute(
                "UPDATE manifests SET revoked_at = ?, effective_at = ?, revoke_reason = ?"
                " WHERE manifest_id = ?",
                (revoked_at, effective_at, reason, manifest_id),
            )
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
