"""The edge's record pipeline, wired: identity (edge id and its Ed25519 key), the spool every
answered request is recorded to, the sealer that signs batches, the forwarder that ships them to
the coordinator, and the receipt index the admin listener serves.

Layout under the cache dir: `records/keys/<edge>.key` (0600) and `.pub`, `records/spool/`,
`records/batches/` (pending), `records/batches/acked/`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from pathlib import Path

import aiohttp

from cachet.keyfiles import read_signing_key, write_private_key, write_verifier_key
from provenance.keys import SigningKey, format_verifier_key, generate_signing_key
from proxy.config import ProxyConfig
from proxy.records.emit import RecordEncoder
from proxy.records.forwarder import Forwarder
from proxy.records.receipts import ReceiptIndex
from proxy.records.sealer import Sealer
from proxy.records.spool import SpoolWriter

log = logging.getLogger("cachet.records")

_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_edge_id() -> str:
    """`edge-<host name>`, squeezed into the record's name pattern."""
    host = _NOT_NAME.sub("-", socket.gethostname()).strip("-._") or "local"
    return ("edge-" + host)[:64]


def load_or_create_edge_key(keys_dir: Path, edge_id: str) -> SigningKey:
    """The edge's signing key, generated on first start (0600), named after the edge id as the
    batch contract requires."""
    path = keys_dir / f"{edge_id}.key"
    if path.exists():
        return read_signing_key(path)
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_signing_key(edge_id, os.urandom(32))
    write_private_key(path, key)
    write_verifier_key(path.with_suffix(".pub"), key.verifier)
    log.info("generated edge key %s for edge %s", key.verifier.key_id_hex, edge_id)
    return key


class Recorder:
    def __init__(self, config: ProxyConfig) -> None:
        self.edge_id = config.edge_id or default_edge_id()
        root = Path(config.cache_dir) / "records"
        self.key = load_or_create_edge_key(root / "keys", self.edge_id)
        self.encoder = RecordEncoder(self.edge_id, config.sample_rate)
        self.spool = SpoolWriter(
            root / "spool",
            max_bytes=config.spool_max_bytes,
            full_policy=config.spool_full_policy,
        )
        self.spool.open()
        self.sealer = Sealer(
            root / "spool",
            root / "batches",
            self.key,
            self.edge_id,
            max_records=config.batch_max_records,
            max_interval_ms=config.batch_max_interval_ms,
        )
        self.sealer.recover()
        self.receipts = ReceiptIndex(root / "batches", root / "spool")
        self.coordinator = config.coordinator
        self.reject_when_full = config.spool_full_policy == "reject"
        self.emitted = 0
        self._batches_dir = root / "batches"
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.forwarder: Forwarder | None = None

    @property
    def refusing(self) -> bool:
        """True when the spool is full and the operator chose to answer 503 over serving
        unrecorded responses."""
        return self.reject_when_full and self.spool.bytes_used >= self.spool.max_bytes

    def append(self, record: bytes) -> None:
        if self.spool.append(record):
            self.emitted += 1

    def flush(self) -> None:
        self.spool.flush()

    async def enrol(self, token: str) -> None:
        """Register this edge's key with the coordinator once (a marker file remembers it).
        A failure is logged, not fatal: batches wait in the spool until the edge is enrolled."""
        marker = self._batches_dir.parent / f"enrolled-{self.edge_id}"
        if marker.exists() or not self.coordinator:
            return
        body = {
            "token": token,
            "edge": self.edge_id,
            "verifier_key": format_verifier_key(self.key.verifier),
        }
        url = self.coordinator.rstrip("/") + "/v1/edges/enrol"
        try:
            timeout = aiohttp.ClientTimeout(total=30)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body) as response,
            ):
                if response.status in (200, 201):
                    marker.write_text(await response.text())
                    log.info("edge %s enrolled with %s", self.edge_id, self.coordinator)
                    return
                reason = (await response.text())[:200]
        except aiohttp.ClientError as error:
            reason = str(error)
        log.error("enrolment with %s failed: %s", self.coordinator, reason)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.sealer.run(_clock_ms, self._stop)))
        if self.coordinator:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60, connect=5)
            )
            self.forwarder = Forwarder(self._batches_dir, self.coordinator, self._session)
            self._tasks.append(loop.create_task(self.forwarder.run(self._stop)))

    async def stop(self) -> None:
        """Flush, stop the tasks, then seal what is left so a clean stop leaves no tail."""
        self.spool.flush()
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.sealer.seal_ready, _clock_ms(), True)
        self.spool.close()
        if self._session is not None:
            await self._session.close()


def _clock_ms() -> int:
    return int(time.time() * 1000)
