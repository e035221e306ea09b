"""PostgresStore: the Store protocol on PostgreSQL through asyncpg (the scale-out backend).

Durability: every writing method runs in one transaction on a pooled connection and returns
after COMMIT (PostgreSQL's default ``synchronous_commit=on`` fsyncs the WAL), so an ingest
worker that acknowledges a JetStream message after ``apply_batch`` returns never loses it.

Concurrency (several coordinator processes share one database; docs/design/scale-out.md):
``apply_batch`` locks the edge's row (``SELECT … FOR UPDATE``) before it looks for the batch, so
two workers holding the same batch serialise and the second sees a DUPLICATE; ``append_leaves``
takes a transaction-scoped advisory lock and re-checks the log size, so a second sequencer
fails instead of forking the log; ``try_lead_log`` elects the one sequencer with a session-scoped
advisory lock held on a dedicated connection. Migrations run under an advisory lock too.

The SQL is this module's own (``$n`` placeholders, written as ``?`` and numbered by ``pg_sql``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from billing.errors import (
    ChainForkError,
    ChainGapError,
    ConflictError,
    EnrolmentError,
    NotFoundError,
)
from billing.ingest.decide import check_chain
from billing.log.integrate import NodeId
from billing.log.leaves import BatchLeaf, LogLeaf, in_arrival_order
from billing.store.base import (
    ApplyResult,
    EdgeKey,
    EdgeStatus,
    Incident,
    IncomingBatch,
    Outcome,
    RecordLocation,
    StoredBatch,
    StoredCheckpoint,
    counters_hour,
    record_id_rows,
)
from billing.store.migrations import CREATE_MIGRATIONS_TABLE, MIGRATIONS
from billing.store.postgres_registry import PostgresRegistryMixin
from provenance.batches import ChainHead, header_canonical_bytes, header_from_obj
from provenance.canonical_json import parse
from provenance.statement_leaves import StatementLeaf

# pg_advisory_lock keys (one 64-bit namespace per database): ASCII "cachet" + a small tag.
MIGRATION_LOCK = 0x636163686574_0001
ACQUIRE_TIMEOUT_S = 30.0  # a stuck pool must not hang the sequencer for good
LOG_LOCK = 0x636163686574_0002  # session lock: the elected sequencer
LOG_APPEND_LOCK = 0x636163686574_0005  # transaction lock: one append_leaves at a time
REGISTRY_LOCK = 0x636163686574_0003  # taken by postgres_registry
# The request-id dedup rows (migration 8: a batch's records are kept once, as its records JSON).
_RECORD_ID_COLUMNS = "request_id, batch_ref, record_index, served"
_UPSERT_TAIL = (
    " ON CONFLICT (request_id) DO UPDATE SET batch_ref = excluded.batch_ref,"
    " record_index = excluded.record_index, served = excluded.served"
    " WHERE excluded.served = 1 AND record_ids.served = 0 RETURNING 1"
)
_UPSERT_ONE = f"INSERT INTO record_ids ({_RECORD_ID_COLUMNS}) VALUES (?,?,?,?)"  # noqa: S608
_UPSERT_MANY = (
    f"INSERT INTO record_ids ({_RECORD_ID_COLUMNS})"  # noqa: S608
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[])"
)
_SELECT_BATCH = (
    "SELECT b.batch_id, b.header_json, b.signature, b.log_index, j.records_json FROM batches b"
    " JOIN batch_records j ON j.batch_id = b.batch_id"
)


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """Number the ``?`` placeholders as PostgreSQL's ``$1, $2, …`` (our SQL has no ``?`` in
    literals)."""
    parts = sql.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], start=1):
        out.append(f"${n}{part}")
    return "".join(out)


def rows_affected(status: str) -> int:
    """The row count of an asyncpg command status such as ``UPDATE 3`` or ``INSERT 0 1``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _batch_from_row(row: Sequence[Any]) -> StoredBatch:
    header = header_from_obj(parse(str(row[1]).encode()))
    log_index = None if row[3] is None else int(row[3])
    return StoredBatch(str(row[0]), header, base64.b64decode(row[2]), log_index, str(row[4]))


class PostgresStore(PostgresRegistryMixin):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._leader: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, dsn: str, max_connections: int = 4) -> PostgresStore:
        """Connect (a small pool) and apply pending migrations."""
        # min_size=0: during a PostgreSQL outage a floor of 1 made asyncpg log a traceback on
        # every retry; connections are opened as needed anyway.
        pool = await asyncpg.create_pool(dsn, min_size=0, max_size=max_connections)
        store = cls(pool)
        try:
            await store.migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        if self._leader is not None:  # back to the pool, which unlocks it on release
            with contextlib.suppress(Exception):
                await self._pool.release(self._leader)
            self._leader = None
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._pool.fetchrow(pg_sql(sql), *params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._pool.fetch(pg_sql(sql), *params))

    async def migrate(self) -> list[int]:
        """Apply pending migrations, each in one transaction under the migration lock (several
        workers may start at once); return the versions this call applied."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "SELECT pg_advisory_lock($1)", MIGRATION_LOCK
            )  # DDL below is not safe to race
            try:
                await conn.execute(CREATE_MIGRATIONS_TABLE)
                done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                applied = []
                for migration in MIGRATIONS:
                    if migration.version in done:
                        continue
                    async with conn.transaction():
                        for statement in migration.statements + migration.postgres_statements:
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at)"
                            " VALUES ($1, $2, to_char(now() AT TIME ZONE 'UTC',"
                            ' \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\'))',
                            migration.version,
                            migration.name,
                        )
                    applied.append(migration.version)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        return applied

    async def schema_version(self) -> int:
        row = await self._one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(row[0])

    # -- admin tokens ----------------------------------------------------------------------
    async def replace_admin_token(self, token_hash: str, now: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM admin_tokens")
            await db.execute("INSERT INTO admin_tokens VALUES ($1, $2)", token_hash, now)

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
                "INSERT INTO enrolment_tokens (token_hash, created_at, expires_at)"
                " VALUES ($1, $2, $3)",
                token_hash, now, expires_at,
            )  # fmt: skip

    async def enrol_edge(self, token_hash: str, edge: str, key: EdgeKey, now: str) -> None:
        async with self._transaction() as db:
            token = await db.fetchrow(
                "SELECT expires_at, used_at FROM enrolment_tokens WHERE token_hash = $1 FOR UPDATE",
                token_hash,
            )
            if token is None or token[1] is not None or token[0] <= now:
                raise EnrolmentError("enrolment token unknown, already used or expired")
            if await db.fetchval("SELECT 1 FROM edges WHERE edge = $1", edge) is not None:
                raise ConflictError(f"edge {edge} is already enrolled")
            await db.execute(
                "UPDATE enrolment_tokens SET used_at = $1, used_by = $2 WHERE token_hash = $3",
                now, edge, token_hash,
            )  # fmt: skip
            await db.execute("INSERT INTO edges (edge, enrolled_at) VALUES ($1, $2)", edge, now)
            await self._insert_key(db, key)

    @staticmethod
    async def _insert_key(db: asyncpg.Connection, key: EdgeKey) -> None:
        await db.execute(
            "INSERT INTO edge_keys (edge, key_id, verifier, added_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (edge, key_id) DO NOTHING",
            key.edge, key.key_id, key.verifier, key.added_at,
        )  # fmt: skip

    async def add_edge_key(self, key: EdgeKey) -> None:
        async with self._transaction() as db:
            if await db.fetchval("SELECT 1 FROM edges WHERE edge = $1", key.edge) is None:
                raise NotFoundError("no such edge")
            await self._insert_key(db, key)

    async def revoke_edge_key(self, edge: str, key_id: str, now: str) -> None:
        async with self._transaction() as db:
            status = await db.execute(
                "UPDATE edge_keys SET revoked_at = COALESCE(revoked_at, $1)"
                " WHERE edge = $2 AND key_id = $3",
                now, edge, key_id,
            )  # fmt: skip
            if rows_affected(status) == 0:
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
                head_seq=None if row[3] is None else int(row[3]),
                head_hash=row[4],
                spool_lag=None if row[5] is None else int(row[5]),
                batches_accepted=int(row[6]),
                rejected=rejected.get(row[0], {}),
                incidents=int(row[7]),
            )
            for row in rows
        ]

    async def note_edge_seen(self, edge: str, now: str, spool_lag: int | None) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE edges SET last_seen_at = $1, spool_lag = COALESCE($2, spool_lag)"
                " WHERE edge = $3",
                now, spool_lag, edge,
            )  # fmt: skip

    async def count_rejection(self, edge: str, reason: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO edge_rejections (edge, reason, batches) VALUES ($1, $2, 1)"
                " ON CONFLICT (edge, reason) DO UPDATE SET batches = edge_rejections.batches + 1",
                edge, reason,
            )  # fmt: skip

    async def list_incidents(self, edge: str | None) -> list[Incident]:
        sql = "SELECT * FROM incidents"
        rows = await (
            self._all(sql + " WHERE edge = ? ORDER BY at", (edge,))
            if edge is not None
            else self._all(sql + " ORDER BY at")
        )
        return [Incident(r[0], r[1], r[2], int(r[3]), *r[4:]) for r in rows]

    # -- ingest ----------------------------------------------------------------------------
    async def find_batch(self, batch_id: str) -> StoredBatch | None:
        row = await self._one(_SELECT_BATCH + " WHERE b.batch_id = ?", (batch_id,))
        return None if row is None else _batch_from_row(row)

    async def chain_head(self, edge: str) -> ChainHead | None:
        row = await self._one("SELECT head_seq, head_hash FROM edges WHERE edge = ?", (edge,))
        return None if row is None or row[0] is None else ChainHead(edge, int(row[0]), row[1])

    async def apply_batch(self, batch: IncomingBatch, now: str, incident_id: str) -> ApplyResult:
        header = batch.header
        refused: ChainGapError | ChainForkError | None = None
        async with self._transaction() as db:
            # the edge's row lock serialises every writer of this edge's chain (other workers)
            row = await db.fetchrow(
                "SELECT head_seq, head_hash FROM edges WHERE edge = $1 FOR UPDATE", header.edge
            )
            sql = "SELECT 1 FROM batches WHERE batch_id = $1"
            if await db.fetchval(sql, batch.batch_id) is not None:
                return ApplyResult(Outcome.DUPLICATE, 0, 0)
            head = None if row is None or row[0] is None else ChainHead(header.edge, *row)
            try:
                check_chain(head, header)
            except (ChainGapError, ChainForkError) as exc:
                refused = exc  # the incident commits; the batch is refused below
                await db.execute(
                    "INSERT INTO incidents VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    incident_id, header.edge, exc.reason, header.seq, str(exc),
                    header_canonical_bytes(header).decode(), now,
                )  # fmt: skip
            else:
                return await self._insert_batch(db, batch, now)
        raise refused

    async def _insert_batch(
        self, db: asyncpg.Connection, batch: IncomingBatch, now: str
    ) -> ApplyResult:
        h = batch.header
        header_json = header_canonical_bytes(h).decode()
        signature = base64.b64encode(batch.signature).decode()
        batch_ref = await db.fetchval(
            "INSERT INTO batches (batch_id, edge, seq, header_json, signature, record_count,"
            " first_ts, last_ts, received_at, batch_ref)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9, nextval('batch_refs')) RETURNING batch_ref",
            batch.batch_id, h.edge, h.seq, header_json, signature, h.count, h.first_ts,
            h.last_ts, now,
        )  # fmt: skip
        await db.execute(
            "INSERT INTO batch_records (batch_id, records_json) VALUES ($1, $2)",
            batch.batch_id,
            batch.records_json,
        )
        rows = record_id_rows(batch_ref, batch.records)
        stored = await self._upsert_records(db, rows)
        if batch.counters is not None:  # the ledger's table, written with its batch
            c = batch.counters
            await db.execute(
                "INSERT INTO edge_counters (edge, seq, hour, requests_served, records_emitted,"
                " records_dropped) VALUES ($1,$2,$3,$4,$5,$6)",
                h.edge, h.seq, counters_hour(h.last_ts), c.served, c.emitted, c.dropped,
            )  # fmt: skip
        head_hash = hashlib.sha256(header_json.encode()).hexdigest()
        await db.execute(
            "UPDATE edges SET head_seq = $1, head_hash = $2, last_seen_at = $3,"
            " spool_lag = COALESCE($4, spool_lag), batches_accepted = batches_accepted + 1"
            " WHERE edge = $5",
            h.seq, head_hash, now, batch.spool_lag, h.edge,
        )  # fmt: skip
        return ApplyResult(Outcome.ACCEPTED, stored, len(rows) - stored)

    @staticmethod
    async def _upsert_records(db: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        """Upsert with the SQLite backend's row-by-row meaning; one statement when the batch's
        request ids are distinct (the usual case), else one statement per row."""
        if len({row[0] for row in rows}) == len(rows):
            columns = [list(column) for column in zip(*rows, strict=True)] if rows else []
            if not columns:
                return 0
            return len(await db.fetch(_UPSERT_MANY + _UPSERT_TAIL, *columns))
        stored = 0
        for row in rows:
            stored += len(await db.fetch(pg_sql(_UPSERT_ONE + _UPSERT_TAIL), *row))
        return stored

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
        statements = await self._all(
            "SELECT p.closed_at, s.creator, s.period_id, s.sha256 FROM statements s"
            " JOIN periods p ON p.period_id = s.period_id WHERE s.log_index IS NULL"
            " ORDER BY p.closed_at, s.leaf_index LIMIT ?",
            (limit,),
        )
        return in_arrival_order(
            [(str(r[0]), BatchLeaf(str(r[1]))) for r in batches],
            [(str(r[0]), StatementLeaf(str(r[1]), str(r[2]), str(r[3]))) for r in statements],
            limit,
        )

    async def append_leaves(
        self, first_index: int, leaves: Sequence[LogLeaf], nodes: Sequence[tuple[NodeId, bytes]]
    ) -> None:
        batches = [(first_index + i, leaf) for i, leaf in enumerate(leaves)
                   if isinstance(leaf, BatchLeaf)]  # fmt: skip
        statements = [(first_index + i, leaf) for i, leaf in enumerate(leaves)
                      if isinstance(leaf, StatementLeaf)]  # fmt: skip
        async with self._transaction() as db:
            await db.execute("SELECT pg_advisory_xact_lock($1)", LOG_APPEND_LOCK)
            size = await db.fetchval("SELECT COUNT(*) FROM log_nodes WHERE level = 0")
            if int(size) != first_index:
                raise RuntimeError("log size moved under the sequencer (two sequencers?)")
            placed = rows_affected(
                await db.execute(
                    "UPDATE batches SET log_index = u.i FROM unnest($1::text[], $2::bigint[])"
                    " AS u(id, i) WHERE batches.batch_id = u.id AND batches.log_index IS NULL",
                    [leaf.batch_id for _, leaf in batches],
                    [index for index, _ in batches],
                )
            )
            if statements:
                placed += rows_affected(
                    await db.execute(
                        "UPDATE statements SET log_index = u.i FROM unnest($1::text[],"
                        " $2::text[], $3::text[], $4::bigint[]) AS u(period_id, creator, sha256,"
                        " i) WHERE statements.period_id = u.period_id"
                        " AND statements.creator = u.creator AND statements.sha256 = u.sha256"
                        " AND statements.log_index IS NULL",
                        [leaf.period for _, leaf in statements],
                        [leaf.creator for _, leaf in statements],
                        [leaf.sha256 for _, leaf in statements],
                        [index for index, _ in statements],
                    )
                )
            if placed != len(leaves):  # raising rolls the transaction back: nothing is written
                raise RuntimeError("a leaf to append is unknown or already in the log")
            await db.execute(
                "INSERT INTO log_nodes (level, node_index, hash)"
                " SELECT * FROM unnest($1::int[], $2::bigint[], $3::text[])",
                [level for (level, _), _ in nodes],
                [index for (_, index), _ in nodes],
                [value.hex() for _, value in nodes],
            )

    async def try_lead_log(self) -> bool:
        """Whether this process is the log's one sequencer: take (or keep) the session-scoped
        advisory lock on a dedicated connection; losing the connection loses the lead."""
        try:
            if self._leader is not None:
                if not self._leader.is_closed():
                    await self._leader.fetchval("SELECT 1")  # connected: still the leader
                    return True
                await self._drop_leader()
            conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # A half-open leader connection must go back to the pool (it holds one of few
            # slots); the lock went with the session anyway.
            await self._drop_leader()
            return False
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOG_LOCK):
                self._leader = conn
                return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass
        await self._pool.release(conn)
        return False

    async def _drop_leader(self) -> None:
        leader, self._leader = self._leader, None
        if leader is None:
            return
        with contextlib.suppress(Exception):
            leader.terminate()
        with contextlib.suppress(Exception):
            await self._pool.release(leader)

    async def read_nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = await self._pool.fetch(
            "SELECT n.level, n.node_index, n.hash FROM log_nodes n"
            " JOIN unnest($1::int[], $2::bigint[]) AS w(level, idx)"
            " ON n.level = w.level AND n.node_index = w.idx",
            [level for level, _ in wanted],
            [index for _, index in wanted],
        )
        return {(int(r[0]), int(r[1])): bytes.fromhex(r[2]) for r in rows}

    async def batch_at(self, log_index: int) -> StoredBatch | None:
        row = await self._one(_SELECT_BATCH + " WHERE b.log_index = ?", (log_index,))
        return None if row is None else _batch_from_row(row)

    async def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        c = checkpoint
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO checkpoints VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (tree_size) DO NOTHING",
                c.size, c.root_hash, c.note, c.created_at,
            )  # fmt: skip

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
