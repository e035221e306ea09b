"""The proxy's admin listener (default 127.0.0.1:9091): health and Prometheus metrics. It is an
aiohttp app on its own port, so operators' scrapes never compete with client traffic."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy.config import ProxyConfig
from proxy.purge import (
    MAX_BODY_BYTES,
    PurgeFormatError,
    PurgeService,
    check_token,
    parse_purge_request,
)

if TYPE_CHECKING:
    from proxy.recorder import Recorder

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
RECORDER_KEY = web.AppKey("recorder", object)
PURGE_KEY = web.AppKey("purge", object)
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cachet-purge"'}


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _receipt(request: web.Request) -> web.Response:
    """ARCHITECTURE.md: the record of a request, with its batch header, signature and inclusion
    proof once its batch is sealed."""
    recorder = cast("Recorder | None", request.app[RECORDER_KEY])
    if recorder is None:
        return web.json_response({"error": "records are off on this edge"}, status=404)
    request_id = request.match_info["request_id"]
    found = await asyncio.to_thread(recorder.receipts.lookup, request_id)
    if found is None:
        return web.json_response({"error": "unknown request id"}, status=404)
    return web.json_response(found)


async def _purge(request: web.Request) -> web.Response:
    """docs/purge.md: 403 when no token is configured, 401 without the right bearer token, 413
    for a body over 1 MiB, 400 for a malformed one, else 200 with what was purged."""
    service = cast("PurgeService | None", request.app[PURGE_KEY])
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
    return web.json_response(await service.purge(purge, peer))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def make_admin_app(
    registry: CollectorRegistry,
    recorder: Recorder | None = None,
    purge: PurgeService | None = None,
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[REGISTRY_KEY] = registry
    app[RECORDER_KEY] = recorder
    app[PURGE_KEY] = purge
    app.router.add_post("/_cachet/purge", _purge)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/_cachet/receipts/{request_id}", _receipt)
    return app


class AdminServer:
    def __init__(
        self,
        config: ProxyConfig,
        registry: CollectorRegistry,
        recorder: Recorder | None = None,
        purge: PurgeService | None = None,
    ) -> None:
        self._config = config
        self._runner = web.AppRunner(make_admin_app(registry, recorder, purge), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        host, port = self._config.admin_listen
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()

    async def stop(self) -> None:
        await self._runner.cleanup()
