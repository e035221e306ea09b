"""AdminDb: the admin UI's connection to the coordinator's own database, SQLite (aiosqlite) or
PostgreSQL (asyncpg), chosen by the same ``db`` DSN as the coordinator (``connect``).

Everything in ``admin/`` writes its SQL once, with ``?`` placeholders, in the portable subset of
``billing/store/migrations.py`` (TEXT timestamps, BIGINT counts, ``ON CONFLICT``, ids from the
application); on PostgreSQL the placeholders are numbered ``$1, $2, …``. A unique-key violation
is ``DuplicateKeyError`` on both, so callers never import a driver.

Durability: ``execute`` is one autocommitted statement, ``transaction()`` one transaction; both
are durable when they return (SQLite in WAL with the coordinator's ``synchronous``; PostgreSQL
commits fsync the WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg

from billing.config import CoordinatorConfig
from billing.store.postgres import pg_sql, rows_affected

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_PG_POOL_SIZE = 2  # the UI's few queries beside the coordinator's own pool


class DuplicateKeyError(Exception):
    """An INSERT hit an existing primary or unique key."""


class Executor(Protocol):
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one query; its rows as sequences of column values."""
        ...


class AdminDb(Executor, Protocol):
    backend: str  # SQLITE | POSTGRESQL

    def transaction(
        self, lock_key: int | None = None
    ) -> contextlib.AbstractAsyncContextManager[Executor]:
        """One transaction. ``lock_key``: on PostgreSQL, also hold that advisory lock until it
        ends (so several coordinator processes serialise, e.g. migrations); SQLite's
        ``BEGIN IMMEDIATE`` already serialises writers."""
        ...

    async def has_table(self, name: str) -> bool:
        """Whether the table exists (in the schema search path, on PostgreSQL)."""
        ...

    async def close(self) -> None: ...


def _is_unique_violation(exc: aiosqlite.IntegrityError) -> bool:
    return "UNIQUE constraint failed" in str(exc)  # primary keys too (no rowid alias here)


class SqliteAdminDb:
    backend = SQLITE

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()  # one transaction at a time on this connection

    @classmethod
    async def open(cls, path: Path) -> SqliteAdminDb:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA busy_timeout=5000")
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(await self.fetch(sql, (name,)))

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        try:
            cursor = await self._db.execute(sql, params)
        except aiosqlite.IntegrityError as exc:
            if _is_unique_violation(exc):
                raise DuplicateKeyError(str(exc)) from None
            raise
        count = cursor.rowcount
        await cursor.close()
        return count

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock:
            return await self._execute(sql, params)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        # One step on the connection's thread: interleaved execute/fetch steps of concurrent
        # requests would keep a statement open and pin an old snapshot (see SqliteStore._one).
        return list(await self._db.execute_fetchall(sql, params))

    @contextlib.asynccontextmanager
    async def transaction(self, lock_key: int | None = None) -> AsyncIterator[Executor]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")


class _SqliteTransaction:
    """The statements of a transaction already holding the connection's lock."""

    def __init__(self, owner: SqliteAdminDb) -> None:
        self._owner = owner

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._owner._execute(sql, params)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return await self._owner.fetch(sql, params)


class _PostgresExecutor:
    def __init__(self, target: asyncpg.Pool | asyncpg.Connection) -> None:
        self._target = target

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            status = await self._target.execute(pg_sql(sql), *params)
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateKeyError(str(exc)) from None
        return rows_affected(status)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(await self._target.fetch(pg_sql(sql), *params))


class PostgresAdminDb(_PostgresExecutor):
    backend = POSTGRESQL

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str) -> PostgresAdminDb:
        return cls(await asyncpg.create_pool(dsn, min_size=1, max_size=_PG_POOL_SIZE))

    async def close(self) -> None:
        await self._pool.close()

    async def has_table(self, name: str) -> bool:
        rows = await self.fetch("SELECT to_regclass(?) IS NOT NULL", (name,))
        return bool(rows[0][0])

    @contextlib.asynccontextmanager
    async def transaction(self, lock_key: int | None = None) -> AsyncIterator[Executor]:
        async with self._pool.acquire() as conn, conn.transaction():
            if lock_key is not None:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
            yield _PostgresExecutor(conn)


async def connect(config: CoordinatorConfig) -> SqliteAdminDb | PostgresAdminDb:
    """The coordinator's database, as its ``db`` DSN names it (no migrations here)."""
    from billing.service import is_postgres

    if config.db is not None and is_postgres(config):
        return await PostgresAdminDb.open(config.db)
    return await SqliteAdminDb.open(config.sqlite_path)
