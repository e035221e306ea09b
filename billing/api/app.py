"""The aiohttp app: one error middleware, the routes, and the Coordinator as a cleanup_ctx."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from admin import api as admin_api
from admin.app import mount as mount_admin_ui
from billing.api import billing as billing_api
from billing.api import edges, log, registry
from billing.api.openapi import openapi_document
from billing.errors import reason_of
from billing.service import Coordinator
from provenance import compression
from provenance.errors import CachetError, PushbackError

COORDINATOR = web.AppKey("coordinator", Coordinator)
_log = logging.getLogger("cachet.coordinator")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: CachetError) -> web.Response:
    """The one mapping from the error tree to HTTP: status hint, a short reason, Retry-After."""
    reason = reason_of(error)
    response = web.json_response({"error": reason}, status=error.status_hint)
    if isinstance(error, PushbackError):
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CachetError as exc:
        _log.info("refused %s %s: %s: %s", request.method, request.path, reason_of(exc), exc)
        return error_response(exc)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    registry = request.app[COORDINATOR].metrics.registry
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(
        text=json.dumps(openapi_document(), indent=2), content_type="application/json"
    )


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/healthz", _healthz),
    ("GET", "/metrics", _metrics),
    ("GET", "/openapi.json", _openapi),
    ("POST", "/v1/admin/enrolment-tokens", edges.create_enrolment_token),
    ("POST", "/v1/edges/enrol", edges.enrol),
    ("GET", "/v1/admin/edges", edges.list_edges),
    ("POST", "/v1/admin/edges/{edge}/keys", edges.add_key),
    ("DELETE", "/v1/admin/edges/{edge}/keys/{key_id}", edges.revoke_key),
    ("GET", "/v1/admin/incidents", edges.list_incidents),
    ("POST", "/v1/batches", billing_api.post_batch),  # ingest.post_batch + edge counters
    ("GET", "/v1/checkpoint", log.get_checkpoint),
    ("GET", "/v1/log/key", log.get_log_key),
    ("GET", "/v1/log/proof/inclusion", log.get_inclusion_proof),
    ("GET", "/v1/log/proof/consistency", log.get_consistency_proof),
    ("GET", "/v1/receipts/{request_id}", log.get_receipt),
    *log.TILE_ROUTES,  # the log as C2SP tlog-tiles: /checkpoint, /tile/{tile:.+}
    ("POST", "/v1/admin/creators", registry.add_creator),
    ("GET", "/v1/admin/creators", registry.list_creators),
    ("POST", "/v1/admin/creators/{account}/keys", registry.add_creator_key),
    ("DELETE", "/v1/admin/creators/{account}/keys/{key_id}", registry.revoke_creator_key),
    ("POST", "/v1/admin/creators/{account}/tokens", registry.issue_creator_token),
    ("POST", "/v1/manifests", registry.publish),
    ("GET", "/v1/manifests/{manifest_id}", registry.get_manifest),
    ("POST", "/v1/manifests/{manifest_id}/revoke", registry.revoke),
    ("GET", "/v1/content", registry.content_by_path),
    ("GET", "/v1/content/{content_id}", registry.content_by_id),
    ("GET", "/v1/registry/changes", registry.changes),
    *admin_api.API_ROUTES,
    *billing_api.ROUTES,
)


def build_app(open_coordinator: Callable[[], Awaitable[Coordinator]]) -> web.Application:
    """The app; ``open_coordinator`` runs at startup and the Coordinator closes at cleanup."""
    # aiohttp inflates gzip request bodies (every edge's batches) as it reads them: through
    # ISA-L where installed, as the rest of the coordinator does (provenance/compression.py).
    # Process-wide, and the same formats either way.
    if compression.BACKEND == "isal" and hasattr(aiohttp, "set_zlib_backend"):
        aiohttp.set_zlib_backend(compression.zlib_module)
    app = web.Application(middlewares=[error_middleware], client_max_size=1024**2)

    async def coordinator_ctx(app: web.Application) -> AsyncIterator[None]:
        coordinator = await open_coordinator()
        app[COORDINATOR] = coordinator
        yield
        await coordinator.close()

    app.cleanup_ctx.append(coordinator_ctx)
    billing_api.setup(app)  # the Billing service (issue 6), after the Coordinator
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    mount_admin_ui(app)  # admin UI under /admin/, creator portal under /portal/ (issue 7)
    billing_api.plug_admin_view(app)  # the UI's periods and statements come from billing
    return app
