"""The admin UI (``/admin/``) and the creator portal (``/portal/``), mounted on the coordinator's
aiohttp app by ``mount(app)`` (one call in ``billing.api.app.build_app``).

``mount`` adds the pages, the static folder, jinja2 templates, a security-headers middleware and a
``cleanup_ctx`` entry that opens the ``AdminStore`` after the Coordinator (on the coordinator's
database, SQLite or PostgreSQL, with the admin's own migrations; ``admin.db``). Set
``BILLING_VIEW`` (billing's implementation) or ``ADMIN_SETTINGS`` on the app before startup to
replace the defaults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from admin import portal, views, views_billing, views_registry
from admin.auth import ADMIN_AREA, PORTAL_AREA
from admin.billing_view import NoBillingYet
from admin.context import ADMIN_CONTEXT, ADMIN_SETTINGS, BILLING_VIEW, AdminContext, AdminSettings
from admin.login import login_handlers, logout_handler
from admin.pages import Handler, format_bytes, format_micros, security_headers
from admin.queries import CoordinatorQueries
from admin.store import AdminStore
from provenance.records import format_timestamp

STATIC_DIR = Path(__file__).parent / "static"
_ID = "{manifest_id:sha256:[0-9a-f]{64}}"
_PERIOD = "{period:(hour|day|month)-[0-9T:Z-]{20}}"


def _page_routes() -> list[tuple[str, str, Handler]]:
    admin_login, admin_submit = login_handlers(ADMIN_AREA)
    portal_login, portal_submit = login_handlers(PORTAL_AREA)
    return [
        ("GET", "/admin/login", admin_login),
        ("POST", "/admin/login", admin_submit),
        ("POST", "/admin/logout", logout_handler(ADMIN_AREA)),
        ("GET", "/admin/", views.overview),
        ("GET", "/admin/dashboard.json", views.dashboard_json),
        ("GET", "/admin/fleet", views.fleet),
        ("POST", "/admin/fleet/enrolment-tokens", views.fleet_enrolment_token),
        ("POST", "/admin/fleet/{edge}/keys", views.fleet_add_key),
        ("POST", "/admin/fleet/{edge}/keys/{key_id}/revoke", views.fleet_revoke_key),
        ("GET", "/admin/creators", views_registry.creators),
        ("GET", "/admin/creators/{account}", views_registry.creator),
        ("POST", "/admin/creators/{account}/password", views_registry.creator_password),
        ("GET", f"/admin/manifests/{_ID}", views_registry.manifest),
        ("POST", f"/admin/manifests/{_ID}/revoke", views_registry.manifest_revoke),
        ("GET", "/admin/periods", views_billing.periods),
        ("POST", "/admin/periods/close", views_billing.period_close),
        ("GET", f"/admin/periods/{_PERIOD}", views_billing.period_page),
        (
            "GET",
            f"/admin/periods/{_PERIOD}/settlement.{{fmt:csv|json}}",
            views_billing.period_export,
        ),
        ("GET", f"/admin/periods/{_PERIOD}/statements/{{creator}}", views_billing.statement_page),
        ("GET", "/admin/reconciliation", views_billing.reconciliation),
        ("GET", "/admin/log", views.log_page),
        ("GET", "/admin/receipts/{rid}.json", views.receipt_download),
        ("GET", "/admin/audit", views.audit_page),
        ("GET", "/portal/login", portal_login),
        ("POST", "/portal/login", portal_submit),
        ("POST", "/portal/logout", logout_handler(PORTAL_AREA)),
        ("GET", "/portal/", portal.home),
        ("GET", f"/portal/manifests/{_ID}", portal.manifest),
        ("GET", "/portal/statements", portal.statements),
        ("GET", f"/portal/statements/{_PERIOD}", portal.statement),
        ("GET", f"/portal/statements/{_PERIOD}.{{fmt:csv}}", portal.statement),
        ("GET", "/portal/receipts", portal.receipts),
        ("GET", "/portal/receipts/{rid}.json", portal.receipt_download),
    ]


PAGE_PATHS = tuple((method, path) for method, path, _ in _page_routes())


async def _redirect_admin(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/admin/")


async def _redirect_portal(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/portal/")


def mount(app: web.Application) -> None:
    """Add the admin UI and the creator portal to the coordinator's app (after its
    Coordinator ``cleanup_ctx`` entry, which it needs)."""
    from billing.api.app import COORDINATOR

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("admin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(micros=format_micros, size=format_bytes)
    app.middlewares.append(security_headers)

    async def admin_ctx(app: web.Application) -> AsyncIterator[None]:
        coordinator = app[COORDINATOR]
        now = format_timestamp(coordinator.clock())
        store = await AdminStore.open(coordinator.config, now)
        settings = app.get(ADMIN_SETTINGS) or AdminSettings()
        billing = app.get(BILLING_VIEW) or NoBillingYet()
        app[ADMIN_CONTEXT] = AdminContext(
            coordinator, store, CoordinatorQueries(store.db), billing, settings
        )
        yield
        await store.close()

    app.cleanup_ctx.append(admin_ctx)
    for method, path, handler in _page_routes():
        app.router.add_route(method, path, handler)
    app.router.add_route("GET", "/admin", _redirect_admin)
    app.router.add_route("GET", "/portal", _redirect_portal)
    app.router.add_static("/admin/static/", STATIC_DIR, name="admin-static")
