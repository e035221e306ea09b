"""`cachet proxy`: wiring, the client listener, the admin listener and graceful shutdown.

With `--workers N` (N > 1) `run` hands over to proxy/supervisor.py, which starts N processes
that each run `serve` with a `WorkerRole` (docs/design/workers.md)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from proxy.admin_api import AdminRoutes, AdminServer, registry_exposition
from proxy.cache.admission import AdmissionPolicy
from proxy.cache.freshness import HeuristicPolicy
from proxy.cache.storability import StoragePolicy
from proxy.cache.store import ResponseStore
from proxy.cache.tiers.disk import DiskTier
from proxy.cache.tiers.shared import SharedTier, SharedTierCollector
from proxy.config import ProxyConfig
from proxy.connection import ClientConnection
from proxy.cork import Cork
from proxy.handler import HandlerSettings, ProxyHandler
from proxy.http.request_parser import RequestHead
from proxy.metrics import (
    ProxyCollector,
    ProxyStats,
    RecordCollector,
    SpoolCollector,
    TracingCollector,
    make_origin_latency,
)
from proxy.origin import OriginClient
from proxy.purge import PurgeService
from proxy.recorder import Recorder, default_edge_id
from proxy.records.spool import SpoolInUse
from proxy.registry_client import ManifestIndex, RegistryPoller, index_folder
from proxy.routing import Router
from proxy.tracing import OtlpExporter, Tracer
from proxy.workers import WorkerRole, disk_placement, worker_folder

log = logging.getLogger("cachet.proxy")

SWEEP_INTERVAL_S = 1.0


@dataclass(eq=False)
class ProxyState:
    """Everything a connection reaches: config, handler, stats, the set of open connections."""

    config: ProxyConfig
    handler: ProxyHandler
    stats: ProxyStats
    connections: set[ClientConnection] = field(default_factory=set)
    draining: bool = False
    cork: Cork | None = None
    parsed_heads: dict[bytes, tuple[RequestHead, int]] = field(default_factory=dict)
    recorder: Recorder | None = None
    clock: Callable[[], float] = time.monotonic


def build_state(
    config: ProxyConfig, registry: CollectorRegistry, worker: WorkerRole | None = None
) -> tuple[ProxyState, OriginClient]:
    stats = ProxyStats()
    worker_folder(config, worker).mkdir(parents=True, exist_ok=True)
    disk = None
    disk_folder, disk_budget = disk_placement(config, worker)
    if disk_budget > 0:
        disk = DiskTier(disk_folder, disk_budget, config.disk_object_limit(disk_budget))
    shared = _shared_tier(config)
    store = ResponseStore(config.memory_bytes, config.max_object_bytes, disk=disk, shared=shared)
    origin = OriginClient(
        config.origin_connect_timeout_s, config.origin_timeout_s, config.origin_max_connections
    )
    via = f"1.1 {config.via_name}"
    targeted = tuple(name.lower() for name in config.targeted_cache_control)
    settings = HandlerSettings(
        storage=StoragePolicy(store_set_cookie=config.cache_set_cookie, targeted_fields=targeted),
        admission=AdmissionPolicy(
            heuristic=HeuristicPolicy(config.heuristic_fraction, config.heuristic_max_s),
            targeted_fields=targeted,
            via=via,
        ),
        via=via,
        cache_name=config.via_name,
        max_object_bytes=config.max_object_bytes,
        stale_if_error_default_s=config.stale_if_error_default_s,
        trust_forwarded_from=frozenset(config.trust_forwarded_from),
        training_use_header=config.training_use_header,
        range_fill_max_bytes=config.range_fill_max_bytes,
    )
    latency = make_origin_latency(registry)
    handler = ProxyHandler(settings, Router(config), store, origin, stats, latency.observe)
    state = ProxyState(config=config, handler=handler, stats=stats)
    if config.manifests_dir:
        folder_index = ManifestIndex()
        index_folder(folder_index, Path(config.manifests_dir))
        handler.manifest_indexes.append(folder_index)
    if config.records:
        recorder = Recorder(config, worker=None if worker is None else worker.index)
        handler.recorder = recorder
        state.recorder = recorder
        if recorder.needs_flush:  # the write(2) spool: responses wait for its flush
            state.cork = Cork(recorder.flush)
        # A worker's records process belongs to the supervisor, which reports it once.
        registry.register(RecordCollector(recorder) if worker is None else SpoolCollector(recorder))
    registry.register(
        ProxyCollector(
            stats,
            cache_bytes=lambda: store.bytes_used,
            cache_entries=lambda: len(store),
            cache_evictions=lambda: store.tier.evictions,
            open_connections=lambda: len(state.connections),
            disk=disk,
        )
    )
    if shared is not None:
        registry.register(SharedTierCollector(shared))
    if config.otlp_traces_url is not None:
        handler.tracer = Tracer()
        registry.register(TracingCollector(handler.tracer))
    return state, origin


def _shared_tier(config: ProxyConfig) -> SharedTier | None:
    """The shared tier if configured (docs/design/tiered-cache.md); redis-py is imported only
    then. Connections are opened by the first lookup, so a Redis that is down at start costs
    nothing but counted misses."""
    if config.shared_cache_url is None:
        return None
    from proxy.cache.tiers.shared_backend import AiocacheRedis

    timeout_s = config.shared_timeout_ms / 1000
    return SharedTier(
        AiocacheRedis(config.shared_cache_url, connect_timeout_s=timeout_s),
        prefix=config.shared_key_prefix,
        max_object_bytes=config.shared_max_object_bytes,
        timeout_s=timeout_s,
    )


async def _open_disk(store: ResponseStore) -> None:
    """Index the disk tier (a scan of the entry files: seconds for 100k, so in a thread) and
    start writing through to it."""
    if store.disk is None or store.writer is None:
        return
    started = time.monotonic()
    await asyncio.to_thread(store.disk.open)
    log.info(
        "disk tier: %d entries, %d bytes, opened in %.2f s",
        store.disk.entries,
        store.disk.bytes_used,
        time.monotonic() - started,
    )
    store.writer.start()


async def _index_disk_surrogates(store: ResponseStore) -> None:
    """In the background: the surrogate keys of entries only on disk (docs/purge.md)."""
    started = time.monotonic()
    indexed = await store.index_disk_surrogates()
    log.info(
        "disk tier: surrogate keys and content ids of %d entries indexed in %.2f s",
        indexed,
        time.monotonic() - started,
    )


async def _sweep(state: ProxyState) -> None:
    """Cut off clients that send their request head too slowly (slowloris) and idle keep-alive
    connections, once a second rather than with a timer per request."""
    config = state.config
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        now = time.monotonic()
        for conn in list(state.connections):
            if conn.body is not None and not conn.body.done:
                if now - conn.last_activity > config.header_timeout_s:
                    conn.abort()  # a request body that stopped arriving
                continue
            if conn.task is not None:
                continue
            if conn.head_started and now - conn.head_started > config.header_timeout_s:
                conn.reject_slow_head()
            elif not conn.buffer and now - conn.last_activity > config.keepalive_timeout_s:
                conn.close()


async def serve(
    config: ProxyConfig,
    *,
    worker: WorkerRole | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[tuple[str, int]], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then drain. A worker shares the client
    port with its siblings (SO_REUSEPORT: the kernel spreads connections) and answers its
    supervisor on a private admin listener, 127.0.0.1 on a port the kernel picks; ``on_ready``
    is told the admin address once the process listens."""
    loop = asyncio.get_running_loop()
    registry = CollectorRegistry()
    state, origin = build_state(config, registry, worker)
    store = state.handler.store
    await _open_disk(store)
    if store.shared is not None:
        store.shared.start()
    await origin.start()
    # Before listening: no unattributed first responses.
    poller = await _start_registry(state, worker_folder(config, worker))
    host, port = config.listen
    try:
        server = await loop.create_server(
            lambda: ClientConnection(state),
            host,
            port,
            backlog=4096,
            reuse_address=True,
            reuse_port=worker is not None,
        )
    except OSError:
        # The port is taken (or not ours): close what is already open, so the one-line reason
        # is all the operator sees.
        if poller is not None:
            await poller.stop()
        await origin.close()
        raise
    for sock in server.sockets:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    purge = PurgeService(store, state.stats, config.purge_token)
    receipts = state.recorder.receipts if state.recorder is not None else None
    admin = AdminServer(
        AdminRoutes(
            metrics=registry_exposition(registry),
            receipts=receipts if worker is None else None,  # the supervisor answers those
            purge=purge,
        ),
        config.admin_listen if worker is None else ("127.0.0.1", 0),
    )
    admin_address = await admin.start()
    if state.recorder is not None:
        await state.recorder.start()
    exporter = _start_trace_export(state)
    stop = stop or asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sweeper = loop.create_task(_sweep(state))
    indexer = loop.create_task(_index_disk_surrogates(store)) if store.disk is not None else None
    log.info(
        "cachet proxy listening on http://%s:%d (admin http://%s:%d)", host, port, *admin_address
    )
    if on_ready is not None:
        on_ready(admin_address)
    await stop.wait()
    log.info("shutting down: no new connections, %d open", len(state.connections))
    server.close()
    await _drain(state, config.shutdown_grace_s)
    sweeper.cancel()
    if indexer is not None:
        indexer.cancel()
    await state.handler.drain_background()
    if store.writer is not None:
        await store.writer.close()  # pending write-through puts, then the index snapshot
    if store.shared is not None:
        await store.shared.close()  # queued writes and deletes, for a bounded time
    if poller is not None:
        await poller.stop()
    if state.recorder is not None:
        await state.recorder.stop()
    if exporter is not None:
        await exporter.stop()
    await admin.stop()
    await origin.close()
    return 0


def _start_trace_export(state: ProxyState) -> OtlpExporter | None:
    """With ``otlp_traces_url``: post the handler's spans there (proxy/tracing.py)."""
    config, tracer = state.config, state.handler.tracer
    if config.otlp_traces_url is None or tracer is None:
        return None
    edge_id = state.recorder.edge_id if state.recorder is not None else None
    exporter = OtlpExporter(
        tracer,
        config.otlp_traces_url,
        config.otlp_service_name,
        edge_id or config.edge_id or default_edge_id(),
        version("cachet"),
    )
    exporter.start()
    return exporter


async def _start_registry(state: ProxyState, state_dir: Path) -> RegistryPoller | None:
    """With a coordinator: enrol this edge once, then follow the registry's change feed (its
    cursor kept in ``state_dir``), and purge cached content whose manifest was revoked."""
    config = state.config
    if not config.coordinator:
        return None
    if state.recorder is not None and config.enrolment_token:
        await state.recorder.enrol(config.enrolment_token)
    handler = state.handler

    async def purge_revoked(content_ids: list[str]) -> None:
        await handler.store.disk_labels_indexed()  # entries only on disk must be found too
        dropped = handler.store.purge_content(set(content_ids))
        handler.stats.revocation_purges += dropped
        log.info("purged %d cached objects of revoked content %s", dropped, content_ids)

    poller = RegistryPoller(handler.origin.session, config.coordinator, state_dir, purge_revoked)
    handler.manifest_indexes.insert(0, poller.index)
    # One bounded poll before the proxy listens, so content published before this start is
    # attributed from the first response (a cached copy stored unattributed stays so until it
    # expires). A coordinator that is down or slow does not keep the proxy from serving.
    try:
        await asyncio.wait_for(poller.poll_once(), FIRST_POLL_TIMEOUT_S)
    except (TimeoutError, OSError, aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
        log.warning("first registry poll failed (%s); serving, and polling in the background",
                    type(exc).__name__)  # fmt: skip
    poller.start()
    return poller


FIRST_POLL_TIMEOUT_S = 10.0


async def _drain(state: ProxyState, grace_s: float) -> None:
    """Let in-flight responses finish within the grace period; idle connections close now."""
    state.draining = True
    deadline = time.monotonic() + grace_s
    while True:
        for conn in list(state.connections):
            if conn.task is None and not conn.buffer:
                conn.close()
            else:
                conn.keep_alive = False
        if not state.connections or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    for conn in list(state.connections):
        conn.terminate()


def configure_logging(config: ProxyConfig, tag: str = "") -> None:
    """Log lines to stderr; ``tag`` (e.g. ``[w1]``) tells worker processes' lines apart."""
    prefix = f"{tag} " if tag else ""
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s %(name)s {prefix}%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("cachet.access").setLevel(
        logging.INFO if config.access_log else logging.WARNING
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def run_loop(main: Coroutine[Any, Any, int], *, fast: bool = True) -> int:
    """Run ``main`` on uvloop when ``fast`` (the standard loop where uvloop is missing); an
    OSError such as an address in use, or a spool another proxy writes, is one line on stderr
    and exit 1."""
    loop_factory = None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        pass
    else:
        loop_factory = uvloop.new_event_loop if fast else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main)
    except OSError as error:
        print(f"cachet proxy: {error.strerror or error}", file=sys.stderr)
        return 1
    except SpoolInUse as error:  # another cachet proxy on this cache dir
        print(f"cachet proxy: {error}", file=sys.stderr)
        return 1


def run(config: ProxyConfig) -> int:
    configure_logging(config)
    if config.workers > 1:
        from proxy.supervisor import supervise

        # The standard loop: the supervisor serves no clients, and uvloop cannot start a child
        # in a process group of its own.
        return run_loop(supervise(config), fast=False)
    return run_loop(serve(config))
