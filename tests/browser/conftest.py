"""Browser tests: the coordinator app with the admin UI on a real 127.0.0.1 port, driven by
Playwright with Debian's Chromium (``/usr/bin/chromium``; never a downloaded browser). Skipped
with a reason when Chromium or Playwright is missing; ``scripts/check`` installs Chromium when it
runs as root. Screenshots go to ``tests/browser/artifacts/`` (gitignored).

The app runs on SQLite and on PostgreSQL (billing's ``store_dsn`` fixture; issue 9): the UI's
tables and its dashboard's queries are on the coordinator's database either way."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from admin.context import ADMIN_CONTEXT, ADMIN_SETTINGS, BILLING_VIEW, AdminSettings
from billing.api.app import build_app
from tests.component.admin.fake_billing import FakeBilling
from tests.component.admin.seed import CID_ALICE, CID_BOB, Seeded, seed
from tests.component.billing.conftest import postgres_database, store_dsn
from tests.component.billing.fleet import FakeClock, open_coordinator
from tests.component.billing.fleet import coordinator_config as make_config

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.exists():
    pytest.skip(
        "browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )
if importlib.util.find_spec("playwright") is None:
    pytest.skip("browser tests need playwright (pip install -e '.[dev]')", allow_module_level=True)

from playwright.async_api import BrowserContext, Page, async_playwright  # noqa: E402


class Site:
    def __init__(self, server: TestServer, seeded: Seeded, page: Page) -> None:
        self.server, self.seeded, self.page = server, seeded, page

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


__all__ = ["postgres_database", "store_dsn"]  # billing's backend fixtures: SQLite, PostgreSQL


@pytest_asyncio.fixture
async def site(
    store_dsn: str | None,  # first: its schema must outlive the app (torn down last)
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    tmp_path: Path,
) -> AsyncIterator[Site]:
    clock = FakeClock()
    config = make_config(tmp_path / "data", db=store_dsn)
    app = build_app(lambda: open_coordinator(config, clock))
    app[ADMIN_SETTINGS] = AdminSettings(log2_n=10)
    app[BILLING_VIEW] = FakeBilling({"alice": CID_ALICE, "bob": CID_BOB})
    server = await aiohttp_server(app, host="127.0.0.1")
    seeded = await seed(server.app[ADMIN_CONTEXT])
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    async with async_playwright() as playwright:
        context: BrowserContext = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(10_000)
            yield Site(server, seeded, page)
        finally:
            await context.close()
