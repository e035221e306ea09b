"""The admin's migrations keep the rules of billing/store/migrations.py (versions 1..n in order,
portable SQL both engines run) and never reuse a name of the coordinator's tables."""

from __future__ import annotations

import re

from admin.migrations import ADMIN_MIGRATIONS, CREATE_ADMIN_MIGRATIONS_TABLE
from billing.store.migrations import MIGRATIONS

_NOT_PORTABLE = re.compile(r"AUTOINCREMENT|SERIAL|BLOB|BYTEA|DATETIME|JSONB|\$\d", re.IGNORECASE)
_CREATE_TABLE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)


def test_versions_are_one_to_n_in_order() -> None:
    assert [m.version for m in ADMIN_MIGRATIONS] == list(range(1, len(ADMIN_MIGRATIONS) + 1))
    assert len({m.name for m in ADMIN_MIGRATIONS}) == len(ADMIN_MIGRATIONS)


def test_sql_is_the_portable_subset() -> None:
    for migration in ADMIN_MIGRATIONS:
        for statement in migration.statements:
            assert not _NOT_PORTABLE.search(statement), (migration.version, statement)
            assert "?" not in statement  # placeholders are numbered on PostgreSQL
    assert "admin_schema_migrations" in CREATE_ADMIN_MIGRATIONS_TABLE


def test_the_baseline_only_repeats_billings_ui_tables_and_later_tables_are_new() -> None:
    billing_tables = {
        name for m in MIGRATIONS for s in m.statements for name in _CREATE_TABLE.findall(s)
    }
    baseline = {name for s in ADMIN_MIGRATIONS[0].statements for name in _CREATE_TABLE.findall(s)}
    assert baseline == {"ui_users", "ui_sessions", "admin_audit"} <= billing_tables
    assert all("IF NOT EXISTS" in s for s in ADMIN_MIGRATIONS[0].statements)
    for migration in ADMIN_MIGRATIONS[1:]:
        for statement in migration.statements:
            assert not set(_CREATE_TABLE.findall(statement)) & billing_tables
