"""Which ``LedgerStore`` goes with the coordinator's store: the ledger lives in the same
database, so it rides on the same backend's connections."""

from __future__ import annotations

from billing.ledger.postgres import PostgresLedgerStore
from billing.ledger.sqlite import SqliteLedgerStore
from billing.ledger.store import LedgerStore
from billing.store.base import Store
from billing.store.postgres import PostgresStore
from billing.store.sqlite import SqliteStore


def ledger_store_for(store: Store) -> LedgerStore:
    if isinstance(store, SqliteStore):
        return SqliteLedgerStore(store)
    if isinstance(store, PostgresStore):
        return PostgresLedgerStore(store)
    raise RuntimeError(f"no ledger backend for {type(store).__name__}")
