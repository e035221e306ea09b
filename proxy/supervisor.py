"""`cachet proxy --workers N` (N > 1): the supervisor, like nginx's master process.

It binds nothing on the client port. It starts N worker processes (proxy/worker.py), each
listening on the client port with SO_REUSEPORT so the kernel spreads connections between them,
and restarts one that dies (with back-off, counted). It runs the edge's one records process,
which seals every worker's spool into the edge's one chain, and the one admin listener, which
answers for all workers: health when all are, their metrics merged with a ``worker`` label,
purges fanned out to every worker, receipts from the record files. SIGTERM/SIGINT: the workers
drain (SIGTERM), then the records process seals what is left and stops, last. If the supervisor
is killed outright, its workers and its records process see end of file on their stdin and stop
by themselves. docs/design/workers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest

from proxy.admin_api import AdminRoutes, AdminServer, PurgeUnavailable
from proxy.config import ProxyConfig
from proxy.metrics import (
    FamiliesCollector,
    PipelineCollector,
    SupervisorCollector,
    WorkerGauges,
    merge_worker_metrics,
)
from proxy.purge import PurgeRequest, token_id
from proxy.recorder import (
    RecordsProcess,
    default_edge_id,
    load_or_create_edge_key,
    pipeline_settings,
)
from proxy.records.daemon import read_status
from proxy.records.receipts import ReceiptIndex
from proxy.worker import READY_PREFIX
from proxy.workers import (
    WorkerRole,
    config_to_json,
    purge_request_body,
    restart_delay,
    worker_config,
)

log = logging.getLogger("cachet.supervisor")
purge_log = logging.getLogger("cachet.purge")

SCRAPE_TIMEOUT_S = 5.0
PURGE_TIMEOUT_S = 120.0  # a purge by content id may wait for a worker's disk scan
STOP_MARGIN_S = 10.0  # beyond shutdown_grace_s before a worker that won't stop is killed


class WorkerHandle:
    """One worker process, across its restarts."""

    def __init__(self, role: WorkerRole, config_line: bytes) -> None:
        self.role = role
        self._config_line = config_line
        self.process: asyncio.subprocess.Process | None = None
        self.admin_port: int | None = None
        self.restarts = 0
        self.scrape_failures = 0
        self.started_at = 0.0

    @property
    def index(self) -> int:
        return self.role.index

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def serving(self) -> bool:
        return self.alive and self.admin_port is not None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def start(self) -> None:
        self.admin_port = None
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.worker",
            "--index", str(self.role.index), "--count", str(self.role.count),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            # Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
            # then stops the workers in order.
            process_group=0,
        )  # fmt: skip
        self.started_at = time.monotonic()
        assert self.process.stdin is not None
        self.process.stdin.write(self._config_line)  # the pipe stays open: its end is our death
        await self.process.stdin.drain()

    async def wait_ready(self) -> bool:
        """Until the worker says it listens (True) or exits first (False)."""
        assert self.process is not None and self.process.stdout is not None
        line = (await self.process.stdout.readline()).decode("ascii", "replace")
        if not line.startswith(READY_PREFIX):
            return False
        self.admin_port = int(line[len(READY_PREFIX) :])
        return True

    def status(self) -> dict[str, Any]:
        state = "serving" if self.serving else "starting" if self.alive else "restarting"
        pid = self.process.pid if self.alive and self.process is not None else None
        return {"worker": self.index, "pid": pid, "state": state, "restarts": self.restarts}


class Supervisor:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        count = config.workers
        self.workers = [
            WorkerHandle(
                WorkerRole(index, count),
                (config_to_json(worker_config(config, index)) + "\n").encode("utf-8"),
            )
            for index in range(count)
        ]
        self.edge_id = config.edge_id or default_edge_id()
        self.records_dir = Path(config.cache_dir) / "records"
        self.records_process: RecordsProcess | None = None
        if config.records:
            settings = pipeline_settings(config, self.edge_id)
            self.records_process = RecordsProcess(settings, config.log_level)
        self.purges: Counter[tuple[str, str]] = Counter()
        self.purges_refused: Counter[str] = Counter()
        self.stopping = asyncio.Event()
        self.registry = CollectorRegistry()
        self.registry.register(SupervisorCollector(self._gauges, self.purges, self.purges_refused))
        if self.records_process is not None:
            process = self.records_process
            self.registry.register(
                PipelineCollector(lambda: read_status(self.records_dir), lambda: process.restarts)
            )
        self._merged = FamiliesCollector([])
        self.registry.register(self._merged)
        self._session: aiohttp.ClientSession | None = None

    def _gauges(self) -> list[WorkerGauges]:
        return list(self.workers)

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the supervisor is not running"
        return self._session

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        if self.config.records:
            # Before any worker starts: N workers creating the key at once would each make one.
            load_or_create_edge_key(self.records_dir / "keys", self.edge_id)
        admin = AdminServer(self.routes(), self.config.admin_listen)
        await admin.start()  # an address in use fails here, before any worker starts
        watchers: list[asyncio.Task[None]] = []
        code = 0
        try:
            async with aiohttp.ClientSession() as session:
                self._session = session
                for worker in self.workers:
                    await worker.start()
                started = await self._first_start(stop)
                if started is False:
                    code = 1
                elif started:
                    # After worker 0 is ready it has enrolled (if asked to): only then may
                    # batches be forwarded, as with one process.
                    if self.records_process is not None:
                        await self.records_process.start()
                    watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]
                    log.info(
                        "cachet proxy: %d workers on http://%s:%d (admin http://%s:%d)",
                        len(self.workers), *self.config.listen, *self.config.admin_listen,
                    )  # fmt: skip
                    await stop.wait()
                    log.info("shutting down: stopping %d workers", len(self.workers))
                if not await self._stop_workers(watchers):
                    code = 1
                if self.records_process is not None:
                    await self.records_process.stop()  # last: it seals what the workers spooled
        finally:
            await admin.stop()
        return code

    async def _first_start(self, stop: asyncio.Event) -> bool | None:
        """True once every worker listens; False if one exited first (the reason is in its log
        line above); None if told to stop meanwhile."""
        ready = asyncio.ensure_future(asyncio.gather(*(w.wait_ready() for w in self.workers)))
        stopped = asyncio.ensure_future(stop.wait())
        either: list[asyncio.Future[Any]] = [ready, stopped]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not ready.done():
            ready.cancel()
            return None
        failed = [w.role.name for w, ok in zip(self.workers, ready.result(), strict=True) if not ok]
        if failed:
            message = f"worker {', '.join(failed)} exited before it was ready"
            print(f"cachet proxy: {message}", file=sys.stderr)
            return False
        return True

    async def _watch(self, worker: WorkerHandle) -> None:
        """Restart the worker whenever it dies, with back-off, until the supervisor stops."""
        delay_s: float | None = None
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            worker.admin_port = None
            if self.stopping.is_set():
                return
            delay_s = restart_delay(delay_s, time.monotonic() - worker.started_at)
            log.error(
                "worker %s (pid %d) exited with %s; restarting in %.1f s",
                worker.role.name, worker.process.pid, code, delay_s,
            )  # fmt: skip
            await asyncio.sleep(delay_s)
            if self.stopping.is_set():
                return
            worker.restarts += 1
            await worker.start()
            await worker.wait_ready()  # if it dies first, wait() above returns at once

    async def _stop_workers(self, watchers: list[asyncio.Task[None]]) -> bool:
        """SIGTERM every running worker (each drains), wait, kill any that outlives the grace;
        True when each exited 0. The watchers go first, so none starts a worker meanwhile."""
        self.stopping.set()
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        running = [w.process for w in self.workers if w.alive and w.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        timeout_s = self.config.shutdown_grace_s + STOP_MARGIN_S
        clean = True
        for process in running:
            try:
                code = await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                log.error("worker pid %d did not stop in %.0f s; killing it", process.pid,
                          timeout_s)  # fmt: skip
                process.kill()
                code = await process.wait()
            clean = clean and code == 0
        return clean

    # --- the admin listener ----------------------------------------------------------------

    def routes(self) -> AdminRoutes:
        receipts = None
        if self.config.records:
            receipts = ReceiptIndex(self.records_dir / "batches", self.records_dir / "spool")
        return AdminRoutes(
            metrics=self.exposition,
            receipts=receipts,
            purge=FanOutPurge(self),
            health=self.health,
        )

    async def _get(self, worker: WorkerHandle, path: str) -> str | None:
        if not worker.serving:
            return None
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
        try:
            async with self.session.get(worker.admin_url + path, timeout=timeout) as response:
                if response.status != 200:
                    return None
                return await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def exposition(self) -> bytes:
        """The supervisor's own metrics and every serving worker's, labelled by worker."""
        texts = await asyncio.gather(*(self._get(w, "/metrics") for w in self.workers))
        found: dict[int, str] = {}
        for worker, text in zip(self.workers, texts, strict=True):
            if text is None:
                worker.scrape_failures += 1
            else:
                found[worker.index] = text
        try:
            merged = merge_worker_metrics(found)
        except ValueError as error:  # pragma: no cover - workers write prometheus_client's text
            log.error("a worker's metrics did not parse: %s", error)
            merged = []
        self._merged.families = merged  # no await until generated: scrapes don't mix
        return generate_latest(self.registry)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        answers = await asyncio.gather(*(self._get(w, "/healthz") for w in self.workers))
        statuses = [w.status() for w in self.workers]
        healthy = all(answer is not None for answer in answers)
        return healthy, {"status": "ok" if healthy else "unavailable", "workers": statuses}


class FanOutPurge:
    """The admin listener's purge backend under a supervisor: every worker purges its own tiers;
    the answer is the sum. Counted and logged once, here, with who asked."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.token = supervisor.config.purge_token
        self.token_id = token_id(self.token) if self.token else None

    def refuse(self, reason: str, peer: str) -> None:
        self.supervisor.purges_refused[reason] += 1
        purge_log.warning("purge refused: reason=%s peer=%s", reason, peer)

    async def _ask(self, worker: WorkerHandle, body: bytes) -> int | None:
        if not worker.serving:
            return None
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=PURGE_TIMEOUT_S)
        url = worker.admin_url + "/_cachet/purge"
        try:
            async with self.supervisor.session.post(
                url, data=body, headers=headers, timeout=timeout
            ) as response:
                if response.status != 200:
                    return None
                answer = await response.json()
                return int(answer["purged"])
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return None

    async def purge(self, request: PurgeRequest, peer: str) -> dict[str, Any]:
        workers = self.supervisor.workers
        body = purge_request_body(request)
        answers = await asyncio.gather(*(self._ask(w, body) for w in workers))
        purged = sum(answer for answer in answers if answer is not None)
        missed = [w.role.name for w, answer in zip(workers, answers, strict=True) if answer is None]
        targets = sum(len(getattr(request, kind)) for kind in request.kinds())
        if missed:
            self.supervisor.purges_refused["worker-unavailable"] += 1
            purge_log.warning(
                "purge incomplete: mode=%s kinds=%s targets=%d purged=%d missed=%s peer=%s "
                "token_id=%s", request.mode, ",".join(request.kinds()), targets, purged,
                ",".join(missed), peer, self.token_id,
            )  # fmt: skip
            raise PurgeUnavailable(
                f"purge not applied by {', '.join(missed)} (not serving: starting or "
                f"restarting); {purged} purged by the others; send it again"
            )
        for kind in request.kinds():
            self.supervisor.purges[(kind, request.mode)] += 1
        purge_log.info(
            "purge mode=%s kinds=%s targets=%d purged=%d peer=%s token_id=%s workers=%d",
            request.mode, ",".join(request.kinds()), targets, purged, peer, self.token_id,
            len(workers),
        )  # fmt: skip
        return {"mode": request.mode, "purged": purged}


async def supervise(config: ProxyConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await Supervisor(config).run(stop)
