"""The coordinator's service functions: what the HTTP API (and later the admin UI) call.

``Coordinator.open`` opens the store (applying migrations), loads or creates the log key, and
creates an admin token on first start (returned once, so the caller can show it).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from billing.config import CoordinatorConfig
from billing.errors import UnauthorizedError
from billing.ingest.pipeline import Ingestor
from billing.log.proofs import build_receipt, consistency_proof_between, inclusion_proof_at
from billing.log.publish import publisher_from_config
from billing.log.sequencer import Sequencer
from billing.logkey import load_or_create_log_key
from billing.metrics import CoordinatorMetrics
from billing.store.base import EdgeKey, EdgeStatus, Store
from billing.store.postgres import PostgresStore
from billing.store.sqlite import SqliteStore
from billing.tokens import format_token, hash_token
from provenance.errors import FormatError
from provenance.keys import SigningKey, VerifierKey, parse_verifier_key
from provenance.receipts import Receipt
from provenance.records import format_timestamp, is_name


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EnrolmentToken:
    token: str
    expires_at: str


def prepare_data_dir(config: CoordinatorConfig) -> Path:
    """Create the data folder (0700: it holds the log key and the database)."""
    path = Path(config.data)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(config: CoordinatorConfig) -> bool:
    return config.db is not None and config.db.startswith(POSTGRES_SCHEMES)


async def open_store(config: CoordinatorConfig) -> SqliteStore | PostgresStore:
    """Open the backend the ``db`` DSN names (``postgresql://…`` or SQLite) and apply pending
    migrations."""
    prepare_data_dir(config)
    if config.db is not None and is_postgres(config):
        return await PostgresStore.open(config.db)
    return await SqliteStore.open(config.sqlite_path, config.sqlite_synchronous)


async def rotate_admin_token(store: Store, now: datetime) -> str:
    """Replace the admin token with a new one and return it (shown once, stored hashed)."""
    token = format_token("cachet-admin-", secrets.token_bytes(32))
    await store.replace_admin_token(hash_token(token), format_timestamp(now))
    return token


def _edge_key(edge: str, verifier_text: object, now: str) -> EdgeKey:
    if not is_name(edge):
        raise FormatError("edge id must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    if not isinstance(verifier_text, str):
        raise FormatError("verifier_key must be a C2SP verifier key string")
    key = parse_verifier_key(verifier_text)
    if key.name != edge:
        raise FormatError("the verifier key's name must be the edge id")
    return EdgeKey(edge, key.key_id_hex, verifier_text.strip(), now, None)


class Coordinator:
    def __init__(
        self,
        config: CoordinatorConfig,
        store: Store,
        log_key: SigningKey,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config, self.store, self.log_key, self.clock = config, store, log_key, clock
        self.metrics = CoordinatorMetrics()
        self.publisher = publisher_from_config(config, self.metrics.registry)  # None: no witness
        self.sequencer = Sequencer(
            store,
            log_key,
            config.log_origin,
            self.metrics,
            clock,
            config.checkpoint_interval_s,
            config.checkpoint_every_batches,
            lead=store.try_lead_log if isinstance(store, PostgresStore) else None,
            on_checkpoint=None if self.publisher is None else self.publisher.offer,
        )
        self.ingestor = Ingestor(store, self.metrics, config, clock, self.sequencer.notify)
        self.new_admin_token: str | None = None

    @classmethod
    async def open(
        cls, config: CoordinatorConfig, clock: Callable[[], datetime] = utc_now
    ) -> Coordinator:
        """Open storage and keys and start the sequencer."""
        store = await open_store(config)
        try:
            log_key = load_or_create_log_key(Path(config.data), config.log_origin)
            coordinator = cls(config, store, log_key, clock)
            if await store.count_admin_tokens() == 0:
                coordinator.new_admin_token = await rotate_admin_token(store, clock())
            await coordinator.sequencer.start()
        except BaseException:
            await store.close()
            raise
        return coordinator

    async def close(self) -> None:
        """Stop the sequencer and the publisher, then close the store whatever they raised: an
        open SQLite connection's thread would otherwise keep the process from exiting."""
        try:
            await self.sequencer.stop()
        finally:
            try:
                if self.publisher is not None:
                    await self.publisher.close()
            finally:
                await self.store.close()

    @property
    def log_verifier(self) -> VerifierKey:
        return self.log_key.verifier

    async def check_admin(self, token: str | None) -> None:
        if token is None or not await self.store.has_admin_token(hash_token(token)):
            raise UnauthorizedError("admin token missing or wrong")

    async def issue_enrolment_token(self) -> EnrolmentToken:
        now = self.clock()
        token = format_token("cachet-enrol-", secrets.token_bytes(32))
        expires = format_timestamp(now + timedelta(seconds=self.config.enrolment_token_ttl_s))
        await self.store.add_enrolment_token(hash_token(token), format_timestamp(now), expires)
        return EnrolmentToken(token, expires)

    async def enrol(self, token: str, edge: str, verifier_text: object) -> EdgeKey:
        now = format_timestamp(self.clock())
        key = _edge_key(edge, verifier_text, now)
        await self.store.enrol_edge(hash_token(token), edge, key, now)
        return key

    async def add_edge_key(self, edge: str, verifier_text: object) -> EdgeKey:
        key = _edge_key(edge, verifier_text, format_timestamp(self.clock()))
        await self.store.add_edge_key(key)
        return key

    async def revoke_edge_key(self, edge: str, key_id: str) -> None:
        await self.store.revoke_edge_key(edge, key_id, format_timestamp(self.clock()))

    async def list_edges(self) -> list[EdgeStatus]:
        return await self.store.list_edges()

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return await inclusion_proof_at(self.store, index, size, await self._log_size_for(size))

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return await consistency_proof_between(
            self.store, first, second, await self._log_size_for(second)
        )

    async def _log_size_for(self, size: int) -> int:
        """The sequencer's size, or the stored one when asked beyond it: with a sequencer
        elected elsewhere (scale-out) this process's view may trail the stored log."""
        known = self.sequencer.state.size
        return known if size <= known else await self.store.log_size()

    async def receipt(self, request_id: str) -> Receipt:
        return await build_receipt(self.store, request_id)
