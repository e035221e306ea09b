"""Fixtures: an in-process coordinator (aiohttp test client) on a temporary data folder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


@pytest.fixture
def config_overrides() -> dict[str, object]:
    return {}


@pytest_asyncio.fixture
async def harness(
    aiohttp_client: MakeClient, tmp_path: Path, config_overrides: dict[str, object]
) -> Harness:
    clock = FakeClock()
    config = make_config(tmp_path, **config_overrides)
    client = await aiohttp_client(build_app(lambda: open_coordinator(config, clock)))
    token = await rotate_admin_token(client.app[COORDINATOR].store, clock())
    return Harness(client, clock, token)
