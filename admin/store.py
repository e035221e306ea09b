"""AdminStore: the admin UI's own tables (``ui_users``, ``ui_sessions``, ``admin_audit``; their
schema is ``admin.migrations``) on the coordinator's database, SQLite or PostgreSQL, through the
admin's own connection (``admin.db``).

Durability: each write is one autocommitted statement or one transaction and is durable when
the method returns. The SQL is portable (TEXT timestamps, no AUTOINCREMENT: ids come from the
caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from admin.db import AdminDb, DuplicateKeyError, connect
from admin.legacy import import_legacy_file
from admin.migrations import migrate
from billing.config import CoordinatorConfig

ADMIN = "admin"
CREATOR = "creator"
ROLES = (ADMIN, CREATOR)


class UserExistsError(Exception):
    """A user with that name exists already."""


@dataclass(frozen=True, slots=True)
class UiUser:
    username: str
    role: str  # admin | creator
    account: str | None  # the creator account of a creator user
    password_hash: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Session:
    user: UiUser
    csrf_token: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    audit_id: str
    at: str
    actor: str
    action: str
    target: str
    detail: str


def _user(row: Sequence[Any]) -> UiUser:
    return UiUser(str(row[0]), str(row[1]), row[2], str(row[3]), str(row[4]))


_USER_COLUMNS = "u.username, u.role, u.account, u.password_hash, u.created_at"


class AdminStore:
    def __init__(self, db: AdminDb) -> None:
        self.db = db

    @classmethod
    async def open(cls, config: CoordinatorConfig, now: str) -> AdminStore:
        """Connect to the coordinator's database (already migrated by its store), apply the
        admin's pending migrations and, on PostgreSQL, import a side ``admin-ui.db`` once."""
        db = await connect(config)
        try:
            await migrate(db, now)
            await import_legacy_file(db, Path(config.data), now)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def _write(self, sql: str, params: Sequence[Any]) -> int:
        return await self.db.execute(sql, params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self.db.fetch(sql, params)

    # -- users ---------------------------------------------------------------------------------
    async def add_user(self, user: UiUser) -> None:
        """UserExistsError if the username is taken."""
        if user.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        try:
            await self._write(
                "INSERT INTO ui_users (username, role, account, password_hash, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    user.username,
                    user.role,
                    user.account,
                    user.password_hash,
                    user.created_at,
                    user.created_at,
                ),
            )
        except DuplicateKeyError:
            raise UserExistsError(user.username) from None

    async def set_password(self, username: str, password_hash: str, now: str) -> bool:
        """Replace a user's hash and end its sessions; False if there is no such user."""
        async with self.db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE ui_users SET password_hash = ?, updated_at = ? WHERE username = ?",
                (password_hash, now, username),
            )
            await tx.execute("DELETE FROM ui_sessions WHERE username = ?", (username,))
        return changed == 1

    async def find_user(self, username: str) -> UiUser | None:
        rows = await self._all(
            f"SELECT {_USER_COLUMNS} FROM ui_users u WHERE u.username = ?",  # noqa: S608
            (username,),
        )
        return _user(rows[0]) if rows else None

    async def creator_users(self) -> dict[str, str]:
        """account -> username of every creator user."""
        rows = await self._all("SELECT account, username FROM ui_users WHERE role = ?", (CREATOR,))
        return {str(a): str(u) for a, u in rows}

    # -- sessions ------------------------------------------------------------------------------
    async def add_session(
        self, session_hash: str, username: str, csrf_token: str, now: str, expires_at: str
    ) -> None:
        await self._write(
            "INSERT INTO ui_sessions (session_hash, username, csrf_token, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (session_hash, username, csrf_token, now, expires_at),
        )

    async def find_session(self, session_hash: str, now: str) -> Session | None:
        """The live session with that hash (expired ones are not found)."""
        rows = await self._all(
            f"SELECT {_USER_COLUMNS}, s.csrf_token, s.expires_at FROM ui_sessions s"  # noqa: S608 - constant columns
            " JOIN ui_users u ON u.username = s.username"
            " WHERE s.session_hash = ? AND s.expires_at > ?",
            (session_hash, now),
        )
        if not rows:
            return None
        return Session(_user(rows[0]), str(rows[0][5]), str(rows[0][6]))

    async def delete_session(self, session_hash: str) -> None:
        await self._write("DELETE FROM ui_sessions WHERE session_hash = ?", (session_hash,))

    async def delete_expired_sessions(self, now: str) -> int:
        return await self._write("DELETE FROM ui_sessions WHERE expires_at <= ?", (now,))

    # -- audit trail ---------------------------------------------------------------------------
    async def add_audit(self, entry: AuditEntry) -> None:
        await self._write(
            "INSERT INTO admin_audit (audit_id, at, actor, action, target, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (entry.audit_id, entry.at, entry.actor, entry.action, entry.target, entry.detail),
        )

    async def list_audit(self, offset: int, limit: int) -> list[AuditEntry]:
        """Newest first."""
        rows = await self._all(
            "SELECT audit_id, at, actor, action, target, detail FROM admin_audit"
            " ORDER BY at DESC, audit_id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [AuditEntry(*(str(v) for v in row)) for row in rows]

    async def count_audit(self) -> int:
        rows = await self._all("SELECT COUNT(*) FROM admin_audit")
        return int(rows[0][0])
