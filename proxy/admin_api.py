"""The proxy's admin listener (default 127.0.0.1:9091): health and Prometheus metrics. It is an
aiohttp app on its own port, so operators' scrapes never compete with client traffic."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy.config import ProxyConfig

REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_admin_app(registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app[REGISTRY_KEY] = registry
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


class AdminServer:
    def __init__(self, config: ProxyConfig, registry: CollectorRegistry) -> None:
        self._config = config
        self._runner = web.AppRunner(make_admin_app(registry), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        host, port = self._config.admin_listen
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()

    async def stop(self) -> None:
        await self._runner.cleanup()
