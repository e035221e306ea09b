"""Admin actions through the UI's forms, what the pages show afterwards, the audit trail, and
the JSON admin API behind each action (issue 7)."""

from __future__ import annotations

import pytest

from admin.passwords import is_password_match
from provenance.keys import format_verifier_key
from tests.component.admin.conftest import UI
from tests.component.billing.fleet import signing_key

pytestmark = pytest.mark.asyncio


async def _post(ui: UI, path: str, page: str, **form: str) -> str:
    form["csrf"] = await ui.csrf(page)
    response = await ui.client.post(path, data=form)
    assert response.status == 200, await response.text()
    return await response.text()


async def test_revoke_an_edge_key_shows_it_revoked_and_audits_it(ui: UI) -> None:
    await ui.as_admin()
    edge, key_id = ui.seeded.edge.name, ui.seeded.edge.key.verifier.key_id_hex
    page = await _post(ui, f"/admin/fleet/{edge}/keys/{key_id}/revoke", "/admin/fleet")
    assert "The key was revoked." in page and 'badge bad">revoked' in page
    keys = await ui.ctx.coordinator.store.edge_keys(edge)
    assert [k.revoked_at is not None for k in keys] == [True]
    audit = await (await ui.client.get("/admin/audit")).text()
    assert "revoke-edge-key" in audit and f"{edge}/{key_id}" in audit and "root" in audit


async def test_rotate_adds_a_key_and_a_bad_key_is_explained(ui: UI) -> None:
    await ui.as_admin()
    new = format_verifier_key(signing_key("edge-1", "k2").verifier)
    page = await _post(ui, "/admin/fleet/edge-1/keys", "/admin/fleet", verifier_key=new)
    assert "The key was added." in page
    assert len(await ui.ctx.coordinator.store.edge_keys("edge-1")) == 2
    bad = await _post(ui, "/admin/fleet/edge-1/keys", "/admin/fleet", verifier_key="garbage")
    assert "Key not added" in bad


async def test_enrolment_token_is_shown_once(ui: UI) -> None:
    await ui.as_admin()
    page = await _post(ui, "/admin/fleet/enrolment-tokens", "/admin/fleet")
    assert 'id="enrolment-token">cachet-enrol-' in page
    assert "cachet-enrol-" not in await (await ui.client.get("/admin/fleet")).text()


async def test_revoke_a_manifest_version(ui: UI) -> None:
    await ui.as_admin()
    mid = ui.seeded.bob_manifest
    page = await _post(
        ui,
        f"/admin/manifests/{mid}/revoke",
        f"/admin/manifests/{mid}",
        reason="licence withdrawn",
        grace_s="0",
    )
    assert "The manifest version was revoked." in page and "licence withdrawn" in page
    assert (await ui.ctx.registry.manifest(mid)).revoked_at is not None


async def test_manifest_page_shows_verified_signature_items_terms_and_versions(ui: UI) -> None:
    await ui.as_admin()
    page = await (await ui.client.get(f"/admin/manifests/{ui.seeded.alice_manifests[1]}")).text()
    assert 'badge ok">verified' in page and "/alice/b.mp4" in page and "CC-BY-4.0" in page
    assert "v1</a>" in page and "v2 (this one)" in page


async def test_set_a_creator_password_then_the_creator_logs_in(ui: UI) -> None:
    await ui.as_admin()
    page = await _post(
        ui, "/admin/creators/bob/password", "/admin/creators/bob", password="a brand new secret"
    )
    assert "portal password was set" in page
    user = await ui.ctx.store.find_user("bob")
    assert user is not None and is_password_match("a brand new secret", user.password_hash)
    weak = await _post(ui, "/admin/creators/bob/password", "/admin/creators/bob", password="x")
    assert "at least" in weak or "10..1024" in weak
    assert await ui.login("portal", "bob", "a brand new secret") == 302


async def test_receipt_lookup_verifies_and_reports_failures(ui: UI) -> None:
    await ui.as_admin()
    ok = await (await ui.client.get(f"/admin/log?request_id={ui.seeded.alice_request}")).text()
    assert 'badge ok">verified' in ok and "checkpoint of size 2" in ok
    missing = await (await ui.client.get("/admin/log?request_id=no-such-id")).text()
    assert 'badge bad">failed' in missing and "not-found" in missing


async def test_json_api_behind_the_actions(ui: UI) -> None:
    b = ui.bearer
    body = await (
        await ui.client.get("/v1/admin/receipt-verification?request_id=req-alice", headers=b)
    ).json()
    assert body["verified"] is True and body["record"]["creator"] == "alice"
    response = await ui.client.put(
        "/v1/admin/creators/bob/password", json={"password": "api-set password"}, headers=b
    )
    assert response.status == 200 and (await response.json())["created"] is False
    assert (
        await ui.client.put(
            "/v1/admin/creators/zed/password", json={"password": "x" * 12}, headers=b
        )
    ).status == 404
    audit = await (await ui.client.get("/v1/admin/audit", headers=b)).json()
    assert audit["entries"][0]["action"] == "set-creator-password"
    assert audit["entries"][0]["actor"] == "api-token"
    checkpoints = await (await ui.client.get("/v1/admin/checkpoints", headers=b)).json()
    assert checkpoints["checkpoints"][0]["tree_size"] == 2
    manifests = await (await ui.client.get("/v1/admin/creators/alice/manifests", headers=b)).json()
    assert [m["version"] for m in manifests["manifests"]] == [1, 2]
    assert (await (await ui.client.get("/v1/admin/periods", headers=b)).json()) == {"periods": []}
    period = "period=day-2026-11-26T00:00:00Z"
    closed = await ui.client.post(f"/v1/admin/periods/close?{period}", headers=b)
    # Billing's real view is plugged in: a finished day with no traffic closes with no
    # statements and nothing to pay, and the period is listed as closed.
    assert closed.status == 200
    closed_body = await closed.json()
    assert closed_body["period"] == "day-2026-11-26T00:00:00Z"
    assert (closed_body["statements"], closed_body["payout_micros"]) == (0, 0)
    listed = await (await ui.client.get("/v1/admin/periods", headers=b)).json()
    assert [p["period"] for p in listed["periods"]] == ["day-2026-11-26T00:00:00Z"]
    assert (await ui.client.get("/v1/admin/periods/close", headers=b)).status == 405
    bad = await ui.client.get("/v1/admin/statements?period=week-1", headers=b)
    assert bad.status == 400
    statements = await (await ui.client.get(f"/v1/admin/statements?{period}", headers=b)).json()
    assert statements == {"statements": []}
    rec = await (await ui.client.get(f"/v1/admin/reconciliation?{period}", headers=b)).json()
    assert rec == {"edges": []}


async def test_openapi_lists_the_admin_api(ui: UI) -> None:
    document = await (await ui.client.get("/openapi.json")).json()
    for path in (
        "/v1/admin/audit",
        "/v1/admin/receipt-verification",
        "/v1/admin/periods/close",
        "/v1/admin/creators/{account}/password",
    ):
        assert path in document["paths"]
