"""The edge's record pipeline, wired: identity (edge id and its Ed25519 key), the spool every
answered request is recorded to, the records process that seals batches and forwards them
(``proxy.records.daemon``, started and supervised here), and the receipt index the admin
listener serves.

Layout under the cache dir: `records/keys/<edge>.key` (0600) and `.pub`, `records/spool/`,
`records/batches/` (pending), `records/batches/acked/`, `records/status.json` (the records
process's counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from cachet.keyfiles import read_signing_key, write_private_key, write_verifier_key
from provenance.keys import SigningKey, format_verifier_key, generate_signing_key
from proxy.config import ProxyConfig
from proxy.records.daemon import (
    NATS_URL_ENV,
    PipelineSettings,
    PipelineStatus,
    read_status,
    records_process_environment,
)
from proxy.records.emit import RecordEncoder
from proxy.records.receipts import ReceiptIndex
from proxy.records.spool import hit_appender, open_spool
from proxy.workers import restart_delay

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
    def __init__(self, config: ProxyConfig, *, worker: int | None = None) -> None:
        """``worker``: this serving process's number under ``--workers N``; it then spools to
        ``spool/w<worker>/`` and leaves the records process to the supervisor, which seals every
        worker's spool into the edge's one chain."""
        self.edge_id = config.edge_id or default_edge_id()
        root = Path(config.cache_dir) / "records"
        self.key = load_or_create_edge_key(root / "keys", self.edge_id)
        self.encoder = RecordEncoder(self.edge_id, config.sample_rate)
        spool_dir = root / "spool" if worker is None else root / "spool" / f"w{worker}"
        self.spool = open_spool(
            spool_dir,
            max_bytes=config.spool_max_bytes,
            full_policy=config.spool_full_policy,
        )
        # Bound once: these run for every answered request.
        self.append: Callable[[bytes], bool] = self.spool.append
        self.skip: Callable[[], None] = self.spool.skip
        # A plain hit's record from its template (RecordEncoder.hit_template).
        self.append_hit = hit_appender(self.spool, self.encoder.encode_hit)
        # False: a record is in the spool once appended, and its response may go out at once;
        # True: responses wait for flush() (proxy/cork.py).
        self.needs_flush = self.spool.needs_flush
        self.receipts = ReceiptIndex(root / "batches", root / "spool")
        self.coordinator = config.coordinator
        self.reject_when_full = config.spool_full_policy == "reject"
        self.pipeline = pipeline_settings(config, self.edge_id)
        self.records_process = RecordsProcess(self.pipeline, config.log_level)
        self._starts_pipeline = worker is None
        self._batches_dir = root / "batches"

    @property
    def pipeline_restarts(self) -> int:
        return self.records_process.restarts

    def pipeline_status(self) -> PipelineStatus:
        return read_status(self.pipeline.records_dir)

    @property
    def refusing(self) -> bool:
        """True when the spool is full and the operator chose to answer 503 over serving
        unrecorded responses."""
        return self.reject_when_full and self.spool.full

    @property
    def emitted(self) -> int:
        """Records written to the spool (appended ones go out at the next flush)."""
        return self.spool.emitted

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
        if self._starts_pipeline:
            await self.records_process.start()

    async def stop(self) -> None:
        """Flush and close the spool, then let the records process seal what is left and exit,
        so a clean stop leaves no unsealed tail."""
        self.spool.close()
        if self._starts_pipeline:
            await self.records_process.stop()


def pipeline_settings(config: ProxyConfig, edge_id: str) -> PipelineSettings:
    return PipelineSettings(
        records_dir=Path(config.cache_dir) / "records",
        edge_id=edge_id,
        batch_max_records=config.batch_max_records,
        batch_max_interval_ms=config.batch_max_interval_ms,
        coordinator=config.coordinator,
        nats_url=config.nats_url,
        nats_subject=config.nats_subject,
    )


class RecordsProcess:
    """Starts ``python -m proxy.records.daemon`` with a pipe on its stdin, restarts it with
    back-off if it exits on its own, and on ``stop`` closes the pipe and waits for it to seal
    the tail and exit (docs/design/spool.md, "Processes")."""

    def __init__(self, settings: PipelineSettings, log_level: str = "info") -> None:
        self.settings = settings
        self.restarts = 0
        self._log_level = log_level
        self._stopping = False
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._process = await self._spawn()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = records_process_environment(dict(os.environ))
        env.pop(NATS_URL_ENV, None)
        if self.settings.nats_url:
            env[NATS_URL_ENV] = self.settings.nats_url
        env["CACHET_RECORDS_LOG_LEVEL"] = self._log_level
        # A session of its own: a terminal's Ctrl-C reaches the proxy, which then closes the pipe;
        # the records process must not stop (and be restarted) before the proxy has flushed.
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.records.daemon", *self.settings.to_argv(),
            stdin=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        )  # fmt: skip

    async def _supervise(self) -> None:
        delay_s: float | None = None
        while True:
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = await process.wait()
            if self._stopping:
                return
            # The same back-off as a dead worker's (a process that ran steadily starts afresh).
            delay_s = restart_delay(delay_s, time.monotonic() - started)
            log.error("records process exited with %s; restarting in %.1f s", code, delay_s)
            await asyncio.sleep(delay_s)  # stop() cancels this task while it sleeps
            self.restarts += 1
            self._process = await self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        process = self._process
        if process is not None and process.returncode is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("records process did not stop in %d s; killing it", STOP_TIMEOUT_S)
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor


STOP_TIMEOUT_S = 60
