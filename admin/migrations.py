"""The admin UI's versioned schema migrations, on the coordinator's database (SQLite or
PostgreSQL), in the portable SQL of ``billing/store/migrations.py``, recorded in a table of their
own (``admin_schema_migrations``) so the admin's versions never collide with the coordinator's.

Applied at start (``AdminStore.open``, after the coordinator's own migrations) and by
``cachet admin create-user``. Each version runs in one transaction with its row; on PostgreSQL
that transaction holds an advisory lock, so coordinators starting together apply it once.
Append new versions; never edit an applied one.

Version 1 is the baseline: the tables the coordinator's migration 3 has created on every database
since the UI exists (``ui_users``, ``ui_sessions``, ``admin_audit``), with ``IF NOT EXISTS`` so it
only records itself there. From here on the admin's schema changes live in this file.
"""

from __future__ import annotations

from admin.db import AdminDb
from billing.store.migrations import Migration

# pg_advisory_xact_lock key: ASCII "cachet" + a tag of its own (billing uses 0x0001..0x0005).
ADMIN_MIGRATION_LOCK = 0x636163686574_0010

CREATE_ADMIN_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS admin_schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)

# UI accounts (role admin or creator, scrypt hashes), sessions (the SHA-256 of the cookie value,
# with the CSRF token) and the audit trail of admin actions.
_V1 = (
    """CREATE TABLE IF NOT EXISTS ui_users (
        username TEXT PRIMARY KEY, role TEXT NOT NULL, account TEXT,
        password_hash TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ui_sessions (
        session_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ui_sessions_by_user ON ui_sessions (username)",
    """CREATE TABLE IF NOT EXISTS admin_audit (
        audit_id TEXT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        target TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS admin_audit_by_time ON admin_audit (at, audit_id)",
)

# One row per side file whose users were copied into this database (admin.legacy): a UI that ran
# on PostgreSQL before version 2 kept its tables in ``admin-ui.db`` beside the log key.
_V2 = (
    """CREATE TABLE admin_imports (
        source TEXT PRIMARY KEY, imported_at TEXT NOT NULL, users BIGINT NOT NULL,
        audit_entries BIGINT NOT NULL)""",
)

ADMIN_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "admin UI baseline: users, sessions, audit trail", _V1),
    Migration(2, "admin UI: imports of a side admin-ui.db", _V2),
)


async def _pending(db: AdminDb) -> bool:
    if not await db.has_table("admin_schema_migrations"):
        return True
    rows = await db.fetch("SELECT version FROM admin_schema_migrations")
    return {int(r[0]) for r in rows} != {m.version for m in ADMIN_MIGRATIONS}


async def migrate(db: AdminDb, now: str) -> list[int]:
    """Apply the pending admin migrations, each in one transaction; the versions applied.
    With none pending it only reads (no write lock at start beside a busy coordinator)."""
    if not await _pending(db):
        return []
    async with db.transaction(ADMIN_MIGRATION_LOCK) as tx:
        await tx.execute(CREATE_ADMIN_MIGRATIONS_TABLE)
    applied = []
    for migration in ADMIN_MIGRATIONS:
        async with db.transaction(ADMIN_MIGRATION_LOCK) as tx:
            rows = await tx.fetch(
                "SELECT 1 FROM admin_schema_migrations WHERE version = ?", (migration.version,)
            )
            if rows:  # applied before, or by another coordinator while we waited for the lock
                continue
            for statement in migration.statements:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO admin_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now),
            )
        applied.append(migration.version)
    return applied


async def schema_version(db: AdminDb) -> int:
    rows = await db.fetch("SELECT COALESCE(MAX(version), 0) FROM admin_schema_migrations")
    return int(rows[0][0])
