"""The ledger's tables (migration 4, appended to ``billing.store.migrations``). Portable SQL only.

Usage rows are append-only: each attribution step writes its own rows (``step``: the first log
index of the step), so no row is ever read-modified-written and the big sums of squares (the
sampling variance, which outgrow BIGINT) can stay TEXT decimals. Readers sum the rows of a key.
``billed_in`` is NULL until a period close claims the row; a row is claimed once, never again.
"""

from __future__ import annotations

_USAGE_COLUMNS = """start TEXT NOT NULL, creator TEXT NOT NULL, content_id TEXT NOT NULL,
        manifest_id TEXT NOT NULL, edge TEXT NOT NULL, use_kind TEXT NOT NULL,
        sample_rate TEXT NOT NULL, step BIGINT NOT NULL, records BIGINT NOT NULL,
        hits BIGINT NOT NULL, bytes BIGINT NOT NULL, bytes_sq TEXT NOT NULL,
        cache_bytes BIGINT NOT NULL, cache_bytes_sq TEXT NOT NULL, saved BIGINT NOT NULL,
        saved_sq TEXT NOT NULL"""
_USAGE_KEY = "step, start, creator, content_id, manifest_id, edge, use_kind, sample_rate"

LEDGER_STATEMENTS: tuple[str, ...] = (
    # where the attribution runner is in the log (next log index to attribute)
    "CREATE TABLE ledger_state (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "CREATE INDEX records_by_batch ON records (batch_id)",
    f"""CREATE TABLE usage_hourly ({_USAGE_COLUMNS}, billed_in TEXT,
        PRIMARY KEY ({_USAGE_KEY}))""",
    "CREATE INDEX usage_hourly_unbilled ON usage_hourly (billed_in, start)",
    "CREATE INDEX usage_hourly_by_creator ON usage_hourly (creator, start)",
    f"CREATE TABLE usage_daily ({_USAGE_COLUMNS}, PRIMARY KEY ({_USAGE_KEY}))",
    # per hour and edge: record copies received ("copies"), "attributed", and each exclusion
    """CREATE TABLE outcome_counts (
        step BIGINT NOT NULL, hour TEXT NOT NULL, edge TEXT NOT NULL, outcome TEXT NOT NULL,
        records BIGINT NOT NULL, PRIMARY KEY (step, hour, edge, outcome))""",
    "CREATE INDEX outcome_counts_by_hour ON outcome_counts (hour)",
    """CREATE TABLE periods (
        period_id TEXT PRIMARY KEY, kind TEXT NOT NULL, start TEXT NOT NULL,
        end_at TEXT NOT NULL, closed_at TEXT NOT NULL, statements BIGINT NOT NULL,
        payout_micros BIGINT NOT NULL, currency TEXT NOT NULL, pricing_version BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL)""",
    """CREATE TABLE statements (
        period_id TEXT NOT NULL, creator TEXT NOT NULL, sha256 TEXT NOT NULL,
        leaf_index BIGINT NOT NULL UNIQUE, statement_json TEXT NOT NULL,
        PRIMARY KEY (period_id, creator))""",
    "CREATE INDEX statements_by_creator ON statements (creator, period_id)",
    """CREATE TABLE statement_checkpoints (
        tree_size BIGINT PRIMARY KEY, root_hash TEXT NOT NULL, note TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE pricing_versions (
        version BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
        pricing_json TEXT NOT NULL)""",
    # what edges report with their batches (X-Cachet-Requests-Served / -Records-Emitted; and
    # -Records-Dropped, LEDGER_V5), written by the store in the batch's own transaction
    """CREATE TABLE edge_counters (
        edge TEXT NOT NULL, seq BIGINT NOT NULL, hour TEXT NOT NULL,
        requests_served BIGINT NOT NULL, records_emitted BIGINT NOT NULL,
        PRIMARY KEY (edge, seq))""",
    # accepted batches the runner attributed: the reconciliation's "assumed" counters
    """CREATE TABLE ledger_batches (
        batch_id TEXT PRIMARY KEY, edge TEXT NOT NULL, seq BIGINT NOT NULL,
        hour TEXT NOT NULL, records BIGINT NOT NULL)""",
)

# Records an edge's full spool refused (X-Cachet-Records-Dropped): answers served, unrecorded,
# reconciled as ``spool-full``. Counters stored before this (and edges that don't send it): 0.
LEDGER_V5: tuple[str, ...] = (
    "ALTER TABLE edge_counters ADD COLUMN records_dropped BIGINT NOT NULL DEFAULT 0",
)

# Statements are leaves of the coordinator's one global log (issue 6), beside batches: a closed
# statement waits with a NULL ``log_index`` until the sequencer appends it (in the order closes
# happened), so statements closed before this migration are appended by the next sequencer run.
# ``leaf_index`` keeps its values (the close order, once the separate statements' log index);
# ``statement_checkpoints`` stays as history, nothing writes or serves it any more.
LEDGER_V6: tuple[str, ...] = (
    "ALTER TABLE statements ADD COLUMN log_index BIGINT",
    "CREATE UNIQUE INDEX statements_by_log_index ON statements (log_index)",
)
