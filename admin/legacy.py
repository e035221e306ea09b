"""Upgrade from a UI that ran beside a PostgreSQL coordinator with its tables in a side SQLite
file (``admin-ui.db`` in the data folder, before admin migration 2).

At start on PostgreSQL, if that file exists and this database has no record of importing it, its
users (password hashes as they are) and its audit trail are copied into PostgreSQL in one
transaction, and ``admin_imports`` records the file so it is never imported again (even if a user
is later removed, or several coordinators start at once: the transaction holds the migrations'
advisory lock). A name that already exists in PostgreSQL keeps its PostgreSQL row. Sessions are
not copied: users log in once more. The file is left as it was; the log line says it may be
deleted. A file that can't be read is logged and skipped (the coordinator still starts) and tried
again at the next start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from admin.db import POSTGRESQL, AdminDb
from admin.migrations import ADMIN_MIGRATION_LOCK

LEGACY_FILE = "admin-ui.db"
_log = logging.getLogger("cachet.admin")
_USER_COLUMNS = "username, role, account, password_hash, created_at, updated_at"
_AUDIT_COLUMNS = "audit_id, at, actor, action, target, detail"


@dataclass(frozen=True, slots=True)
class LegacyImport:
    source: str
    users: int  # copied
    users_kept: int  # already in PostgreSQL under the same name: left as they were
    audit_entries: int


async def _read_legacy(uri: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The users and audit entries of the side file, opened read-only."""
    async with aiosqlite.connect(f"{uri}?mode=ro", uri=True) as db:
        async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
            tables = {str(row[0]) for row in await cursor.fetchall()}
        users: list[tuple[object, ...]] = []
        audit: list[tuple[object, ...]] = []
        if "ui_users" in tables:
            async with db.execute(f"SELECT {_USER_COLUMNS} FROM ui_users") as cursor:  # noqa: S608 - constant columns
                users = [tuple(row) for row in await cursor.fetchall()]
        if "admin_audit" in tables:
            async with db.execute(f"SELECT {_AUDIT_COLUMNS} FROM admin_audit") as cursor:  # noqa: S608 - constant columns
                audit = [tuple(row) for row in await cursor.fetchall()]
    return users, audit


async def import_legacy_file(db: AdminDb, data_dir: Path, now: str) -> LegacyImport | None:
    """Copy ``data_dir/admin-ui.db`` into ``db`` once (PostgreSQL only); what was copied, or
    None when there is nothing to do."""
    path = data_dir / LEGACY_FILE
    if db.backend != POSTGRESQL or not path.is_file():
        return None
    absolute = path.absolute()
    source = str(absolute)
    if await db.fetch("SELECT 1 FROM admin_imports WHERE source = ?", (source,)):
        return None
    try:
        users, audit = await _read_legacy(absolute.as_uri())
    except aiosqlite.Error as exc:  # not recorded: a repaired file is imported at the next start
        _log.error(
            "admin UI: cannot import %s (%s); its users can't log in until it is", source, exc
        )
        return None
    async with db.transaction(ADMIN_MIGRATION_LOCK) as tx:
        if await tx.fetch("SELECT 1 FROM admin_imports WHERE source = ?", (source,)):
            return None  # another coordinator imported it while we read the file
        copied = 0
        for user in users:
            copied += await tx.execute(
                f"INSERT INTO ui_users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
                " ON CONFLICT (username) DO NOTHING",
                user,
            )
        entries = 0
        for entry in audit:
            entries += await tx.execute(
                f"INSERT INTO admin_audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
                " ON CONFLICT (audit_id) DO NOTHING",
                entry,
            )
        await tx.execute(
            "INSERT INTO admin_imports (source, imported_at, users, audit_entries)"
            " VALUES (?, ?, ?, ?)",
            (source, now, copied, entries),
        )
    result = LegacyImport(source, copied, len(users) - copied, entries)
    _log.info(
        "admin UI: imported %d users and %d audit entries from %s into PostgreSQL"
        " (%d names already there were kept; sessions were not copied: users log in again);"
        " the file is no longer used and may be deleted",
        result.users,
        result.audit_entries,
        source,
        result.users_kept,
    )
    return result
