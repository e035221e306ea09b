"""The proxy's admin listener (default 127.0.0.1:9091): health and Prometheus metrics. It is an
aiohttp app on its own port, so operators' scrapes never compete with client traffic."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy.config import ProxyConfig

if TYPE_CHECKING:
    from proxy.recorder import Recorder

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
RECORDER_KEY = web.AppKey("recorder", object)


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


def make_admin_app(
    registry: CollectorRegistry, recorder: Recorder | None = None
) -> web.Application:
    app = web.Application()
    app[REGISTRY_KEY] = registry
    app[RECORDER_KEY] = recorder
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/_cachet/receipts/{request_id}", _receipt)
    return app


class AdminServer:
    def __init__(
        self, config: ProxyConfig, registry: CollectorRegistry, recorder: Recorder | None = None
    ) -> None:
        self._config = config
        self._runner = web.AppRunner(make_admin_app(registry, recorder), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        host, port = self._config.admin_listen
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()

    async def stop(self) -> None:
        await self._runner.cleanup()
