"""The proxy's admin listener (default 127.0.0.1:9091): health, Prometheus metrics, purge and
receipts. It is an aiohttp app on its own port, so operators' scrapes never compete with client
traffic.

The routes are the same for a single serving process and for the supervisor of `--workers N`
(proxy/supervisor.py); what answers them differs, so each is given as an `AdminRoutes` field: a
process's own registry or the workers' metrics merged, its own purge service or a fan-out to
every worker, and so on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy.purge import (
    MAX_BODY_BYTES,
    PurgeFormatError,
    PurgeRequest,
    check_token,
    parse_purge_request,
)

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cachet-purge"'}

Exposition = Callable[[], Awaitable[bytes]]
HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


class ReceiptSource(Protocol):
    def lookup(self, request_id: str) -> dict[str, Any] | None: ...


class PurgeBackend(Protocol):
    """proxy.purge.PurgeService, or the supervisor's fan-out to its workers."""

    @property
    def token(self) -> str | None: ...

    def refuse(self, reason: str, peer: str) -> None: ...

    async def purge(self, request: PurgeRequest, peer: str) -> dict[str, Any]: ...


class PurgeUnavailable(Exception):
    """The purge could not be applied everywhere it must be (answered 503 with the message)."""


@dataclass(frozen=True, slots=True)
class AdminRoutes:
    metrics: Exposition
    receipts: ReceiptSource | None = None  # None: records are off
    purge: PurgeBackend | None = None
    health: HealthCheck | None = None  # None: healthy while it answers


def registry_exposition(registry: CollectorRegistry) -> Exposition:
    async def exposition() -> bytes:
        return generate_latest(registry)

    return exposition


ROUTES_KEY = web.AppKey("routes", AdminRoutes)


async def _healthz(request: web.Request) -> web.Response:
    check = request.app[ROUTES_KEY].health
    if check is None:
        return web.json_response({"status": "ok"})
    healthy, body = await check()
    return web.json_response(body, status=200 if healthy else 503)


async def _metrics(request: web.Request) -> web.Response:
    payload = await request.app[ROUTES_KEY].metrics()
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _receipt(request: web.Request) -> web.Response:
    """ARCHITECTURE.md: the record of a request, with its batch header, signature and inclusion
    proof once its batch is sealed."""
    receipts = request.app[ROUTES_KEY].receipts
    if receipts is None:
        return web.json_response({"error": "records are off on this edge"}, status=404)
    request_id = request.match_info["request_id"]
    found = await asyncio.to_thread(receipts.lookup, request_id)
    if found is None:
        return web.json_response({"error": "unknown request id"}, status=404)
    return web.json_response(found)


async def _purge(request: web.Request) -> web.Response:
    """docs/purge.md: 403 when no token is configured, 401 without the right bearer token, 413
    for a body over 1 MiB, 400 for a malformed one, else 200 with what was purged."""
    service = request.app[ROUTES_KEY].purge
    peer = request.remote or "?"
    if service is None or not service.token:
        if service is not None:
            service.refuse("disabled", peer)
        return _error(403, "purge is disabled: set purge_token")
    if not check_token(request.headers.get("Authorization"), service.token):
        service.refuse("unauthorized", peer)
        return _error(401, "missing or wrong bearer token", _BEARER_CHALLENGE)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        service.refuse("too-large", peer)
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = await request.read()  # bounded by client_max_size
    except web.HTTPRequestEntityTooLarge:
        service.refuse("too-large", peer)
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        purge = parse_purge_request(body)
    except PurgeFormatError as err:
        service.refuse("malformed", peer)
        return _error(400, str(err))
    try:
        return web.json_response(await service.purge(purge, peer))
    except PurgeUnavailable as err:
        return _error(503, str(err))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def make_admin_app(routes: AdminRoutes) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[ROUTES_KEY] = routes
    app.router.add_post("/_cachet/purge", _purge)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/_cachet/receipts/{request_id}", _receipt)
    return app


class AdminServer:
    def __init__(self, routes: AdminRoutes, address: tuple[str, int]) -> None:
        self._address = address
        self._runner = web.AppRunner(make_admin_app(routes), access_log=None)

    async def start(self) -> tuple[str, int]:
        """Listen; the address actually bound (port 0 asks the kernel for a free one)."""
        await self._runner.setup()
        host, port = self._address
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        bound: int = self._runner.addresses[0][1]
        return host, bound

    async def stop(self) -> None:
        await self._runner.cleanup()
