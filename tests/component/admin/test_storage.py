"""The admin's tables on the coordinator's own database (issue 9): versioned migrations on
SQLite and PostgreSQL, the one-time import of a side ``admin-ui.db`` into PostgreSQL, and the
dashboard's queries reading the real traffic on both backends."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta
from pathlib import Path

import pytest

from admin.db import POSTGRESQL, AdminDb, DuplicateKeyError, connect
from admin.legacy import LEGACY_FILE, import_legacy_file
from admin.migrations import ADMIN_MIGRATIONS, migrate, schema_version
from admin.passwords import hash_password, is_password_match
from admin.queries import CoordinatorQueries
from admin.store import ADMIN, CREATOR, AdminStore, AuditEntry, UiUser
from billing.config import CoordinatorConfig
from billing.service import open_store
from billing.store.sqlite import SqliteStore
from provenance.records import format_timestamp
from tests.component.admin.conftest import UI
from tests.component.billing.fleet import coordinator_config as make_config
from tests.component.billing.fleet import enrolled, incoming_of

pytestmark = pytest.mark.asyncio
NOW = "2026-11-27T12:00:00.000Z"
LATER = "2026-11-28T12:00:00.000Z"


async def _coordinator_db(config: CoordinatorConfig) -> AdminDb:
    """The coordinator's database with its own migrations applied (as at its start)."""
    await (await open_store(config)).close()
    return await connect(config)


async def test_migrations_apply_each_version_once_then_nothing(
    store_dsn: str | None, tmp_path: Path
) -> None:
    db = await _coordinator_db(make_config(tmp_path, db=store_dsn))
    try:
        # Version 1 is the baseline of tables billing's migration 3 already made: no error.
        assert await migrate(db, NOW) == [m.version for m in ADMIN_MIGRATIONS]
        assert await migrate(db, LATER) == []
        assert await schema_version(db) == ADMIN_MIGRATIONS[-1].version
        rows = await db.fetch("SELECT version, applied_at FROM admin_schema_migrations")
        assert {(int(v), str(a)) for v, a in rows} == {(m.version, NOW) for m in ADMIN_MIGRATIONS}
    finally:
        await db.close()


async def test_coordinators_starting_together_apply_each_version_once(
    store_dsn: str | None, tmp_path: Path
) -> None:
    config = make_config(tmp_path, db=store_dsn)
    await (await open_store(config)).close()
    first, second = await connect(config), await connect(config)
    try:
        applied = await asyncio.gather(migrate(first, NOW), migrate(second, NOW))
        assert sorted(applied[0] + applied[1]) == [m.version for m in ADMIN_MIGRATIONS]
    finally:
        await first.close()
        await second.close()


async def test_store_keeps_users_sessions_and_audit(store_dsn: str | None, tmp_path: Path) -> None:
    config = make_config(tmp_path, db=store_dsn)
    await (await open_store(config)).close()
    store = await AdminStore.open(config, NOW)
    try:
        user = UiUser("alice", CREATOR, "alice", "scrypt$hash", NOW)
        await store.add_user(user)
        with pytest.raises(DuplicateKeyError):  # the driver's error never leaks out as is
            await store.db.execute(
                "INSERT INTO ui_users (username, role, account, password_hash, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                ("alice", CREATOR, "alice", "x", NOW, NOW),
            )
        await store.add_session("h1", "alice", "csrf", NOW, LATER)
        assert (await store.find_session("h1", NOW)) is not None
        assert await store.find_session("h1", LATER) is None  # expired at LATER
        assert await store.set_password("alice", "scrypt$new", NOW)
        assert await store.find_session("h1", NOW) is None  # a new password ends sessions
        assert not await store.set_password("nobody", "scrypt$new", NOW)
        found = await store.find_user("alice")
        assert found is not None and found.password_hash == "scrypt$new"
        for n in range(3):
            await store.add_audit(AuditEntry(f"a{n}", f"2026-11-27T12:00:0{n}.000Z", "root",
                                             "login", "", ""))  # fmt: skip
        assert [e.audit_id for e in await store.list_audit(0, 2)] == ["a2", "a1"]
        assert await store.count_audit() == 3
    finally:
        await store.close()


def _write_legacy_file(path: Path, users: list[UiUser], audit: list[AuditEntry]) -> None:
    """A side file as the UI made it on PostgreSQL before: the whole SQLite schema, UI rows."""

    async def write() -> None:
        await (await SqliteStore.open(path)).close()
        legacy = CoordinatorConfig(data=str(path.parent), db=f"sqlite:///{path}")
        store = await AdminStore.open(legacy, NOW)
        try:
            for user in users:
                await store.add_user(user)
            for entry in audit:
                await store.add_audit(entry)
            await store.add_session("old-session", users[0].username, "csrf", NOW, LATER)
        finally:
            await store.close()

    asyncio.run(write())


# The side admin-ui.db existed only beside a PostgreSQL coordinator: these run there only.
only_postgresql = pytest.mark.parametrize("store_dsn", ["postgresql"], indirect=True)


@pytest.fixture
def postgresql_dsn(store_dsn: str | None) -> str:
    assert store_dsn is not None
    return store_dsn


@only_postgresql
async def test_a_side_admin_ui_db_is_imported_into_postgresql_once(
    postgresql_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    root_hash = hash_password("root's long password", bytes(16), 10)
    users = [
        UiUser("root", ADMIN, None, root_hash, NOW),
        UiUser("alice", CREATOR, "alice", "scrypt$from-the-file", NOW),
    ]
    audit = [AuditEntry("a1", NOW, "root", "revoke-key", "edge-1/k1", "")]
    await asyncio.to_thread(_write_legacy_file, data / LEGACY_FILE, users, audit)
    config = make_config(data, db=postgresql_dsn)
    await (await open_store(config)).close()
    db = await connect(config)
    try:
        await migrate(db, NOW)
        await db.execute(  # alice exists in PostgreSQL already: her row there wins
            "INSERT INTO ui_users (username, role, account, password_hash, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            ("alice", CREATOR, "alice", "scrypt$in-postgresql", NOW, NOW),
        )
    finally:
        await db.close()

    with caplog.at_level(logging.INFO, logger="cachet.admin"):
        store = await AdminStore.open(config, LATER)
    try:
        root = await store.find_user("root")
        assert root is not None and root.role == ADMIN
        assert is_password_match("root's long password", root.password_hash)  # hash as it was
        alice = await store.find_user("alice")
        assert alice is not None and alice.password_hash == "scrypt$in-postgresql"
        assert [(e.audit_id, e.action) for e in await store.list_audit(0, 10)] == [
            ("a1", "revoke-key")
        ]
        assert await store.find_session("old-session", NOW) is None  # log in again
        rows = await store.db.fetch("SELECT source, imported_at, users FROM admin_imports")
        assert [tuple(r) for r in rows] == [(str((data / LEGACY_FILE).absolute()), LATER, 1)]
        assert "imported 1 users and 1 audit entries" in caplog.text
        assert "may be deleted" in caplog.text
        # Once: a user removed afterwards does not come back at the next start.
        await store.db.execute("DELETE FROM ui_users WHERE username = ?", ("root",))
    finally:
        await store.close()
    again = await AdminStore.open(config, LATER)
    try:
        assert await again.find_user("root") is None
        assert await import_legacy_file(again.db, data, LATER) is None
    finally:
        await again.close()
    assert (data / LEGACY_FILE).exists()  # left for the operator to delete


@only_postgresql
async def test_an_unreadable_side_file_is_logged_and_tried_again(
    postgresql_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / LEGACY_FILE).write_bytes(b"not a database, " * 100)
    config = make_config(data, db=postgresql_dsn)
    await (await open_store(config)).close()
    with caplog.at_level(logging.INFO, logger="cachet.admin"):
        store = await AdminStore.open(config, NOW)  # the coordinator still starts
    try:
        assert "cannot import" in caplog.text and LEGACY_FILE in caplog.text
        assert await store.db.fetch("SELECT source FROM admin_imports") == []
    finally:
        await store.close()


@only_postgresql
async def test_a_side_file_without_ui_tables_is_recorded_with_nothing_copied(
    postgresql_dsn: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / LEGACY_FILE).touch()  # an empty file is an empty SQLite database
    config = make_config(data, db=postgresql_dsn)
    await (await open_store(config)).close()
    store = await AdminStore.open(config, NOW)
    try:
        rows = await store.db.fetch("SELECT users, audit_entries FROM admin_imports")
        assert [tuple(r) for r in rows] == [(0, 0)]
    finally:
        await store.close()


async def test_a_side_file_beside_a_sqlite_coordinator_is_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    users = [UiUser("ghost", ADMIN, None, "scrypt$x", NOW)]
    await asyncio.to_thread(_write_legacy_file, data / LEGACY_FILE, users, [])
    config = make_config(data)
    await (await open_store(config)).close()
    store = await AdminStore.open(config, NOW)
    try:
        assert store.db.backend != POSTGRESQL
        assert await store.find_user("ghost") is None
    finally:
        await store.close()


async def test_dashboard_queries_read_the_coordinators_traffic(ui: UI) -> None:
    """The seeded batches (3 + 4 records of edge-1, one checkpoint per batch) are what the
    dashboard's queries see, on SQLite and on PostgreSQL alike."""
    queries: CoordinatorQueries = ui.ctx.queries
    since = "2026-01-01T00:00:00.000Z"
    traffic = await queries.traffic_by_hour(since)
    assert sum(t.requests for t in traffic) == 7
    assert sum(t.hits for t in traffic) == 7
    assert all(isinstance(t.bytes_served, int) for t in traffic)
    batches = await queries.batches_by_hour(since)
    assert [(b.batches, b.records) for b in batches] == [(2, 7)]
    assert [(c.creator, c.requests) for c in await queries.top_creators(since, 10)] == [
        ("alice", 1),
        ("bob", 1),
    ]
    assert await queries.count_checkpoints() >= 1
    checkpoints = await queries.checkpoints(0, 10)
    assert checkpoints[0].size == 2
    alice = await queries.manifests_of("alice")
    assert [m.version for m in alice] == [1, 2]
    assert [m.manifest_id for m in await queries.lineage_versions(alice[0].lineage)] == [
        m.manifest_id for m in alice
    ]


async def test_dashboard_since_cuts_inside_a_batch(ui: UI) -> None:
    """Records have no ts index (migration 7): the "since" sums narrow to batches by their last
    record's ts, then filter records by their own. A moment inside the first seeded batch
    (records 1-3, the second holds 4-7) counts the records from it on, not the whole batch."""
    queries: CoordinatorQueries = ui.ctx.queries
    edge = ui.seeded.edge
    second_record = edge.epoch - timedelta(seconds=60) + timedelta(milliseconds=2)
    since = format_timestamp(second_record)
    assert sum(t.requests for t in await queries.traffic_by_hour(since)) == 6
    top = [(c.creator, c.requests) for c in await queries.top_creators(since, 10)]
    assert top == [("bob", 1)]  # alice's record is the batch's first, before the moment
    after_all = format_timestamp(second_record + timedelta(seconds=1))
    assert await queries.traffic_by_hour(after_all) == []
    assert await queries.top_creators(after_all, 10) == []


async def test_dashboard_sums_follow_a_winner_that_moves_to_a_newer_batch(
    store_dsn: str | None, tmp_path: Path
) -> None:
    """The dashboard keeps the sums of batches wholly inside its window between reloads. A
    parent's upstream_of copy counted there, then replaced by the serving edge's copy in a newer
    batch, is counted once afterwards, with the serving copy's bytes (docs/design/
    coordinator.md: records kept once)."""
    config = make_config(tmp_path, db=store_dsn)
    store = await open_store(config)
    db = await connect(config)
    try:
        queries = CoordinatorQueries(db)
        parent, child = await enrolled(store, "edge-p", "edge-c")
        upstream = parent.seal([parent.record("r1", upstream_of="edge-c", bytes=10),
                                parent.record("r2", bytes=20)])  # fmt: skip
        await store.apply_batch(incoming_of(upstream), NOW, secrets.token_hex(8))
        since = "2026-01-01T00:00:00.000Z"
        for _ in range(2):  # read, then served from what the first read kept
            traffic = await queries.traffic_since(since)
            assert [(t.requests, t.bytes_served) for t in traffic.by_hour()] == [(2, 30)]
        served = child.seal([child.record("r1", bytes=15)])
        await store.apply_batch(incoming_of(served), NOW, secrets.token_hex(8))
        traffic = await queries.traffic_since(since)
        assert sum(t.requests for t in traffic.by_hour()) == 2
        assert sum(t.bytes_served for t in traffic.by_hour()) == 35
        assert await queries.traffic_by_hour(since) == traffic.by_hour()
    finally:
        await db.close()
        await store.close()
