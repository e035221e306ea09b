"""Versioned schema migrations, in SQL that both SQLite and PostgreSQL run.

Rules that keep them portable: TEXT for strings, hex hashes and RFC 3339 timestamps (string order
is time order); BIGINT for counts, sizes and indexes; no AUTOINCREMENT/SERIAL (ids are made by the
application); ``ON CONFLICT`` for upserts; no BLOB/BYTEA (hashes are hex). Each migration runs in
one transaction together with its ``schema_migrations`` row. Append new versions; never edit an
applied one. The manifest registry adds version 2 (creators, manifests, change feed).
"""

from __future__ import annotations

from dataclasses import dataclass

from billing.ledger.schema import LEDGER_STATEMENTS, LEDGER_V5, LEDGER_V6

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    # run after ``statements`` on PostgreSQL only (what SQLite does otherwise: see the migration)
    postgres_statements: tuple[str, ...] = ()


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

# The manifest registry (docs/design/registry.md). A lineage is named by the id of its version 1;
# ``supersedes`` is UNIQUE (NULLs repeat in both engines), so a version has at most one successor
# and the lineage's head is the one row without one. ``registry_events.seq`` is the change feed's
# cursor, assigned by the writer as MAX(seq) + 1 inside the writing transaction.
_V2 = (
    """CREATE TABLE creators (
        account TEXT PRIMARY KEY, created_at TEXT NOT NULL)""",
    """CREATE TABLE creator_keys (
        account TEXT NOT NULL, key_id TEXT NOT NULL, verifier TEXT NOT NULL,
        added_at TEXT NOT NULL, revoked_at TEXT, PRIMARY KEY (account, key_id))""",
    """CREATE TABLE creator_tokens (
        token_hash TEXT PRIMARY KEY, account TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE manifests (
        manifest_id TEXT PRIMARY KEY, creator TEXT NOT NULL, key_id TEXT NOT NULL,
        lineage TEXT NOT NULL, version BIGINT NOT NULL, supersedes TEXT UNIQUE,
        signed_json TEXT NOT NULL, published_at TEXT NOT NULL, superseded_at TEXT,
        revoked_at TEXT, effective_at TEXT, revoke_reason TEXT,
        UNIQUE (lineage, version))""",
    "CREATE INDEX manifests_by_creator ON manifests (creator, lineage, version)",
    """CREATE TABLE manifest_items (
        manifest_id TEXT NOT NULL, item_index BIGINT NOT NULL, content_id TEXT NOT NULL,
        path TEXT NOT NULL, size_bytes BIGINT NOT NULL, media_type TEXT NOT NULL,
        PRIMARY KEY (manifest_id, item_index))""",
    "CREATE INDEX manifest_items_by_content ON manifest_items (content_id)",
    "CREATE INDEX manifest_items_by_path ON manifest_items (path)",
    """CREATE TABLE registry_events (
        seq BIGINT PRIMARY KEY, kind TEXT NOT NULL, at TEXT NOT NULL,
        payload_json TEXT NOT NULL)""",
)

# The admin UI and creator portal (issue 7, admin/store.py): UI accounts (role admin or creator,
# scrypt hashes), sessions (the SHA-256 of the cookie value, with the CSRF token) and the audit
# trail of admin actions.
_V3 = (
    """CREATE TABLE ui_users (
        username TEXT PRIMARY KEY, role TEXT NOT NULL, account TEXT,
        password_hash TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE ui_sessions (
        session_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL)""",
    "CREATE INDEX ui_sessions_by_user ON ui_sessions (username)",
    """CREATE TABLE admin_audit (
        audit_id TEXT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        target TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX admin_audit_by_time ON admin_audit (at, audit_id)",
)

# The ingest layout (docs/design/coordinator.md, Performance).
# - Ingest writes three B-trees per record instead of four: the records' ts index served only
#   the admin UI's "since" sums, which now narrow to the batches whose last record is that
#   recent (a record is never later than its batch's last_ts) and read them through
#   records_by_batch: ~0.4 µs less CPU per record stored.
# - A batch's records JSON (~440 KB per 1,000 records) moves out of its batches row, which the
#   log sequencer updates once (log_index): SQLite rewrites a whole row, overflow pages and
#   all, when an update changes its size, so every batch's JSON was written twice (~0.6 µs
#   per record). batch_records rows are written once and never updated.
_V7 = (
    "DROP INDEX records_by_ts",
    "CREATE INDEX batches_by_last_ts ON batches (last_ts)",
    "CREATE TABLE batch_records (batch_id TEXT PRIMARY KEY, records_json TEXT NOT NULL)",
    "INSERT INTO batch_records (batch_id, records_json) SELECT batch_id, records_json FROM batches",
    "ALTER TABLE batches DROP COLUMN records_json",
)

# Records kept once (docs/design/coordinator.md, Performance, ninth session). A batch's records
# JSON (batch_records) is the only copy of its records: billing, receipts and the admin read the
# fields from it. What stays per record is the request-id dedup: record_ids names, for each
# request id, the batch and index of the copy that won (the serving edge's copy over an
# upstream_of one, else the first), by the batch's integer batch_ref rather than its 64-hex id
# (~0.8 µs less per record stored). The wide records table (17 columns bound from Python, two
# indexes) cost over half of ingest's CPU. batch_ref: PostgreSQL draws it from a sequence
# (several ingest workers); SQLite's one writer takes MAX + 1 in the writing transaction.
_V8 = (
    "ALTER TABLE batches ADD COLUMN batch_ref BIGINT",
    """UPDATE batches SET batch_ref = numbered.ref FROM (SELECT batch_id,
        ROW_NUMBER() OVER (ORDER BY received_at, batch_id) AS ref FROM batches) AS numbered
        WHERE numbered.batch_id = batches.batch_id""",
    "CREATE UNIQUE INDEX batches_by_ref ON batches (batch_ref)",
    """CREATE TABLE record_ids (
        request_id TEXT PRIMARY KEY, batch_ref BIGINT NOT NULL, record_index BIGINT NOT NULL,
        served INTEGER NOT NULL)""",
    "CREATE INDEX record_ids_by_batch ON record_ids (batch_ref, record_index)",
    """INSERT INTO record_ids (request_id, batch_ref, record_index, served)
        SELECT r.request_id, b.batch_ref, r.record_index,
        CASE WHEN r.upstream_of IS NULL THEN 1 ELSE 0 END
        FROM records r JOIN batches b ON b.batch_id = r.batch_id""",
    "DROP TABLE records",
)
_V8_POSTGRES = (
    "CREATE SEQUENCE batch_refs",
    "SELECT setval('batch_refs', (SELECT COALESCE(MAX(batch_ref), 0) + 1 FROM batches), false)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "edges, ingest and the Merkle log", _V1),
    Migration(2, "manifest registry: creators, manifests, change feed", _V2),
    Migration(3, "admin UI: users, sessions, audit trail", _V3),
    Migration(4, "billing ledger: usage, periods, statements, pricing", LEDGER_STATEMENTS),
    Migration(5, "edge counters: records a full spool dropped", LEDGER_V5),
    Migration(6, "statements as leaves of the global log", LEDGER_V6),
    Migration(7, "ingest layout: records JSON in its own table, no records ts index", _V7),
    Migration(8, "records kept once: a narrow request-id dedup table", _V8, _V8_POSTGRES),
)
