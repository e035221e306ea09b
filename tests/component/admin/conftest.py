"""Fixtures: the coordinator app with the admin UI mounted, seeded, and a client per role.

``store_dsn`` (billing's fixture) runs every test that builds the app twice: the coordinator and
the admin's own tables on SQLite, then on PostgreSQL (a schema of its own per test; issue 9).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin.context import ADMIN_CONTEXT, ADMIN_SETTINGS, AdminContext, AdminSettings
from billing.api.app import build_app
from billing.service import rotate_admin_token
from tests.component.admin.seed import ADMIN_USER, PASSWORD, Seeded, seed
from tests.component.billing.conftest import postgres_database, store_dsn
from tests.component.billing.fleet import FakeClock, open_coordinator
from tests.component.billing.fleet import coordinator_config as make_config

__all__ = ["postgres_database", "store_dsn"]  # fixtures shared with billing's tests
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


class UI:
    def __init__(self, client: Client, clock: FakeClock, seeded: Seeded, token: str) -> None:
        self.client, self.clock, self.seeded, self.admin_token = client, clock, seeded, token

    @property
    def ctx(self) -> AdminContext:
        return self.client.app[ADMIN_CONTEXT]

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def login(self, area: str, username: str, password: str = PASSWORD) -> int:
        """Log in through the form (clearing cookies first); the response status."""
        self.client.session.cookie_jar.clear()
        page = await self.client.get(f"/{area}/login")
        form = {"username": username, "password": password, "csrf": csrf_of(await page.text())}
        response = await self.client.post(f"/{area}/login", data=form, allow_redirects=False)
        return response.status

    async def as_admin(self) -> None:
        assert await self.login("admin", ADMIN_USER) == 302

    async def as_creator(self, account: str) -> None:
        assert await self.login("portal", account) == 302

    def anonymous(self) -> None:
        self.client.session.cookie_jar.clear()

    async def csrf(self, path: str) -> str:
        return csrf_of(await (await self.client.get(path)).text())


@pytest_asyncio.fixture
async def ui(store_dsn: str | None, aiohttp_client: MakeClient, tmp_path: Path) -> UI:
    """``store_dsn`` first: its schema must outlive the app (torn down last)."""
    clock = FakeClock()
    config = make_config(tmp_path, db=store_dsn)
    app = build_app(lambda: open_coordinator(config, clock))
    app[ADMIN_SETTINGS] = AdminSettings(log2_n=10, page_size=5)
    client = await aiohttp_client(app)
    token = await rotate_admin_token(client.app[ADMIN_CONTEXT].coordinator.store, clock())
    seeded = await seed(client.app[ADMIN_CONTEXT])
    return UI(client, clock, seeded, token)
