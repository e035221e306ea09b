"""Enrolment, admin authentication, edge listing, the OpenAPI document, health and metrics."""

from __future__ import annotations

import re

import pytest

from billing.api.app import ROUTES
from tests.component.billing.conftest import Harness
from tests.component.billing.fleet import Edge, signing_key

pytestmark = pytest.mark.asyncio

ADMIN_ROUTES = [(m, p) for m, p, _ in ROUTES if p.startswith("/v1/admin/")]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic abc"])
async def test_every_admin_endpoint_requires_the_admin_token_rfc6750_2_1(
    harness: Harness, method: str, path: str, authorization: str | None
) -> None:
    target = path.replace("{edge}", "edge-a").replace("{key_id}", "00000000")
    target = target.replace("{account}", "alice").replace("{period}", "day-2026-11-26T00:00:00Z")
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await harness.client.request(method, target, headers=headers, json={})
    assert response.status == 401
    assert await response.json() == {"error": "unauthorized"}


async def _token(h: Harness) -> str:
    response = await h.client.post("/v1/admin/enrolment-tokens", headers=h.admin)
    assert response.status == 201
    token: str = (await response.json())["token"]
    return token


async def test_enrolment_token_is_single_use(harness: Harness) -> None:
    token = await _token(harness)
    a, b = Edge("edge-a", signing_key("edge-a")), Edge("edge-b", signing_key("edge-b"))
    first = await harness.client.post(
        "/v1/edges/enrol", json={"token": token, "edge": a.name, "verifier_key": a.verifier}
    )
    assert first.status == 201
    again = await harness.client.post(
        "/v1/edges/enrol", json={"token": token, "edge": b.name, "verifier_key": b.verifier}
    )
    assert (again.status, await again.json()) == (403, {"error": "enrolment-refused"})


async def test_enrolment_token_expires(harness: Harness) -> None:
    token = await _token(harness)
    harness.clock.advance(harness.coordinator.config.enrolment_token_ttl_s + 1)
    a = Edge("edge-a", signing_key("edge-a"))
    response = await harness.client.post(
        "/v1/edges/enrol", json={"token": token, "edge": a.name, "verifier_key": a.verifier}
    )
    assert response.status == 403


async def test_enrolment_refuses_a_key_named_for_another_edge(harness: Harness) -> None:
    token = await _token(harness)
    other = Edge("edge-b", signing_key("edge-b"))
    response = await harness.client.post(
        "/v1/edges/enrol", json={"token": token, "edge": "edge-a", "verifier_key": other.verifier}
    )
    assert (response.status, await response.json()) == (400, {"error": "malformed"})


async def test_an_edge_id_enrols_once(harness: Harness) -> None:
    await harness.enrol("edge-a")
    token = await _token(harness)
    a = Edge("edge-a", signing_key("edge-a", "k2"))
    response = await harness.client.post(
        "/v1/edges/enrol", json={"token": token, "edge": a.name, "verifier_key": a.verifier}
    )
    assert (response.status, await response.json()) == (409, {"error": "conflict"})


async def test_edges_list_shows_keys_and_revocation(harness: Harness) -> None:
    edge = await harness.enrol("edge-a")
    key_id = edge.key.key_id.hex()
    response = await harness.client.delete(
        f"/v1/admin/edges/edge-a/keys/{key_id}", headers=harness.admin
    )
    assert response.status == 204
    listing = await (await harness.client.get("/v1/admin/edges", headers=harness.admin)).json()
    [row] = listing["edges"]
    assert row["chain_head"] is None and row["batches_rejected"] == {}
    assert row["keys"][0]["key_id"] == key_id and row["keys"][0]["revoked_at"] is not None
    missing = await harness.client.delete(
        "/v1/admin/edges/edge-a/keys/ffffffff", headers=harness.admin
    )
    assert missing.status == 404


async def test_openapi_describes_every_route_and_only_those(harness: Harness) -> None:
    document = await (await harness.client.get("/openapi.json")).json()
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    # OpenAPI names a path parameter {name}; aiohttp's {name:regex} matches several segments
    assert described == {(m, re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", p)) for m, p, _ in ROUTES}


async def test_healthz_and_metrics(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).status == 200
    text = await (await harness.client.get("/metrics")).text()
    for name in (
        "cachet_coordinator_batches_accepted_total",
        "cachet_coordinator_log_size",
        "cachet_coordinator_checkpoint_age_seconds",
    ):
        assert name in text
