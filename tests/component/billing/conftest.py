"""Fixtures: an in-process coordinator (aiohttp test client) on a temporary data folder.

``store_dsn`` runs every test that builds a coordinator twice: on SQLite (``None``: the file in
the data folder) and on PostgreSQL (one schema per test in this run's own database, dropped at
the end; issue 9). PostgreSQL is started when absent; only where it truly can't run is the
``postgresql`` case skipped, with the reason.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from billing.api.app import COORDINATOR, build_app
from billing.service import Coordinator, rotate_admin_token
from tests.component.billing.fleet import Edge, FakeClock, open_coordinator, signing_key
from tests.component.billing.fleet import coordinator_config as make_config
from tests.services import create_database, drop_database, ensure_postgres

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


class Harness:
    def __init__(self, client: Client, clock: FakeClock, admin_token: str) -> None:
        self.client, self.clock, self.admin_token = client, clock, admin_token

    @property
    def coordinator(self) -> Coordinator:
        return self.client.app[COORDINATOR]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def enrol(self, name: str) -> Edge:
        edge = Edge(name, signing_key(name))
        response = await self.client.post("/v1/admin/enrolment-tokens", headers=self.admin)
        assert response.status == 201
        token = (await response.json())["token"]
        body = {"token": token, "edge": name, "verifier_key": edge.verifier}
        response = await self.client.post("/v1/edges/enrol", json=body)
        assert response.status == 201, await response.text()
        return edge

    async def post(self, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
        response = await self.client.post("/v1/batches", data=body, headers=headers)
        return response.status, await response.json()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This test run's own database (``cachet_test_<random>``), dropped at the end."""
    reason = ensure_postgres()
    if reason is not None:
        pytest.skip(reason)
    name = f"cachet_test_{secrets.token_hex(6)}"
    dsn = create_database(name)
    yield dsn
    drop_database(name)


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def store_dsn(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """The coordinator's ``db``: None (SQLite in the data folder) or a PostgreSQL DSN whose
    search_path is a fresh schema of its own."""
    if request.param == "sqlite":
        yield None
        return
    import asyncpg

    base: str = request.getfixturevalue("postgres_database")
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{base}?search_path={schema}"
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def config_overrides() -> dict[str, object]:
    return {}


@pytest_asyncio.fixture
async def harness(
    store_dsn: str | None,  # first: its schema must outlive the app (torn down last)
    aiohttp_client: MakeClient,
    tmp_path: Path,
    config_overrides: dict[str, object],
) -> Harness:
    clock = FakeClock()
    config = make_config(tmp_path, **{"db": store_dsn, **config_overrides})
    client = await aiohttp_client(build_app(lambda: open_coordinator(config, clock)))
    token = await rotate_admin_token(client.app[COORDINATOR].store, clock())
    return Harness(client, clock, token)
