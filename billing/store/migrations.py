"""Versioned schema migrations, in SQL that both SQLite and PostgreSQL run.

Rules that keep them portable: TEXT for strings, hex hashes and RFC 3339 timestamps (string order
is time order); BIGINT for counts, sizes and indexes; no AUTOINCREMENT/SERIAL (ids are made by the
application); ``ON CONFLICT`` for upserts; no BLOB/BYTEA (hashes are hex). Each migration runs in
one transaction together with its ``schema_migrations`` row. Append new versions; never edit an
applied one. The manifest registry adds version 2 (creators, manifests, change feed).
"""

from __future__ import annotations

from dataclasses import dataclass

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_V1 = (
    """CREATE TABLE admin_tokens (
        token_hash TEXT PRIMARY KEY, created_at TEXT NOT NULL)""",
    """CREATE TABLE enrolment_tokens (
        token_hash TEXT PRIMARY KEY, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        used_at TEXT, used_by TEXT)""",
    """CREATE TABLE edges (
        edge TEXT PRIMARY KEY, enrolled_at TEXT NOT NULL, last_seen_at TEXT,
        head_seq BIGINT, head_hash TEXT, spool_lag BIGINT,
        batches_accepted BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE edge_keys (
        edge TEXT NOT NULL, key_id TEXT NOT NULL, verifier TEXT NOT NULL,
        added_at TEXT NOT NULL, revoked_at TEXT, PRIMARY KEY (edge, key_id))""",
    """CREATE TABLE edge_rejections (
        edge TEXT NOT NULL, reason TEXT NOT NULL, batches BIGINT NOT NULL,
        PRIMARY KEY (edge, reason))""",
    """CREATE TABLE incidents (
        incident_id TEXT PRIMARY KEY, edge TEXT NOT NULL, kind TEXT NOT NULL,
        seq BIGINT NOT NULL, detail TEXT NOT NULL, header_json TEXT NOT NULL, at TEXT NOT NULL)""",
    "CREATE INDEX incidents_by_edge ON incidents (edge, at)",
    """CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY, edge TEXT NOT NULL, seq BIGINT NOT NULL,
        header_json TEXT NOT NULL, signature TEXT NOT NULL, record_count BIGINT NOT NULL,
        first_ts TEXT NOT NULL, last_ts TEXT NOT NULL, received_at TEXT NOT NULL,
        records_json TEXT NOT NULL, log_index BIGINT UNIQUE, UNIQUE (edge, seq))""",
    "CREATE INDEX batches_unsequenced ON batches (log_index, received_at, batch_id)",
    """CREATE TABLE records (
        request_id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, record_index BIGINT NOT NULL,
        edge TEXT NOT NULL, ts TEXT NOT NULL, upstream_of TEXT, method TEXT NOT NULL,
        status INTEGER NOT NULL, cache TEXT NOT NULL, tier TEXT NOT NULL,
        bytes BIGINT NOT NULL, origin_bytes BIGINT NOT NULL, content_id TEXT, creator TEXT,
        manifest TEXT, sample_rate TEXT NOT NULL, use_kind TEXT NOT NULL)""",
    "CREATE INDEX records_by_ts ON records (ts)",
    """CREATE TABLE log_nodes (
        level INTEGER NOT NULL, node_index BIGINT NOT NULL, hash TEXT NOT NULL,
        PRIMARY KEY (level, node_index))""",
    """CREATE TABLE checkpoints (
        tree_size BIGINT PRIMARY KEY, root_hash TEXT NOT NULL, note TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
)

MIGRATIONS: tuple[Migration, ...] = (Migration(1, "edges, ingest and the Merkle log", _V1),)
