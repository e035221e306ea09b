"""The admin app's shared state, reached through one typed ``web.AppKey``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from admin.billing_view import BillingView
from admin.queries import CoordinatorQueries
from admin.ratelimit import LoginLimiter
from admin.store import AdminStore
from billing.registry.service import Registry
from billing.service import Coordinator


@dataclass
class AdminSettings:
    session_ttl_s: int = 12 * 3600
    log2_n: int = 15  # scrypt cost for hashes the UI makes (creator passwords)
    page_size: int = 25
    limiter: LoginLimiter = field(default_factory=LoginLimiter)


@dataclass
class AdminContext:
    coordinator: Coordinator
    store: AdminStore
    queries: CoordinatorQueries
    billing: BillingView
    settings: AdminSettings

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.coordinator.clock

    @property
    def registry(self) -> Registry:
        return Registry(self.coordinator.store, self.coordinator.clock)


ADMIN_CONTEXT = web.AppKey("admin_context", AdminContext)
# Set these on the app before startup to replace the defaults (billing sets BILLING_VIEW).
BILLING_VIEW = web.AppKey("admin_billing_view", BillingView)
ADMIN_SETTINGS = web.AppKey("admin_settings", AdminSettings)


def admin_context(request: web.Request) -> AdminContext:
    return request.app[ADMIN_CONTEXT]
