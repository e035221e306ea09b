"""Both storage backends (issue 9): versioned migrations applied once, at open and by
``cachet coordinator migrate``; concurrent writers of one batch apply it once."""

from __future__ import annotations

import asyncio
import base64
import secrets
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from billing.service import open_store
from billing.store.base import EdgeKey, IncomingBatch, Outcome
from billing.store.migrations import MIGRATIONS
from billing.store.postgres import PostgresStore, pg_sql
from billing.store.sqlite import SqliteStore
from provenance.batches import header_canonical_bytes
from tests.component.billing.fleet import (
    Edge,
    coordinator_config,
    enrolled,
    incoming_of,
    signing_key,
)

pytestmark = pytest.mark.asyncio
NOW = "2026-11-27T12:00:00.000Z"


async def _applied_versions(store: SqliteStore | PostgresStore) -> list[int]:
    rows = await store._all("SELECT version FROM schema_migrations ORDER BY version")
    return [int(row[0]) for row in rows]


async def test_migrations_are_versioned_and_applied_once(
    store_dsn: str | None, tmp_path: Path
) -> None:
    config = coordinator_config(tmp_path, db=store_dsn)
    first = await open_store(config)
    try:
        assert await _applied_versions(first) == [m.version for m in MIGRATIONS]
        assert await first.migrate() == []  # nothing pending: reopening applies nothing
    finally:
        await first.close()
    second = await open_store(config)
    try:
        assert await _applied_versions(second) == [m.version for m in MIGRATIONS]
    finally:
        await second.close()


async def test_stores_opening_at_once_migrate_once(store_dsn: str | None, tmp_path: Path) -> None:
    """Several ingest workers start together on one database: the migration lock lets one
    apply each version and the others find it applied."""
    if store_dsn is None:
        pytest.skip("SQLite is one coordinator process's database: nothing starts beside it")
    config = coordinator_config(tmp_path, db=store_dsn)
    stores = await asyncio.gather(*(open_store(config) for _ in range(3)))
    try:
        for store in stores:
            assert await _applied_versions(store) == [m.version for m in MIGRATIONS]
    finally:
        for store in stores:
            await store.close()


def _incoming(edge: Edge) -> IncomingBatch:
    return incoming_of(edge.seal(count=5))


async def _execute(db: Any, store_dsn: str | None, sql: str, values: Sequence[Any]) -> None:
    """One ``?``-style statement in a store's transaction, on either backend."""
    if store_dsn is None:
        await db.execute(sql, values)
    else:
        await db.execute(pg_sql(sql), *values)


async def test_two_writers_of_one_batch_apply_it_once(
    store_dsn: str | None, tmp_path: Path
) -> None:
    """Two workers receiving the same batch (a JetStream redelivery racing the original):
    one ACCEPTED, the other DUPLICATE, the records stored once."""
    config = coordinator_config(tmp_path, db=store_dsn)
    stores = [await open_store(config), await open_store(config)]
    try:
        edge = Edge("edge-a", signing_key("edge-a"))
        await stores[0].add_enrolment_token("t", NOW, "2026-11-28T00:00:00.000Z")
        await stores[0].enrol_edge("t", edge.name, EdgeKey(edge.name, "k", "v", NOW, None), NOW)
        batch = _incoming(edge)
        results = await asyncio.gather(
            *(s.apply_batch(batch, NOW, secrets.token_hex(8)) for s in stores)
        )
        assert sorted(r.outcome.value for r in results) == ["accepted", "duplicate"]
        assert sum(r.records_stored for r in results) == 5
        assert await stores[1].unsequenced_batch_ids(10) == [batch.batch_id]
        assert (await stores[1].chain_head(edge.name)) is not None
        assert (await stores[0].list_incidents(None)) == []
        again = await stores[1].apply_batch(batch, NOW, secrets.token_hex(8))
        assert again.outcome is Outcome.DUPLICATE
    finally:
        for store in stores:
            await store.close()


async def test_a_read_after_a_write_sees_it_under_concurrent_reads(
    store_dsn: str | None, tmp_path: Path
) -> None:
    """Read-your-writes while other reads overlap. SQLite's reader connection stays in one read
    transaction (one snapshot, WAL) while any of its statements is open; reads interleaved by
    concurrent tasks once kept a statement open at every moment, so a read that began after a
    commit answered from the snapshot before it (the sequencer then appended leaves it had
    already appended, and died: 'a leaf to append is unknown or already in the log')."""
    store = await open_store(coordinator_config(tmp_path, db=store_dsn))
    stop = asyncio.Event()

    async def keep_reading() -> None:
        while not stop.is_set():
            await store._all("SELECT version FROM schema_migrations")
            await store.count_admin_tokens()

    readers = [asyncio.create_task(keep_reading()) for _ in range(8)]
    try:
        await asyncio.sleep(0.01)
        stale = []
        for _ in range(40):
            token_hash = secrets.token_hex(16)
            await store.replace_admin_token(token_hash, NOW)
            if not await store.has_admin_token(token_hash):
                stale.append(token_hash)
        assert stale == []
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await store.close()


async def _page_size(store: SqliteStore) -> int:
    rows = await store._all("PRAGMA page_size")
    return int(rows[0][0])


async def test_a_new_sqlite_database_has_16_kib_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    """New databases get 16 KiB pages (less CPU per stored batch, billing/store/sqlite.py);
    SQLite fixes a file's page size at its first write, so a database made with SQLite's
    default 4 KiB pages opens, migrates and serves as before."""
    fresh = await SqliteStore.open(tmp_path / "fresh.db")
    try:
        assert await _page_size(fresh) == 16 * 1024
    finally:
        await fresh.close()
    old_path = tmp_path / "old.db"
    with sqlite3.connect(old_path) as old:
        old.execute("PRAGMA page_size=4096")
        old.execute("CREATE TABLE before_cachet (x INTEGER)")
    reopened = await SqliteStore.open(old_path)
    try:
        assert await _page_size(reopened) == 4096
        assert await _applied_versions(reopened) == [m.version for m in MIGRATIONS]
    finally:
        await reopened.close()


async def test_migration_7_moves_each_batchs_records_json_to_its_own_table(
    store_dsn: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of migration 6 held the records JSON in the batches row; after migration 7
    it is in batch_records, and the batch, its receipts' record and the ledger's reads find it
    as before."""
    config = coordinator_config(tmp_path, db=store_dsn)
    module = "billing.store.sqlite" if store_dsn is None else "billing.store.postgres"
    batch = _incoming(Edge("edge-a", signing_key("edge-a")))
    h = batch.header
    with monkeypatch.context() as old:
        old.setattr(f"{module}.MIGRATIONS", tuple(m for m in MIGRATIONS if m.version < 7))
        store = await open_store(config)
        sql = (
            "INSERT INTO batches (batch_id, edge, seq, header_json, signature, record_count,"
            " first_ts, last_ts, received_at, records_json) VALUES (?,?,?,?,?,?,?,?,?,?)"
        )
        params = (batch.batch_id, h.edge, h.seq, header_canonical_bytes(h).decode(),
                  base64.b64encode(batch.signature).decode(), h.count, h.first_ts, h.last_ts,
                  NOW, batch.records_json)  # fmt: skip
        record = (batch.records[0].request_id, batch.batch_id, h.edge, h.first_ts)
        try:
            async with store._transaction() as db:
                await _execute(db, store_dsn, sql, params)
                await _execute(db, store_dsn, _OLD_RECORD, record)
        finally:
            await store.close()
    store = await open_store(config)
    try:
        assert await _applied_versions(store) == [m.version for m in MIGRATIONS]
        stored = await store.find_batch(batch.batch_id)
        assert stored is not None and stored.records_json == batch.records_json
        location = await store.find_record(batch.records[0].request_id)
        assert location is not None and location.batch.records_json == batch.records_json
        columns = await store._all("SELECT * FROM batches WHERE batch_id = ?", (batch.batch_id,))
        assert batch.records_json not in [str(v) for v in columns[0]]  # stored once
    finally:
        await store.close()


_OLD_RECORD = (
    "INSERT INTO records (request_id, batch_id, record_index, edge, ts, method, status, cache,"
    " tier, bytes, origin_bytes, sample_rate, use_kind)"
    " VALUES (?, ?, 0, ?, ?, 'GET', 200, 'hit', 'memory', 1, 0, '1', 'serve')"
)


_V7_BATCH = (
    "INSERT INTO batches (batch_id, edge, seq, header_json, signature, record_count, first_ts,"
    " last_ts, received_at) VALUES (?,?,?,?,?,?,?,?,?)"
)
_V7_RECORD = (
    "INSERT INTO records (request_id, batch_id, record_index, edge, ts, upstream_of, method,"
    " status, cache, tier, bytes, origin_bytes, sample_rate, use_kind)"
    " VALUES (?, ?, ?, ?, ?, ?, 'GET', 200, 'hit', 'memory', 1, 0, '1', 'serve')"
)


async def test_migration_8_keeps_each_records_dedup_winner(
    store_dsn: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of migration 7 held every winning record as a wide row; migration 8 keeps
    only the request-id dedup (record_ids, by batch_ref): the same copies win, receipts find
    them, and ingest after the migration dedups against the migrated ids."""
    config = coordinator_config(tmp_path, db=store_dsn)
    module = "billing.store.sqlite" if store_dsn is None else "billing.store.postgres"
    parent, child = Edge("edge-p", signing_key("edge-p")), Edge("edge-c", signing_key("edge-c"))
    upstream = parent.seal([parent.record("r1", upstream_of="edge-c"), parent.record("r2"),
                            parent.record("r4", upstream_of="edge-c")])  # fmt: skip
    served = child.seal([child.record("r1")])
    batches = [incoming_of(upstream), incoming_of(served)]
    # what migration 7's ingest stored: r1's winner is the serving edge's copy, r2 and r4 the
    # parent's (r4 an upstream_of copy, which a serving copy may still replace)
    winners = [("r1", batches[1], 0, None), ("r2", batches[0], 1, None),
               ("r4", batches[0], 2, "edge-c")]  # fmt: skip
    with monkeypatch.context() as old:
        old.setattr(f"{module}.MIGRATIONS", tuple(m for m in MIGRATIONS if m.version < 8))
        store = await open_store(config)
        try:
            async with store._transaction() as db:
                for b in batches:
                    h = b.header
                    params = (b.batch_id, h.edge, h.seq, header_canonical_bytes(h).decode(),
                              base64.b64encode(b.signature).decode(), h.count, h.first_ts,
                              h.last_ts, NOW)  # fmt: skip
                    await _execute(db, store_dsn, _V7_BATCH, params)
                    await _execute(db, store_dsn, "INSERT INTO batch_records VALUES (?, ?)",
                                   (b.batch_id, b.records_json))  # fmt: skip
                for request_id, b, index, upstream_of in winners:
                    record = (request_id, b.batch_id, index, b.header.edge,
                              b.records[index].ts, upstream_of)  # fmt: skip
                    await _execute(db, store_dsn, _V7_RECORD, record)
        finally:
            await store.close()
    store = await open_store(config)
    try:
        assert await _applied_versions(store) == [m.version for m in MIGRATIONS]
        dedup: list[Any] = await store._all(
            "SELECT d.request_id, b.batch_id, d.record_index, d.served FROM record_ids d"
            " JOIN batches b ON b.batch_ref = d.batch_ref ORDER BY d.request_id"
        )
        assert [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in dedup] == [
            ("r1", batches[1].batch_id, 0, 1),
            ("r2", batches[0].batch_id, 1, 1),
            ("r4", batches[0].batch_id, 2, 0),
        ]
        location = await store.find_record("r1")
        assert location is not None and location.batch.batch_id == batches[1].batch_id
        assert location.record_index == 0
        # ingest goes on: a new batch_ref, and another copy of r2 is a duplicate
        (late,) = await enrolled(store, "edge-n")
        batch = incoming_of(late.seal([late.record("r2"), late.record("r3"), late.record("r4")]))
        result = await store.apply_batch(batch, NOW, secrets.token_hex(8))
        assert (result.outcome, result.records_stored, result.records_duplicate) == (
            Outcome.ACCEPTED, 2, 1,
        )  # fmt: skip
        refs = await store._all("SELECT batch_id, batch_ref FROM batches ORDER BY batch_ref")
        assert [r[0] for r in refs] == [b.batch_id for b in batches] + [batch.batch_id]
        location = await store.find_record("r2")
        assert location is not None and location.batch.batch_id == batches[0].batch_id
        location = await store.find_record("r4")  # the serving copy replaced the upstream one
        assert location is not None and location.batch.batch_id == batch.batch_id
    finally:
        await store.close()
