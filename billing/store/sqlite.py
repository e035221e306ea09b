"""SqliteStore: the Store protocol on SQLite through aiosqlite, in WAL mode.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` (the default here): a commit fsyncs the
WAL, so a batch acknowledged after ``apply_batch`` returns survives SIGKILL *and* power loss.
``synchronous=NORMAL`` (configurable) still survives SIGKILL of the process (the WAL is in the OS
page cache) but may lose the last commits on power loss; choose it only knowing that.

One writer connection runs each transaction under an asyncio lock (``BEGIN IMMEDIATE`` ...
``COMMIT``); a second connection serves reads, which in WAL mode see only committed data.

Writing batches (group commit) is ``sqlite_ingest.SqliteIngestMixin``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from billing.errors import (
    ConflictError,
    EnrolmentError,
    NotFoundError,
)
from billing.log.integrate import NodeId
from billing.log.leaves import BatchLeaf, LogLeaf, in_arrival_order
from billing.store.base import (
    EdgeKey,
    EdgeStatus,
    Incident,
    RecordLocation,
    StoredBatch,
    StoredCheckpoint,
)
from billing.store.migrations import CREATE_MIGRATIONS_TABLE, MIGRATIONS
from billing.store.sqlite_ingest import QueuedBatch, SqliteIngestMixin
from billing.store.sqlite_registry import SqliteRegistryMixin
from provenance.batches import ChainHead, header_from_obj
from provenance.canonical_json import parse
from provenance.statement_leaves import StatementLeaf

SYNCHRONOUS_MODES = ("FULL", "NORMAL")
# The writer's page cache: the dedup index on request ids takes random inserts (edges draw 128
# random bits), so past SQLite's default 2 MiB every batch would read its leaf pages back in.
WRITER_CACHE_KIB = 64 * 1024
# The writer copies the WAL back into the database once it holds this many pages (SQLite's
# default is 1,000, about one batch of 1,000 records with random ids, so nearly every commit
# also checkpointed); a hot index page dirtied by several commits is then copied back once.
# Measured: ~18% less CPU per batch for batches committed one at a time. The WAL file is cut
# back to WAL_LIMIT_BYTES after a checkpoint if a big group made it grow past that.
WAL_AUTOCHECKPOINT_PAGES = 8192
WAL_LIMIT_BYTES = 64 * 1024 * 1024
# Page size of a database this store creates (an existing one keeps its own). A batch's records
# JSON (its batch_records row) is ~440 KB per 1,000 records: at SQLite's default 4 KiB a chain
# of ~110 overflow pages, and every B-tree page split and WAL frame costs per page. Measured
# (bench/ingest.py's batches, 16 KiB against 4 KiB, each in a fresh process): ~1 µs less CPU
# per record stored (5.2 -> 4.2 µs), a fifth of the store's share of ingest. Reads of one row
# (a receipt, a key) read 16 KiB instead of 4, which the page cache absorbs. With these pages
# WAL_AUTOCHECKPOINT_PAGES is 128 MiB of WAL between checkpoints (it was measured so).
NEW_DATABASE_PAGE_BYTES = 16 * 1024
_PLACE_BATCH = "UPDATE batches SET log_index = ? WHERE batch_id = ? AND log_index IS NULL"
_PLACE_STATEMENT = (
    "UPDATE statements SET log_index = ? WHERE period_id = ? AND creator = ? AND sha256 = ?"
    " AND log_index IS NULL"
)
# closed statements not yet in the log, by their period's close time, then close order
_UNSEQUENCED_STATEMENTS = (
    "SELECT p.closed_at, s.creator, s.period_id, s.sha256 FROM statements s"
    " JOIN periods p ON p.period_id = s.period_id WHERE s.log_index IS NULL"
    " ORDER BY p.closed_at, s.leaf_index LIMIT ?"
)
_SELECT_BATCH = (
    "SELECT b.batch_id, b.header_json, b.signature, b.log_index, j.records_json FROM batches b"
    " JOIN batch_records j ON j.batch_id = b.batch_id"
)


def _batch_from_row(row: Sequence[Any]) -> StoredBatch:
    header = header_from_obj(parse(str(row[1]).encode()))
    return StoredBatch(str(row[0]), header, base64.b64decode(row[2]), row[3], str(row[4]))


class SqliteStore(SqliteIngestMixin, SqliteRegistryMixin):
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._db = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        self._queue: list[QueuedBatch] = []
        self._group_writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, synchronous: str = "FULL") -> SqliteStore:
        """Open (creating) the database and apply pending migrations."""
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        writer = await aiosqlite.connect(path, isolation_level=None)
        # before WAL mode: the first write of an empty file fixes its page size
        await writer.execute(f"PRAGMA page_size={NEW_DATABASE_PAGE_BYTES}")
        await writer.execute("PRAGMA journal_mode=WAL")
        await writer.execute(f"PRAGMA synchronous={synchronous}")
        await writer.execute("PRAGMA busy_timeout=5000")
        await writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        await writer.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        await writer.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA busy_timeout=5000")
        store = cls(writer, reader)
        await store.migrate()
        return store

    async def close(self) -> None:
        if self._group_writer is not None:
            await self._group_writer  # answers every queued batch before the connection goes
        await self._reader.close()
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    # A read is one step on the reader's thread (execute, fetch every row, statement done).
    # With execute, then fetch, as separate steps, reads of concurrent tasks interleave and
    # some statement is always open: the connection then never leaves its read transaction,
    # and every later read answers from that old snapshot (WAL), missing what was committed
    # since. Callers of _one select at most a few rows.
    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._reader.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._reader.execute_fetchall(sql, params))

    async def migrate(self) -> list[int]:
        """Apply pending migrations, each in one transaction; return the versions applied."""
        await self._db.execute(CREATE_MIGRATIONS_TABLE)
        async with self._db.execute("SELECT version FROM schema_migrations") as cursor:
            done = {row[0] for row in await cursor.fetchall()}
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            async with self._transaction() as db:
                for statement in migration.statements:
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) "
                    "VALUES (?, ?, datetime('now'))",
                    (migration.version, migration.name),
                )
            applied.append(migration.version)
        return applied

    # -- admin tokens ----------------------------------------------------------------------
    async def replace_admin_token(self, token_hash: str, now: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM admin_tokens")
            await db.execute("INSERT INTO admin_tokens VALUES (?, ?)", (token_hash, now))

    async def has_admin_token(self, token_hash: str) -> bool:
        sql = "SELECT 1 FROM admin_tokens WHERE token_hash = ?"
        return await self._one(sql, (token_hash,)) is not None

    async def count_admin_tokens(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM admin_tokens")
        return int(row[0])

    # -- edges -----------------------------------------------------------------------------
    async def add_enrolment_token(self, token_hash: str, now: str, expires_at: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO enrolment_tokens (token_hash, created_at, expires_at) "
                "VALUES (?, ?, ?)",
                (token_hash, now, expires_at),
            )

    async def enrol_edge(self, token_hash: str, edge: str, key: EdgeKey, now: str) -> None:
        async with self._transaction() as db:
            async with db.execute(
                "SELECT expires_at, used_at FROM enrolment_tokens WHERE token_hash = ?",
                (token_hash,),
            ) as cursor:
                token = await cursor.fetchone()
            if token is None or token[1] is not None or token[0] <= now:
                raise EnrolmentError("enrolment token unknown, already used or expired")
            async with db.execute("SELECT 1 FROM edges WHERE edge = ?", (edge,)) as cursor:
                if await cursor.fetchone() is not None:
                    raise ConflictError(f"edge {edge} is already enrolled")
            await db.execute(
                "UPDATE enrolment_tokens SET used_at = ?, used_by = ? WHERE token_hash = ?",
                (now, edge, token_hash),
            )
            await db.execute("INSERT INTO edges (edge, enrolled_at) VALUES (?, ?)", (edge, now))
            await self._insert_key(db, key)

    @staticmethod
    async def _insert_key(db: aiosqlite.Connection, key: EdgeKey) -> None:
        await db.execute(
            "INSERT INTO edge_keys (edge, key_id, verifier, added_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (edge, key_id) DO NOTHING",
            (key.edge, key.key_id, key.verifier, key.added_at),
        )

    async def add_edge_key(self, key: EdgeKey) -> None:
        async with self._transaction() as db:
            async with db.execute("SELECT 1 FROM edges WHERE edge = ?", (key.edge,)) as cursor:
                if await cursor.fetchone() is None:
                    raise NotFoundError("no such edge")
            await self._insert_key(db, key)

    async def revoke_edge_key(self, edge: str, key_id: str, now: str) -> None:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE edge_keys SET revoked_at = COALESCE(revoked_at, ?)"
                " WHERE edge = ? AND key_id = ?",
                (now, edge, key_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError("no such edge key")

    async def edge_keys(self, edge: str) -> list[EdgeKey]:
        rows = await self._all(
            "SELECT edge, key_id, verifier, added_at, revoked_at FROM edge_keys"
            " WHERE edge = ? ORDER BY added_at, key_id",
            (edge,),
        )
        return [EdgeKey(*row) for row in rows]

    async def list_edges(self) -> list[EdgeStatus]:
        rows = await self._all(
            "SELECT edge, enrolled_at, last_seen_at, head_seq, head_hash, spool_lag,"
            " batches_accepted, (SELECT COUNT(*) FROM incidents i WHERE i.edge = e.edge)"
            " FROM edges e ORDER BY edge"
        )
        rejected: dict[str, dict[str, int]] = {}
        for edge, reason, count in await self._all("SELECT * FROM edge_rejections"):
            rejected.setdefault(edge, {})[reason] = int(count)
        return [
            EdgeStatus(
                edge=row[0],
                enrolled_at=row[1],
                last_seen_at=row[2],
                head_seq=row[3],
                head_hash=row[4],
                spool_lag=row[5],
                batches_accepted=int(row[6]),
                rejected=rejected.get(row[0], {}),
                incidents=int(row[7]),
            )
            for row in rows
        ]

    async def note_edge_seen(self, edge: str, now: str, spool_lag: int | None) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE edges SET last_seen_at = ?, spool_lag = COALESCE(?, spool_lag)"
                " WHERE edge = ?",
                (now, spool_lag, edge),
            )

    async def count_rejection(self, edge: str, reason: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO edge_rejections (edge, reason, batches) VALUES (?, ?, 1)"
                " ON CONFLICT (edge, reason) DO UPDATE SET batches = edge_rejections.batches + 1",
                (edge, reason),
            )

    async def list_incidents(self, edge: str | None) -> list[Incident]:
        sql = "SELECT * FROM incidents"
        rows = await (
            self._all(sql + " WHERE edge = ? ORDER BY at", (edge,))
            if edge is not None
            else self._all(sql + " ORDER BY at")
        )
        return [Incident(*row) for row in rows]

    # -- ingest ----------------------------------------------------------------------------
    async def find_batch(self, batch_id: str) -> StoredBatch | None:
        sql = _SELECT_BATCH + " WHERE b.batch_id = ?"
        row = await self._one(sql, (batch_id,))
        return None if row is None else _batch_from_row(row)

    async def chain_head(self, edge: str) -> ChainHead | None:
        sql = "SELECT head_seq, head_hash FROM edges WHERE edge = ?"
        row = await self._one(sql, (edge,))
        return None if row is None or row[0] is None else ChainHead(edge, int(row[0]), row[1])

    # -- the log ---------------------------------------------------------------------------
    async def unsequenced_batch_ids(self, limit: int) -> list[str]:
        rows = await self._all(
            "SELECT batch_id FROM batches WHERE log_index IS NULL"
            " ORDER BY received_at, batch_id LIMIT ?",
            (limit,),
        )
        return [str(row[0]) for row in rows]

    async def log_size(self) -> int:
        row = await self._one("SELECT COUNT(*) FROM log_nodes WHERE level = 0")
        return int(row[0])

    async def unsequenced_leaves(self, limit: int) -> list[LogLeaf]:
        batches = await self._all(
            "SELECT received_at, batch_id FROM batches WHERE log_index IS NULL"
            " ORDER BY received_at, batch_id LIMIT ?",
            (limit,),
        )
        statements = await self._all(_UNSEQUENCED_STATEMENTS, (limit,))
        return in_arrival_order(
            [(str(r[0]), BatchLeaf(str(r[1]))) for r in batches],
            [(str(r[0]), StatementLeaf(str(r[1]), str(r[2]), str(r[3]))) for r in statements],
            limit,
        )

    async def append_leaves(
        self, first_index: int, leaves: Sequence[LogLeaf], nodes: Sequence[tuple[NodeId, bytes]]
    ) -> None:
        async with self._transaction() as db:
            async with db.execute("SELECT COUNT(*) FROM log_nodes WHERE level = 0") as cursor:
                row = await cursor.fetchone()
            if row is None or int(row[0]) != first_index:
                raise RuntimeError("log size moved under the sequencer (two sequencers?)")
            batches: list[tuple[Any, ...]] = []
            statements: list[tuple[Any, ...]] = []
            for index, leaf in enumerate(leaves, start=first_index):
                if isinstance(leaf, BatchLeaf):
                    batches.append((index, leaf.batch_id))
                else:
                    statements.append((index, leaf.period, leaf.creator, leaf.sha256))
            placed = 0
            for sql, params in ((_PLACE_BATCH, batches), (_PLACE_STATEMENT, statements)):
                if params:
                    async with db.executemany(sql, params) as cursor:
                        placed += cursor.rowcount
            if placed != len(leaves):  # the transaction rolls back: nothing is written
                raise RuntimeError("a leaf to append is unknown or already in the log")
            await db.executemany(
                "INSERT INTO log_nodes (level, node_index, hash) VALUES (?, ?, ?)",
                [(level, index, value.hex()) for (level, index), value in nodes],
            )

    async def read_nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        wanted = sorted(set(ids))
        found: dict[NodeId, bytes] = {}
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            where = " OR ".join(["(level = ? AND node_index = ?)"] * len(chunk))
            params = [value for pair in chunk for value in pair]
            # only "?" placeholders are interpolated: the values travel as parameters
            sql = "SELECT level, node_index, hash FROM log_nodes WHERE " + where  # noqa: S608
            for level, index, value in await self._all(sql, params):
                found[(int(level), int(index))] = bytes.fromhex(value)
        return found

    async def batch_at(self, log_index: int) -> StoredBatch | None:
        sql = _SELECT_BATCH + " WHERE b.log_index = ?"
        row = await self._one(sql, (log_index,))
        return None if row is None else _batch_from_row(row)

    async def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO checkpoints VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING",
                (checkpoint.size, checkpoint.root_hash, checkpoint.note, checkpoint.created_at),
            )

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = await self._one("SELECT * FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
        return None if row is None else StoredCheckpoint(int(row[0]), *row[1:])

    async def find_record(self, request_id: str) -> RecordLocation | None:
        row = await self._one(
            "SELECT b.batch_id, b.header_json, b.signature, b.log_index, j.records_json,"
            " r.record_index FROM record_ids r JOIN batches b ON b.batch_ref = r.batch_ref"
            " JOIN batch_records j ON j.batch_id = b.batch_id WHERE r.request_id = ?",
            (request_id,),
        )
        return None if row is None else RecordLocation(_batch_from_row(row[:5]), int(row[5]))
